"""One clock for every page (``{% load queues_clock %}``): times as ``<time>`` elements.

``{{ value|when }}`` writes ``<time datetime="2026-12-03T14:02:35.123Z">2026-12-03 14:02:35 UTC</time>``:
the attribute is exact UTC with milliseconds, the text a readable UTC fallback. ``static/queues/clock.js``
rewrites every ``<time datetime>`` of a page in the user's zone (the browser's, or the one picked in the
top bar), 24-hour, with the zone shown; the charts' axes use the same zone and format.

Styles (the filter's argument): ``""`` seconds, ``"ms"`` milliseconds (the audit log), ``"ago"``
relative ("3 min ago", "in 3 min") with the absolute time in the tooltip.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil

register = template.Library()

STYLES = ("", "ms", "ago")
"""What ``when`` accepts as its argument."""


def iso_utc(value: datetime) -> str:
    """``2026-12-03T14:02:35.123Z``: UTC, milliseconds, what ``<time datetime>`` and JavaScript read."""
    if value.tzinfo is None:  # naive datetimes are UTC in this app (USE_TZ)
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_text(value: datetime, *, ms: bool = False) -> str:
    """``2026-12-03 14:02:35 UTC`` (``.123`` before the zone with ``ms``): the fallback without script."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if ms:
        text += f".{value.microsecond // 1000:03d}"
    return text + " UTC"


@register.filter
def when(value: datetime | None, style: str = "") -> SafeString | str:
    """``{{ e.at|when:"ms" }}``: a ``<time>`` element for ``value`` (``—`` when None); see the module."""
    if value is None or value == "":
        return "—"
    if style not in STYLES:
        raise template.TemplateSyntaxError(f"when: unknown style {style!r}; use one of {STYLES}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    iso = iso_utc(value)
    if style == "ago":
        # A future instant (an expiry, a next run) reads "in 3 minutes", as clock.js writes it.
        if value > timezone.now():
            return format_html(
                '<time datetime="{}" data-when="ago" title="{}">in {}</time>', iso, utc_text(value), timeuntil(value)
            )
        return format_html(
            '<time datetime="{}" data-when="ago" title="{}">{} ago</time>', iso, utc_text(value), timesince(value)
        )
    text = utc_text(value, ms=style == "ms")
    return format_html('<time datetime="{}" data-when="{}">{}</time>', iso, style or "s", text)


@register.simple_tag
def epoch_now() -> str:
    """Seconds since the epoch, to the millisecond: when the page's numbers were read (``live.js`` keeps a
    sample read before it, which the server may replay to a new socket, from overwriting them)."""
    return f"{time.time():.3f}"
