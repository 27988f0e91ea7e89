"""An "all matching" action does no more than its confirmation showed.

The confirmation page carries the count and the highest id it saw; the POST touches at most that many
messages, none above that id. Deleting by a filter (an empty one matches every message of every queue)
needs the count typed, as purging a queue needs its name typed.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

import queues
from queues import services
from queues.models import AuditEvent, Message
from queues.search import parse_search

pytestmark = pytest.mark.django_db

BULK = reverse("queues:message-bulk")


@pytest.fixture
def five(make_queue) -> list[int]:
    make_queue("orders")
    make_queue("billing")
    return queues.send_batch("orders", [{"n": i} for i in range(3)]) + queues.send_batch("billing", [{}, {}])


def _confirmation(client, **params) -> dict[str, str]:
    page = client.get(BULK, {"scope": "matching", **params})
    assert page.status_code == 200
    html = page.content.decode()
    return {key: re.search(rf'name="{key}" value="(\d+)"', html).group(1) for key in ("count", "max_id")}


def test_deleting_everything_matching_an_empty_filter_needs_the_count_typed(five, client_for):
    c = client_for("purger")
    shown = _confirmation(c, action="delete", q="")
    assert shown["count"] == "5" and shown["max_id"] == str(max(five))
    page = c.get(BULK, {"scope": "matching", "action": "delete", "q": ""})
    assert b'name="confirm"' in page.content and b"Type the number of messages" in page.content

    refused = c.post(BULK, {"action": "delete", "scope": "matching", "q": "", **shown})
    assert refused.status_code == 400 and b"type the number of messages, 5" in refused.content.lower()
    assert Message.objects.count() == 5
    assert AuditEvent.objects.get(action="delete_messages").outcome == "error"

    done = c.post(BULK, {"action": "delete", "scope": "matching", "q": "", **shown, "confirm": "5"})
    assert done.status_code == 302 and Message.objects.count() == 0


def test_delete_all_matching_touches_no_message_sent_after_the_confirmation(five, client_for):
    c = client_for("purger")
    shown = _confirmation(c, action="delete", q="queue:orders")
    later = queues.send_batch("orders", [{"late": i} for i in range(10)])
    done = c.post(BULK, {"action": "delete", "scope": "matching", "q": "queue:orders", **shown, "confirm": "3"})
    assert done.status_code == 302
    assert set(Message.objects.filter(queue__name="orders").values_list("id", flat=True)) == set(later)
    event = AuditEvent.objects.get(action="delete_messages", outcome="ok")
    assert event.count == 3 and event.detail["confirmed"] == {"count": 3, "max_id": int(shown["max_id"])}


def test_matching_action_does_at_most_the_confirmed_count(five, client_for, make_queue):
    make_queue("parking")
    c = client_for("operator")
    shown = _confirmation(c, action="move", q="queue:billing", to="parking")
    # Messages with lower ids start matching after the confirmation (moved in): still only 2 move.
    c.post(BULK, {"action": "move", "scope": "matching", "q": "queue:orders", "to": "billing", "count": "3",
                  "max_id": str(max(five))})
    assert queues.queue_stats("billing").depth == 5
    done = c.post(BULK, {"action": "move", "scope": "matching", "q": "queue:billing", "to": "parking", **shown})
    assert done.status_code == 302
    assert queues.queue_stats("parking").depth == 2 and queues.queue_stats("billing").depth == 3


@pytest.mark.parametrize("extra", [{}, {"count": "5"}, {"max_id": "9"}, {"count": "x", "max_id": "1"}])
def test_matching_post_without_the_confirmed_bounds_is_refused(five, client_for, extra):
    response = client_for("purger").post(BULK, {"action": "delete", "scope": "matching", "q": "", "confirm": "5",
                                                **extra})
    assert response.status_code == 400
    assert Message.objects.count() == 5
    assert AuditEvent.objects.get(action="delete_messages").outcome == "error"


def test_service_refuses_filter_delete_without_bound_or_typed_count(five, users):
    match = parse_search("")
    with pytest.raises(services.ActionFailed, match="confirmation page"):
        services.delete_messages(actor=users["purger"], match=match)
    with pytest.raises(services.ActionFailed, match="type the number of messages"):
        services.delete_messages(actor=users["purger"], match=match, bound=services.Bound(count=5, max_id=max(five)),
                                 confirm="50")
    assert Message.objects.count() == 5


def test_selected_ids_need_no_typed_count(five, client_for):
    response = client_for("purger").post(BULK, {"action": "delete", "scope": "selected", "id": [str(five[0])]})
    assert response.status_code == 302 and Message.objects.count() == 4
