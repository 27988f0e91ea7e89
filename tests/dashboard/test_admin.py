"""The Django admin: read-mostly; queue actions confirm on GET, act on POST through the services."""

from __future__ import annotations

import pytest
from django.urls import reverse

import queues
from queues.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_queues(make_queue):
    make_queue("orders")
    make_queue("emails")
    queues.send_batch("orders", [{"n": i} for i in range(3)])
    return ["orders", "emails"]


def test_admin_lists_every_model_and_queue_counts(two_queues, client_for):
    c = client_for("admin")
    for model in ("queue", "message", "worker", "auditevent", "redrive", "taskresult", "topic", "subscription"):
        response = c.get(reverse(f"admin:queues_{model}_changelist"))
        assert response.status_code == 200, model
    html = c.get(reverse("admin:queues_queue_changelist")).content.decode()
    assert '<td class="field-depth">3</td>' in html


def test_admin_edits_nothing_directly(two_queues, client_for):
    c = client_for("admin")
    assert c.get(reverse("admin:queues_message_add")).status_code == 403
    assert c.get(reverse("admin:queues_queue_add")).status_code == 403
    message = queues.peek("orders", limit=1)[0]
    assert c.post(reverse("admin:queues_message_delete", args=[message.id]), {"post": "yes"}).status_code == 403
    assert queues.queue_stats("orders").depth == 3


def test_admin_pause_action_confirms_on_get_and_acts_on_post(two_queues, client_for):
    c = client_for("admin")
    picked = c.post(reverse("admin:queues_queue_changelist"), {
        "action": "pause_queues", "_selected_action": [str(queues.get_queue(n).pk) for n in two_queues]})
    assert picked.status_code == 302
    confirm_url = picked["Location"]
    assert confirm_url.startswith(reverse("admin:queues_queue_confirm"))
    assert not queues.get_queue("orders").paused  # nothing happened yet
    page = c.get(confirm_url)
    assert page.status_code == 200 and b"Pause 2 queues?" in page.content
    done = c.post(reverse("admin:queues_queue_confirm"), {"action": "pause", "name": two_queues})
    assert done.status_code == 302
    assert queues.get_queue("orders").paused and queues.get_queue("emails").paused
    assert AuditEvent.objects.filter(action="pause_queue", outcome="ok", actor_name="admin").count() == 2


def test_admin_purge_goes_through_the_service(two_queues, client_for):
    c = client_for("admin")
    c.post(reverse("admin:queues_queue_confirm"), {"action": "purge", "name": ["orders"], "confirm": "orders"})
    assert queues.queue_stats("orders").depth == 0
    assert AuditEvent.objects.get(action="purge_queue").count == 3


def test_admin_purge_needs_each_queue_name_typed(two_queues, client_for):
    c = client_for("admin")
    page = c.get(reverse("admin:queues_queue_confirm"), {"action": "purge", "name": two_queues})
    assert b'name="confirm"' in page.content
    depths = {name: queues.queue_stats(name).depth for name in two_queues}
    c.post(reverse("admin:queues_queue_confirm"), {"action": "purge", "name": two_queues})  # one click
    assert {name: queues.queue_stats(name).depth for name in two_queues} == depths
    assert set(AuditEvent.objects.values_list("outcome", flat=True)) == {"error"}
    c.post(reverse("admin:queues_queue_confirm"), {"action": "purge", "name": two_queues, "confirm": two_queues[0]})
    assert queues.queue_stats(two_queues[0]).depth == 0 and queues.queue_stats(two_queues[1]).depth == depths[
        two_queues[1]]


@pytest.mark.parametrize("name", ["a\x00b", "x" * 500, "Bad Name"])
def test_admin_confirm_page_refuses_a_malformed_name_with_a_400(two_queues, client_for, name):
    response = client_for("admin").get(reverse("admin:queues_queue_confirm"), {"action": "pause", "name": [name]})
    assert response.status_code == 400 and b"invalid queue name" in response.content.lower()


def test_admin_actions_are_permission_gated(two_queues, make_user, client_for):
    from django.test import Client

    viewer = make_user("viewer", username="staff-viewer", staff=True)
    c = Client()
    c.force_login(viewer)
    changelist = c.get(reverse("admin:queues_queue_changelist"))
    assert changelist.status_code == 200  # dashboard viewers may look
    assert b"pause_queues" not in changelist.content
    assert c.get(reverse("admin:queues_queue_confirm") + "?action=purge&name=orders").status_code == 403
    c.post(reverse("admin:queues_queue_confirm"), {"action": "purge", "name": ["orders"]})
    assert queues.queue_stats("orders").depth == 3
    assert AuditEvent.objects.get(action="purge_queue").outcome == "denied"
