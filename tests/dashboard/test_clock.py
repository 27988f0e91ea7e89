"""One clock: server-rendered times as <time datetime> in UTC, the audit log's date range and its order."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.template import Context, Template
from django.urls import reverse

from queues.audit import list_audit_events
from queues.models import AuditEvent

pytestmark = pytest.mark.django_db

AT = datetime(2026, 3, 4, 5, 6, 7, 89_000, tzinfo=UTC)


def _render(text: str, **context) -> str:
    return Template("{% load queues_clock %}" + text).render(Context(context))


def test_a_time_carries_exact_utc_and_a_readable_utc_fallback():
    assert _render("{{ at|when }}", at=AT) == (
        '<time datetime="2026-03-04T05:06:07.089Z" data-when="s">2026-03-04 05:06:07 UTC</time>'
    )
    assert _render('{{ at|when:"ms" }}', at=AT).endswith(">2026-03-04 05:06:07.089 UTC</time>")
    ago = _render('{{ at|when:"ago" }}', at=datetime.now(UTC) - timedelta(minutes=3))
    assert 'data-when="ago"' in ago and "3\xa0minutes ago</time>" in ago and ' UTC"' in ago
    assert _render("{{ at|when }}", at=None) == "—"


def _event(at: datetime, action: str = "purge_queue") -> AuditEvent:
    event = AuditEvent.objects.create(action=action, queue_name="orders", actor_name="ann")
    AuditEvent.objects.filter(pk=event.pk).update(at=at)  # `at` is auto_now_add: set it afterwards
    return event


def _listed(html: str) -> list[str]:
    return re.findall(r'<time datetime="([^"]+)" data-when="ms">', html)


def test_audit_log_filters_by_a_range_read_in_the_pages_zone(client_for):
    for day in (1, 2, 3):
        _event(datetime(2026, 12, day, 12, 0, tzinfo=UTC))
    client = client_for("viewer")
    url = reverse("queues:audit")

    assert _listed(client.get(url, {"from": "2026-12-02", "to": "2026-12-02"}).content.decode()) == [
        "2026-12-02T12:00:00.000Z"
    ]
    # 17:30 in Kolkata is 12:00 UTC: the bound is inclusive at the start, exclusive at the end.
    html = client.get(url, {"from": "2026-12-02 17:30", "tz": "Asia/Kolkata"}).content.decode()
    assert _listed(html) == ["2026-12-03T12:00:00.000Z", "2026-12-02T12:00:00.000Z"]
    html = client.get(url, {"to": "2026-12-02T12:00:00Z"}).content.decode()
    assert _listed(html) == ["2026-12-01T12:00:00.000Z"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from": "yesterday"}, "yesterday"),
        ({"to": "2026-13-45"}, "invalid end (to)"),
        ({"from": "2026-12-03", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"from": "2026-12-03", "tz": "a" * 300}, "unknown time zone"),  # a path in tzdata: never opened
        ({"from": "2026-12-03", "tz": "../../../etc/passwd"}, "unknown time zone"),
        ({"from": "2026-12-03\x00"}, "nul character"),  # refused before the view, as every NUL
        ({"from": "2026-12-03", "to": "2026-12-02"}, "the start must be before the end"),
        ({"from": "0001-01-01"}, "the year must be from 1900"),
    ],
)
def test_a_bad_date_range_is_a_400_that_says_why(client_for, params, words):
    response = client_for("viewer").get(reverse("queues:audit"), params)
    assert response.status_code == 400
    assert words in response.content.decode().lower()


def test_audit_log_orders_by_time_to_the_millisecond_then_id_across_pages():
    base = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    # Ids in another order than times (writers commit out of order); two share one instant.
    late = _event(base + timedelta(milliseconds=2))
    early = _event(base)
    tie_a = _event(base + timedelta(milliseconds=1))
    tie_b = _event(base + timedelta(milliseconds=1))
    expected = [late.pk, tie_b.pk, tie_a.pk, early.pk]

    seen, before = [], None
    while True:
        page = list_audit_events(limit=1, before=before)
        seen += [e.pk for e in page.events]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == expected


def test_audit_page_shows_milliseconds(client_for):
    _event(datetime(2026, 12, 3, 12, 0, 0, 123_000, tzinfo=UTC))
    html = client_for("viewer").get(reverse("queues:audit")).content.decode()
    assert ">2026-12-03 12:00:00.123 UTC</time>" in html
