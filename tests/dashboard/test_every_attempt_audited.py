"""Every attempt leaves its audit row, whatever odd input it carries; refusals give no hint of what exists.

The audit writer itself makes NUL characters, lone surrogates, non-finite numbers, huge integers,
deep nesting and over-long text safe before the insert, so a hostile request cannot make the row fail.
Invalid input to an action is refused (400) and recorded, like a missing permission (403).
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

import queues
from queues import audit, services
from queues.models import AuditEvent
from queues.permissions import Action

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders(make_queue) -> str:
    return make_queue("orders")


def test_nul_in_a_queue_name_is_refused_and_audited_for_a_viewer(client_for):
    response = client_for("viewer").post("/queues/bad%00name/pause/")
    assert response.status_code == 403
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome, event.queue_name) == ("pause_queue", "denied", "bad\\x00name")


@pytest.mark.parametrize("path", ["pause", "resume", "purge", "delete", "settings", "publish", "redrive"])
def test_nul_in_a_queue_name_is_a_400_and_audited_for_an_admin(client_for, path):
    response = client_for("admin").post(f"/queues/bad%00name/{path}/", {"confirm": "bad\x00name"})
    assert response.status_code == 400
    assert b"invalid queue name" in response.content.lower()
    event = AuditEvent.objects.get()
    assert (event.outcome, event.queue_name) == ("error", "bad\\x00name")


def test_nul_in_a_queue_name_page_is_a_404(client_for):
    assert client_for("viewer").get("/queues/bad%00name/").status_code == 404


def test_a_header_with_a_lone_surrogate_is_refused_and_still_audited(orders, client_for):
    headers = json.dumps({"trace": "\ud800"})  # JSON's escape, so the form field carries the lone surrogate
    response = client_for("publisher").post(reverse("queues:queue-publish", args=[orders]),
                                            {"body": "{}", "headers": headers, "priority": "0"})
    assert response.status_code == 400
    event = AuditEvent.objects.get(action="publish_message")
    assert event.outcome == "error"
    assert event.detail["headers"] == {"trace": "\\ud800"}
    assert queues.queue_stats(orders).depth == 0


def test_audit_writer_is_safe_for_any_input(users):
    nasty = {
        "nul": "a\x00b", "surrogate": "\udcff", "nan": float("nan"), "inf": float("-inf"), "big": 10**5000,
        "deep": json.loads("[" * 50 + "]" * 50), "long": "x" * 100_000, "many": list(range(10_000)),
        "k\x00ey": ("tuple", {1, 2}),
    }
    with pytest.raises(PermissionDenied):
        services.authorize(actor=users["viewer"], action=Action.PURGE_QUEUE, queue="q\x00" + "\udc80" * 200,
                           remote_addr="1.2.3.4\x00" * 20, detail=nasty)
    event = AuditEvent.objects.get()
    assert event.outcome == "denied" and event.queue_name.startswith("q\\x00\\udc80") and len(event.queue_name) <= 80
    assert event.detail["nul"] == "a\\x00b" and event.detail["surrogate"] == "\\udcff"
    assert event.detail["nan"] == "nan" and event.detail["inf"] == "-inf"
    assert event.detail["big"].startswith("integer of") and len(event.detail["long"]) <= audit.AUDIT_MAX_TEXT
    assert len(event.detail["many"]) == audit.AUDIT_MAX_ITEMS + 1 and "k\\x00ey" in event.detail


@pytest.mark.parametrize("post, fragment", [
    ({"kind": "standard", "visibility_timeout": "-5"}, "visibility_timeout"),
])
def test_invalid_settings_are_refused_and_audited(orders, client_for, post, fragment):
    response = client_for("operator").post(reverse("queues:queue-settings", args=[orders]), post)
    assert response.status_code == 400
    event = AuditEvent.objects.get(action="update_queue_settings")
    assert event.outcome == "error" and fragment in event.error


def test_invalid_publish_form_is_refused_and_audited(orders, client_for):
    response = client_for("publisher").post(reverse("queues:queue-publish", args=[orders]),
                                            {"body": "{not json", "priority": "0"})
    assert response.status_code == 400
    assert AuditEvent.objects.get(action="publish_message").outcome == "error"


def test_invalid_new_queue_is_refused_and_audited(client_for):
    response = client_for("operator").post(reverse("queues:queue-create"), {"name": "Bad Name\x00"})
    assert response.status_code == 400
    event = AuditEvent.objects.get(action="create_queue")
    assert event.outcome == "error" and event.queue_name == "Bad Name\\x00"


def test_unknown_queue_for_an_action_is_a_404_on_record(client_for):
    response = client_for("admin").post(reverse("queues:queue-settings", args=["nope"]), {})
    assert response.status_code == 404
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome, event.queue_name) == ("update_queue_settings", "error", "nope")


# -- existence is not revealed to users who may not see the dashboard ----------------------------------
ACTION_URLS = [
    ("post", "queue-settings"), ("post", "queue-pause"), ("post", "queue-resume"), ("get", "queue-purge"),
    ("post", "queue-purge"), ("get", "queue-delete"), ("post", "queue-delete"), ("get", "queue-publish"),
    ("post", "queue-publish"), ("get", "queue-redrive"), ("post", "queue-redrive"), ("get", "queue-detail"),
    ("get", "queue-messages"),
]


@pytest.mark.parametrize("role", ["staff", "viewer"])
@pytest.mark.parametrize("method, name", ACTION_URLS)
def test_existing_and_missing_queues_answer_alike_to_those_who_may_not_act(orders, client_for, role, method, name):
    c = client_for(role)
    existing = getattr(c, method)(reverse(f"queues:{name}", args=[orders]))
    missing = getattr(c, method)(reverse(f"queues:{name}", args=["no-such-queue"]))
    if role == "viewer" and name in ("queue-detail", "queue-messages"):
        return  # viewers may see which queues exist
    assert existing.status_code == missing.status_code == 403
