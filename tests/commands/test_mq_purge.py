"""mq_purge: delete every message of a queue, never silently."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

import queues
from queues.models import AuditEvent
from tests.commands.conftest import TTY


@pytest.fixture
def orders(make_queue):
    make_queue("orders")
    queues.send_batch("orders", [1, 2, 3])
    queues.send("orders", 4, delay=600)
    queues.receive("orders")
    return "orders"


def test_purge_with_yes_removes_ready_delayed_and_in_flight(cmd, orders):
    out = cmd("mq_purge", "orders", "--yes").out
    assert out.strip() == "Purged 4 messages from 'orders'."
    assert queues.queue_stats("orders").depth == 0
    event = AuditEvent.objects.get(action="purge_queue")
    assert (event.queue_name, event.count, event.outcome) == ("orders", 4, "ok")


def test_refuses_without_yes_when_stdin_is_not_a_terminal(run_manage, orders):
    result = run_manage("mq_purge", "orders", input="orders\n")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "CommandError: refusing to purge 'orders' without confirmation: stdin is not a terminal, so I cannot "
        "ask. Pass --yes to confirm in scripts."
    )
    assert queues.queue_stats("orders").depth == 4
    event = AuditEvent.objects.get()
    assert (event.action, event.queue_name, event.outcome, event.count) == ("purge_queue", "orders", "error", 0)
    assert event.error.startswith("refusing to purge 'orders' without confirmation")


def test_asks_for_the_name_at_a_terminal(cmd, orders, monkeypatch):
    monkeypatch.setattr("sys.stdin", TTY("yes\n"))
    with pytest.raises(CommandError, match=r"not confirmed \(you typed 'yes'\): nothing was changed"):
        cmd("mq_purge", "orders")
    assert queues.queue_stats("orders").depth == 4
    monkeypatch.setattr("sys.stdin", TTY("orders\n"))
    out = cmd("mq_purge", "orders").out
    assert "holds 4 messages (2 ready, 1 delayed, 1 in flight)" in out
    assert "Purged 4 messages" in out
    assert queues.queue_stats("orders").depth == 0


def test_unknown_queue(cmd):
    with pytest.raises(CommandError, match=r"queue 'nope' does not exist"):
        cmd("mq_purge", "nope", "--yes")
