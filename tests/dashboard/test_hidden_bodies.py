"""``HIDE_BODIES`` hides bodies everywhere: no lookup, search or count may confirm a guessed value.

A value is read without the audited reveal as soon as any query answers "does a body contain X?":
the admin's ``?body__card__startswith=4`` a digit at a time, the browser's ``body.card:4111…``, or the
count an "all matching" confirmation shows. Each is refused while bodies are hidden, and each attempt
is on record.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

import queues
from queues.models import AuditEvent

pytestmark = pytest.mark.django_db

CARD = "4111111111111111"


@pytest.fixture
def hidden(settings) -> None:
    settings.MQADMIN = {**getattr(settings, "MQADMIN", {}), "HIDE_BODIES": True}


@pytest.fixture
def payments(make_queue) -> str:
    make_queue("payments")
    queues.send("payments", {"card": CARD, "amount": 12})
    queues.send("payments", {"card": "5500000000000004", "amount": 3})
    return "payments"


@pytest.fixture
def staff_viewer(make_user):
    """A staff user who may look at the dashboard (and so at the admin's message list)."""
    return make_user("viewer", username="staffviewer", staff=True)


@pytest.mark.parametrize("lookup", [
    "body__card__startswith", "body__card__regex", "body__card__icontains", "body__card", "body__contains",
    "body__card__exact",
])
def test_admin_refuses_lookups_on_hidden_bodies_and_audits_them(hidden, payments, staff_viewer, client, lookup):
    client.force_login(staff_viewer)
    value = '{"card": "4111"}' if lookup == "body__contains" else "4111"
    response = client.get(reverse("admin:queues_message_changelist"), {lookup: value})
    assert response.status_code == 400
    assert CARD.encode() not in response.content
    event = AuditEvent.objects.get(action="search_bodies")
    assert event.outcome == "denied" and event.actor_name == "staffviewer"
    assert event.detail["lookup"] == lookup and "4111" not in json.dumps(event.detail)


def test_admin_lookups_through_a_relation_cannot_reach_bodies(hidden, payments, staff_viewer, client):
    client.force_login(staff_viewer)
    response = client.get(reverse("admin:queues_queue_changelist"), {"messages__body__card__startswith": "4"})
    assert response.status_code == 400


def test_admin_lookups_on_bodies_work_when_bodies_are_shown(payments, staff_viewer, client):
    client.force_login(staff_viewer)
    response = client.get(reverse("admin:queues_message_changelist"), {"body__card__startswith": "4111"})
    assert response.status_code == 200 and b"1 message" in response.content


def test_admin_detail_page_shows_no_hidden_body(hidden, payments, staff_viewer, client):
    from queues.models import Message

    client.force_login(staff_viewer)
    message = Message.objects.filter(queue__name=payments).first()
    response = client.get(reverse("admin:queues_message_change", args=[message.id]))
    assert response.status_code == 200 and CARD.encode() not in response.content


def test_browser_refuses_a_body_search_while_bodies_are_hidden_and_audits_it(hidden, payments, client_for):
    response = client_for("viewer").get(reverse("queues:messages"), {"q": f"body.card:{CARD}"})
    assert response.status_code == 403
    assert b"HIDE_BODIES" in response.content
    event = AuditEvent.objects.get(action="search_bodies")
    assert (event.outcome, event.actor_name, event.detail["body_paths"]) == ("denied", "viewer", ["card"])
    assert CARD not in json.dumps(event.detail)  # the log, which every viewer reads, keeps no guessed value


def test_bulk_count_cannot_confirm_a_hidden_value(hidden, payments, client_for):
    response = client_for("admin").get(reverse("queues:message-bulk"),
                                       {"action": "retry", "scope": "matching", "q": f"body.card:{CARD}"})
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="search_bodies", outcome="denied").count() == 1


def test_other_searches_still_work_while_bodies_are_hidden(hidden, payments, client_for):
    response = client_for("viewer").get(reverse("queues:messages"), {"q": "queue:payments state:ready"})
    assert response.status_code == 200 and CARD.encode() not in response.content
    assert not AuditEvent.objects.exists()


def test_body_search_works_when_bodies_are_shown(payments, client_for):
    response = client_for("viewer").get(reverse("queues:messages"), {"q": f"body.card:{CARD}"})
    assert response.status_code == 200 and CARD.encode() in response.content
