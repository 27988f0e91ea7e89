"""One clock on every page: each server-rendered time is a ``<time datetime=…Z data-when>`` from the
``when`` filter (so clock.js shows it in the one zone the operator picked), and no page writes a
date or a time of day as plain text beside them. Also the message page's expiry and cancel request."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

import queues
from queues import schedules
from queues.engine.cancel import cancel

pytestmark = pytest.mark.django_db

TIME_ELEMENT = re.compile(r"<time\b([^>]*)>(.*?)</time>", re.S)
FILTERED = re.compile(r'datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z" data-when="(s|ms|ago)"')
HIDDEN = re.compile(r"<(script|style|pre|code)\b.*?</\1>|<[^>]*>", re.S)
"""Script and style blocks, bodies, tracebacks and examples (``<pre>``, ``<code>``), every tag and its attributes."""
BARE_TIME = re.compile(r"\b\d{4}-\d\d-\d\d\b|\b\d\d?:\d\d:\d\d\b")


@pytest.fixture
def busy(make_queue, make_worker) -> dict[str, int]:
    """A source queue with a dead letter, a message with a TTL, a held one, a worker and a schedule."""
    make_queue("jobs.dlq")
    make_queue("jobs", dead_letter_queue="jobs.dlq", max_receives=3)
    queues.send("jobs", {"doomed": True})
    [d] = queues.receive("jobs")
    queues.nack(d.receipt, error="KeyError: 'sku'", dead_letter=True)
    ttl = queues.send("jobs", {"n": 1}, ttl=300)
    held = queues.send("jobs", {"n": 2}, delay=0)
    make_worker(["jobs"])
    schedules.schedule("nightly", cron="0 3 * * *", queue="jobs")
    return {"dead": d.id, "ttl": ttl, "held": held}


def pages(ids: dict[str, int]) -> list[str]:
    return [
        reverse("queues:overview"),
        reverse("queues:queue-list"),
        reverse("queues:queue-detail", args=["jobs"]),
        reverse("queues:queue-detail", args=["jobs.dlq"]),
        reverse("queues:dead-letters", args=["jobs"]),
        reverse("queues:dead-letters", args=["jobs.dlq"]),
        reverse("queues:messages"),
        reverse("queues:messages") + "?q=queue:jobs.dlq",
        reverse("queues:message-detail", args=[ids["dead"]]),
        reverse("queues:message-detail", args=[ids["ttl"]]),
        reverse("queues:workers"),
        reverse("queues:audit"),
        reverse("queues:database"),
        reverse("queues:schedules"),
    ]


def test_every_time_on_every_page_comes_from_the_when_filter(busy, client_for):
    c = client_for("admin")
    seen = 0
    for url in pages(busy):
        html = c.get(url).content.decode()
        for attrs, _text in TIME_ELEMENT.findall(html):
            assert FILTERED.search(attrs), f"{url}: a <time> not written by |when: {attrs}"
            seen += 1
        plain = HIDDEN.sub(" ", TIME_ELEMENT.sub(" ", html))
        m = BARE_TIME.search(plain)
        assert not m, f"{url}: a time outside <time>: {plain[max(0, m.start() - 300) : m.end() + 100]!r}"
    assert seen >= 15  # enqueued/available/dead times, worker beats, the schedule, the audit rows


def test_the_message_page_says_when_it_expires_and_when_a_cancel_was_asked(busy, client_for):
    c = client_for("viewer")
    page = c.get(reverse("queues:message-detail", args=[busy["ttl"]])).content.decode()
    expires = re.search(r'id="expires-at">(<time[^>]*>[^<]*</time>)', page)
    assert expires and 'data-when="ago"' in expires.group(1) and re.search(r">in \d\xa0minutes?<", expires.group(1))
    assert 'id="cancel-requested"' not in page

    [held] = [d for d in queues.receive("jobs", max_messages=3, visibility_timeout=60) if d.id == busy["held"]]
    result = cancel("jobs", [held.id])
    assert result.requested == [held.id]
    page = c.get(reverse("queues:message-detail", args=[held.id])).content.decode()
    asked = re.search(r'id="cancel-requested">(<time[^>]*>[^<]*</time>)', page)
    assert asked and re.search(r">\d+\xa0minutes? ago<", asked.group(1))
    assert 'id="expires-at"' not in page  # the request sets its expiry to now; that is not news


def test_a_future_instant_reads_in_and_a_past_one_ago():
    from datetime import timedelta

    from django.utils import timezone

    from queues.templatetags.queues_clock import when

    now = timezone.now()
    assert ">in 1\xa0hour<" in when(now + timedelta(hours=1, seconds=5), "ago")
    assert ">1\xa0hour ago<" in when(now - timedelta(hours=1, seconds=5), "ago")
    assert when(now.replace(tzinfo=None), "ago").endswith("ago</time>")  # naive means UTC
