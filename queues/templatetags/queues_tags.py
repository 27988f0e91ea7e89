"""Template tags of the dashboard's own pages (``{% load queues_tags %}``)."""

from __future__ import annotations

from urllib.parse import urlencode

from django import template
from django.urls import NoReverseMatch, reverse

from queues.formatting import action_name, format_age, format_count, format_rate

register = template.Library()

# Where a host's logout view may be: Django's auth URLs, then django-allauth's.
LOGOUT_URL_NAMES = ("logout", "account_logout")


def _reverse_or_empty(name: str) -> str:
    try:
        return reverse(name)
    except NoReverseMatch:
        return ""


@register.simple_tag
def optional_url(*names: str) -> str:
    """The URL of the first of ``names`` the host's URLconf has, or ``""``.

    The dashboard links to pages the host may not have (the Django admin, a logout view); a host
    without them gets no link instead of a ``NoReverseMatch`` on every page.
    """
    for name in names:
        url = _reverse_or_empty(name)
        if url:
            return url
    return ""


@register.simple_tag
def logout_url() -> str:
    """The host's logout URL (Django's ``logout`` or allauth's ``account_logout``), or ``""``."""
    return optional_url(*LOGOUT_URL_NAMES)


# -- numbers: the one wording of queues.formatting (live.js writes the same cells the same way) ----------
@register.filter
def age(seconds: float | None) -> str:
    """``{{ row.oldest_ready_age|age }}``: ``42s``, ``5m02s``, ``3h05m``, ``2d04h``; ``—`` when unknown."""
    return format_age(seconds)


@register.filter
def rate(per_second: float | None) -> str:
    """``{{ row.rate_in|rate }}``: ``2.5/s``, ``1,234/s``; ``—`` when unknown."""
    return format_rate(per_second)


@register.filter
def count(n: float | None) -> str:
    """``{{ row.ready|count }}``: ``12,345``; ``—`` when unknown."""
    return format_count(n)


@register.simple_tag
def group_query(key: object) -> str:
    """``{% group_query g.key %}``: the query string that names a dead-letter group (``origin=…&sig=…``)."""
    params = key.params()  # type: ignore[attr-defined]
    return urlencode(params)


@register.filter(name="action_name")
def action_name_filter(action: str) -> str:
    """``{{ e.action|action_name }}``: ``Purged queue`` for ``purge_queue`` (``queues.formatting.ACTION_NAMES``)."""
    return action_name(action)
