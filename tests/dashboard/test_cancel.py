"""Bulk cancel in the message browser: permission-checked (operate_queues), CSRF-protected, audited,
through services.cancel_messages; by selected ids or by the browser's filter."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

import queues
from queues.engine.expiry import flow_totals
from queues.models import AuditEvent, Message

pytestmark = pytest.mark.django_db

BULK = reverse("queues:message-bulk")


@pytest.fixture
def sent(make_queue) -> list[int]:
    make_queue("orders")
    return queues.send_batch("orders", [{"n": i} for i in range(4)])


def test_operator_cancels_selected_messages_and_the_action_is_audited(sent, client_for):
    [held] = queues.receive("orders")  # in flight: asked to stop, not deleted
    c = client_for("operator")
    browser = c.get(reverse("queues:messages"), {"q": "queue:orders"})
    assert b'<option value="cancel">Cancel</option>' in browser.content
    preview = c.post(BULK, {"action": "cancel", "scope": "selected", "ids": f"{sent[1]},{held.id}", "preview": "1"})
    assert preview.status_code == 200 and b"asked to stop" in preview.content
    done = c.post(BULK, {"action": "cancel", "scope": "selected", "ids": f"{sent[1]},{held.id}"})
    assert done.status_code == 302
    assert set(Message.objects.values_list("id", flat=True)) == {sent[0], sent[2], sent[3]}
    assert queues.peek("orders", ids=[held.id])[0].state == "in_flight"
    with pytest.raises(queues.Cancelled):
        held.check_cancelled()
    event = AuditEvent.objects.get(action="cancel_messages")
    assert (event.outcome, event.count, event.queue_name) == ("ok", 2, "orders")
    assert event.detail["in_flight_asked"] == [held.id]
    assert flow_totals(["orders"])["orders"].cancelled == 1


def test_cancel_all_matching_a_filter_does_at_most_what_the_confirmation_showed(sent, client_for):
    c = client_for("operator")
    page = c.get(BULK, {"scope": "matching", "action": "cancel", "q": "queue:orders"}).content.decode()
    shown = {k: re.search(rf'name="{k}" value="(\d+)"', page).group(1) for k in ("count", "max_id")}
    later = queues.send("orders", {"late": True})
    done = c.post(BULK, {"action": "cancel", "scope": "matching", "q": "queue:orders", **shown})
    assert done.status_code == 302
    assert list(Message.objects.values_list("id", flat=True)) == [later]
    assert AuditEvent.objects.get(action="cancel_messages").count == 4


def test_cancel_is_forbidden_for_a_viewer_and_audited(sent, client_for):
    c = client_for("viewer")
    assert b'value="cancel"' not in c.get(reverse("queues:messages")).content
    refused = c.post(BULK, {"action": "cancel", "scope": "selected", "ids": str(sent[0])})
    assert refused.status_code == 403
    assert Message.objects.count() == 4
    assert AuditEvent.objects.get(action="cancel_messages").outcome == "denied"


def test_cancel_without_a_csrf_token_is_refused(sent, client_for):
    c = client_for("operator", csrf=True)
    refused = c.post(BULK, {"action": "cancel", "scope": "selected", "ids": str(sent[0])})
    assert refused.status_code == 403
    assert Message.objects.count() == 4


SETTINGS = {
    "kind": "standard",
    "visibility_timeout": "30",
    "max_receives": "5",
    "dead_letter_queue": "orders.dlq",
    "default_delay": "0",
    "retention": "345600",
    "max_message_size": "262144",
    "dedup_window": "300",
}


def test_flow_settings_are_saved_from_the_queue_page_and_bad_ones_refused(sent, client_for):
    c = client_for("operator")
    url = reverse("queues:queue-settings", args=["orders"])
    page = c.get(reverse("queues:queue-detail", args=["orders"])).content.decode()
    assert 'name="max_length"' in page and 'name="message_ttl"' in page and "Flow control" in page
    saved = c.post(
        url,
        {
            **SETTINGS,
            "message_ttl": "30",
            "expiry_action": "dead_letter",
            "max_length": "100",
            "overflow": "drop_oldest",
        },
    )
    assert saved.status_code == 302
    q = queues.get_queue("orders")
    assert (q.message_ttl.total_seconds(), q.expiry_action, q.max_length, q.overflow) == (
        30,
        "dead_letter",
        100,
        "drop_oldest",
    )
    event = AuditEvent.objects.filter(action="update_queue_settings", outcome="ok").latest("id")
    assert event.detail["changes"]["max_length"] == [None, 100]
    for bad in ({"max_length": "0"}, {"max_length": "x"}, {"message_ttl": "-1"}, {"overflow": "block"}):
        refused = c.post(url, {**SETTINGS, "max_length": "100", **bad})
        assert refused.status_code == 400, bad
    assert queues.get_queue("orders").max_length == 100
    cleared = c.post(url, {**SETTINGS, "message_ttl": "", "max_length": ""})
    assert cleared.status_code == 302
    q = queues.get_queue("orders")
    assert (q.message_ttl, q.max_length, q.overflow) == (None, None, "drop_oldest")
