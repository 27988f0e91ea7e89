"""Flow limits on the dashboard: set from the queue's settings form (refusals audited, nothing half-saved)
and shown in the queue page's Limits panel."""

from __future__ import annotations

import pytest
from django.urls import reverse

import queues
from queues.models import AuditEvent

pytestmark = pytest.mark.django_db

FORM = {
    "kind": "standard",
    "visibility_timeout": "30",
    "max_receives": "5",
    "dead_letter_queue": "",
    "default_delay": "0",
    "retention": "345600",
    "max_message_size": "262144",
    "dedup_window": "300",
}


def test_limits_set_from_the_form_show_in_the_panel(make_queue, client_for):
    make_queue("emails")
    queues.send_batch("emails", list(range(5)))
    c = client_for("operator")
    response = c.post(
        reverse("queues:queue-settings", args=["emails"]),
        {**FORM, "rate_limit": "50/s", "rate_burst": "2", "concurrency_limit": "3", "limits_per_group": ""},
    )
    assert response.status_code == 302
    q = queues.get_queue("emails")
    assert (q.rate_limit, q.rate_period.total_seconds(), q.rate_burst, q.concurrency_limit) == (50, 1, 2, 3)
    assert len(queues.receive("emails", max_messages=5)) == 2
    page = c.get(reverse("queues:queue-detail", args=["emails"])).content.decode()
    assert "<h2>Limits</h2>" in page and "50/s (burst 2)" in page and "in flight of 3" in page
    assert 'data-live="emails.rate_out"' in page and 'data-live="emails.ready"' in page
    # the bucket and the delivered count are read once: the panel says when, in the page's one clock
    assert page.count('as of <time datetime="') == 2 and "tokens in the bucket as of <time" in page
    event = AuditEvent.objects.filter(action="update_queue_settings", outcome="ok").latest("id")
    assert event.detail["changes"]["rate_limit"] == [None, "50/s"]


def test_a_bad_limit_is_a_400_audited_and_saves_nothing(make_queue, client_for):
    make_queue("emails")
    make_queue("ordered", kind="fifo")
    c = client_for("operator")
    for bad in ("5/fortnight", "0/s", "1e400/s", "\u0665/s"):
        response = c.post(
            reverse("queues:queue-settings", args=["emails"]), {**FORM, "rate_limit": bad, "visibility_timeout": "99"}
        )
        assert response.status_code == 400 and b"rate_limit" in response.content, bad
    response = c.post(reverse("queues:queue-settings", args=["ordered"]), {**FORM, "kind": "fifo", "rate_limit": "5/s"})
    assert response.status_code == 400 and b"standard queues only" in response.content
    for name in ("emails", "ordered"):
        q = queues.get_queue(name)
        assert (q.rate_limit, q.visibility_timeout.total_seconds()) == (None, 30)
    assert AuditEvent.objects.filter(action="update_queue_settings", outcome="error").count() == 5
    page = c.get(reverse("queues:queue-detail", args=["emails"])).content.decode()
    assert "<h2>Limits</h2>" not in page
