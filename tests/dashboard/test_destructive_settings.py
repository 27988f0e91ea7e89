"""Settings that destroy messages need the permission destroying them needs, and a spelled-out confirmation.

A shorter retention deletes, at the next prune, every message that became available longer ago: the
same loss as a purge, so it needs ``queues.purge_queues``, says how many messages go, and asks for the
queue's name typed, on the dashboard and on the command line alike.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

import queues
from queues import services
from queues.models import AuditEvent, Message

pytestmark = pytest.mark.django_db

FORM = {"kind": "standard", "visibility_timeout": "30", "max_receives": "5", "dead_letter_queue": "orders.dlq",
        "default_delay": "0", "retention": "345600", "max_message_size": "262144", "dedup_window": "300"}


@pytest.fixture
def orders(make_queue) -> str:
    """``orders`` with 3 messages two hours old and 2 fresh ones."""
    make_queue("orders")
    old = queues.send_batch("orders", [{"n": i} for i in range(3)])
    two_hours_ago = timezone.now() - timedelta(hours=2)
    Message.objects.filter(id__in=old).update(enqueued_at=two_hours_ago, available_at=two_hours_ago)
    queues.send_batch("orders", [{"fresh": i} for i in range(2)])
    return "orders"


def _retention(name: str) -> float:
    return queues.get_queue(name).retention.total_seconds()


def test_operator_without_purge_cannot_delete_messages_by_shortening_retention(orders, client_for):
    response = client_for("operator").post(reverse("queues:queue-settings", args=[orders]),
                                           {**FORM, "retention": "60"})
    assert response.status_code == 403
    assert _retention(orders) == 4 * 86400
    queues.prune()
    assert queues.queue_stats(orders).depth == 5
    event = AuditEvent.objects.get(action="shorten_retention")
    assert event.outcome == "denied" and "purge_queues" in event.error


def test_shorter_retention_spells_out_its_consequence_and_needs_the_name_typed(orders, client_for):
    c = client_for("purger")
    page = c.post(reverse("queues:queue-settings", args=[orders]), {**FORM, "retention": "60"})
    assert page.status_code == 200
    assert b"This will delete the 3 messages older than 1 min at the next prune" in page.content
    assert _retention(orders) == 4 * 86400  # nothing changed yet

    wrong = c.post(reverse("queues:queue-settings", args=[orders]), {**FORM, "retention": "60", "confirm": "order"})
    assert wrong.status_code == 400 and _retention(orders) == 4 * 86400

    done = c.post(reverse("queues:queue-settings", args=[orders]), {**FORM, "retention": "60", "confirm": orders})
    assert done.status_code == 302 and _retention(orders) == 60
    event = AuditEvent.objects.get(action="shorten_retention", outcome="ok")
    assert event.count == 3 and event.detail["would_delete"] == 3
    assert event.detail["changes"]["retention"] == [345600.0, 60.0]
    assert queues.prune().expired_messages == 3


@pytest.mark.parametrize("change", [
    {"retention": "400000"},                       # longer keeps more
    {"max_receives": "1"},                         # failing messages move to the dead-letter queue
    {"dead_letter_queue": ""},                     # failures are redelivered forever
    {"max_message_size": "64"},                    # future sends are refused; stored ones stay
    {"visibility_timeout": "5", "dedup_window": "0", "default_delay": "3"},
])
def test_settings_that_destroy_nothing_need_only_operate(orders, client_for, change):
    response = client_for("operator").post(reverse("queues:queue-settings", args=[orders]), {**FORM, **change})
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="update_queue_settings").outcome == "ok"
    assert not AuditEvent.objects.filter(action="shorten_retention").exists()


def test_service_refuses_a_shorter_retention_without_the_typed_name(orders, users):
    with pytest.raises(services.ConfirmationNeeded, match="delete the 3 messages older than 1 min") as caught:
        services.update_queue_settings(actor=users["purger"], queue=orders, settings={"retention": 60})
    assert caught.value.impact.would_delete == 3
    assert _retention(orders) == 4 * 86400


def test_command_line_spells_out_the_loss_and_refuses_without_confirmation(orders):
    with pytest.raises(CommandError, match="without confirmation"):
        call_command("mq_queue", "update", orders, "--retention", "1m")
    assert _retention(orders) == 4 * 86400
    # Refused like the dashboard's unconfirmed change: nothing changed, one error row says so.
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome) == ("shorten_retention", "error")


def test_command_line_with_yes_records_what_the_change_deletes(orders, capsys):
    call_command("mq_queue", "update", orders, "--retention", "1m", "--yes")
    assert _retention(orders) == 60
    event = AuditEvent.objects.get()
    assert (event.action, event.count, event.detail["would_delete"]) == ("shorten_retention", 3, 3)
    assert "This will delete the 3 messages older than 1 min" in event.detail["consequence"]


def test_command_line_asks_at_a_terminal_and_says_how_many_go(orders, monkeypatch, capsys):
    class Terminal:
        def isatty(self) -> bool:
            return True

        def readline(self) -> str:
            return "orders\n"

    monkeypatch.setattr("sys.stdin", Terminal())
    call_command("mq_queue", "update", orders, "--retention", "1m")
    assert "This will delete the 3 messages older than 1 min" in capsys.readouterr().out
    assert _retention(orders) == 60


def test_admin_cannot_change_a_queue_at_all(orders, client_for, users):
    from queues.models import Queue

    pk = Queue.objects.get(name=orders).pk
    response = client_for("admin").post(reverse("admin:queues_queue_change", args=[pk]),
                                        {"name": orders, "retention": "60"})
    assert response.status_code == 403
    assert _retention(orders) == 4 * 86400
