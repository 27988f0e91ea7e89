"""Template tags of the dashboard's own pages (``{% load queues_tags %}``)."""

from __future__ import annotations

from django import template
from django.urls import NoReverseMatch, reverse

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
