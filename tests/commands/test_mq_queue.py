"""mq_queue: create, list, update and delete queues from the command line."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management.base import CommandError

import queues
from queues.models import AuditEvent, Queue
from tests.commands.conftest import TTY


def test_create_with_every_setting(cmd):
    out = cmd("mq_queue", "create", "billing", "--kind", "fifo", "--visibility-timeout", "1m30s",
              "--max-receives", "7", "--default-delay", "500ms", "--retention", "2d", "--max-message-size", "1MiB",
              "--dedup-window", "10m", "--paused").out
    queue = queues.get_queue("billing")
    assert (queue.kind, queue.max_receives, queue.max_message_size, queue.paused) == ("fifo", 7, 1024**2, True)
    assert queue.visibility_timeout == timedelta(seconds=90)
    assert queue.default_delay == timedelta(milliseconds=500)
    assert queue.retention == timedelta(days=2)
    assert queue.dedup_window == timedelta(minutes=10)
    assert queue.dead_letter_queue.name == "billing.dlq"
    assert "Created fifo queue 'billing'" in out and "billing.dlq" in out
    assert AuditEvent.objects.filter(action="create_queue", queue_name="billing").count() == 1


def test_create_without_dead_letter_queue(cmd):
    out = cmd("mq_queue", "create", "logs", "--no-dead-letter-queue").out
    assert queues.get_queue("logs").dead_letter_queue is None
    assert not Queue.objects.filter(name="logs.dlq").exists()
    assert "no dead-letter queue" in out


def test_create_with_named_dead_letter_queue(cmd):
    cmd("mq_queue", "create", "a", "--dead-letter-queue", "graveyard")
    assert queues.get_queue("a").dead_letter_queue.name == "graveyard"


def test_create_existing_queue_says_how_to_change_it(cmd, make_queue):
    make_queue("orders", visibility_timeout=10)
    with pytest.raises(CommandError, match=r"exists already.*mq_queue update orders.*--exist-ok"):
        cmd("mq_queue", "create", "orders", "--visibility-timeout", "60")
    out = cmd("mq_queue", "create", "orders", "--visibility-timeout", "60", "--exist-ok").out
    assert "left unchanged" in out
    assert queues.get_queue("orders").visibility_timeout == timedelta(seconds=10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad Name"], r"invalid queue name 'Bad Name'.*a-z"),
        (["ok", "--visibility-timeout", "soon"], r"invalid duration 'soon'.*30s, 5m"),
        (["ok", "--visibility-timeout", "13h"], r"visibility_timeout must be at least 0.1 and at most 43200"),
        (["ok", "--retention", "10s"], r"retention must be at least 60"),
        (["ok", "--max-message-size", "lots"], r"invalid size 'lots'.*256KiB"),
        (["ok", "--max-message-size", "32MiB"], r"max_message_size must be at most 16 MiB"),
        (["ok", "--max-receives", "-1"], r"invalid number '-1'"),
        (["ok", "--kind", "lifo"], r"invalid choice: 'lifo'"),
        (["ok", "--paused", "--active"], r"not allowed with argument"),
        (["ok", "--dead-letter-queue", "x", "--no-dead-letter-queue"], r"not allowed with argument"),
        (["ok", "--dead-letter-queue", "ok"], r"cannot be its own dead-letter queue"),
    ],
)
def test_create_rejects_bad_input_and_creates_nothing(cmd, args, message):
    with pytest.raises(CommandError, match=message):
        cmd("mq_queue", "create", *args)
    assert not Queue.objects.exists()
    # Audited like the dashboard's refused form, whether the parser or the engine refused it.
    assert [(e.action, e.outcome) for e in AuditEvent.objects.all()] == [("create_queue", "error")]


def test_update_changes_only_the_given_settings(cmd, make_queue):
    make_queue("orders", visibility_timeout=10, max_receives=3)
    out = cmd("mq_queue", "update", "orders", "--visibility-timeout", "2m", "--paused").out
    queue = queues.get_queue("orders")
    assert queue.visibility_timeout == timedelta(minutes=2)
    assert queue.paused is True
    assert queue.max_receives == 3
    assert "visibility-timeout=2m" in out and "state=paused" in out
    cmd("mq_queue", "update", "orders", "--active", "--no-dead-letter-queue")
    queue = queues.get_queue("orders")
    assert queue.paused is False and queue.dead_letter_queue is None
    assert AuditEvent.objects.filter(action="update_queue_settings", queue_name="orders").count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["orders"], r"nothing to change: pass at least one setting"),
        (["missing", "--paused"], r"queue 'missing' does not exist"),
        (["orders", "--dead-letter-queue", "nowhere"], r"dead-letter queue 'nowhere' does not exist"),
        (["orders", "--kind", "fifo"], r"has messages: its kind can change only when it is empty"),
        (["orders", "--default-delay", "20d"], r"default_delay must be at least 0 and at most"),
    ],
)
def test_update_rejects_bad_input_and_changes_nothing(cmd, make_queue, args, message):
    make_queue("orders", visibility_timeout=10)
    queues.send("orders", {"a": 1})
    with pytest.raises(CommandError, match=message) as refused:
        cmd("mq_queue", "update", *args)
    queue = queues.get_queue("orders")
    assert (queue.kind, queue.visibility_timeout, queue.default_delay) == ("standard", timedelta(seconds=10),
                                                                         timedelta(0))
    assert queue.dead_letter_queue.name == "orders.dlq"
    assert [(e.outcome, e.error) for e in AuditEvent.objects.all()] == [("error", str(refused.value))]


def test_list_prints_a_table_of_settings(cmd, make_queue):
    make_queue("orders", visibility_timeout=90, max_message_size=1024)
    make_queue("payments.fifo", kind="fifo", paused=True)
    out = cmd("mq_queue", "list").out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["QUEUE", "KIND", "STATE"]
    orders = next(line for line in lines if line.startswith("orders "))
    assert orders.split()[:6] == ["orders", "standard", "active", "1m30s", "5", "orders.dlq"]
    assert "1KiB" in orders
    fifo = next(line for line in lines if line.startswith("payments.fifo "))
    assert fifo.split()[:3] == ["payments.fifo", "fifo", "paused"]


def test_list_json(cmd, make_queue):
    make_queue("orders", visibility_timeout=90)
    rows = json.loads(cmd("mq_queue", "list", "--json").out)
    assert [r["name"] for r in rows] == ["orders", "orders.dlq"]
    assert rows[0]["visibility_timeout"] == 90.0
    assert rows[0]["dead_letter_queue"] == "orders.dlq"
    assert rows[1]["dead_letter_queue"] is None


def test_list_without_queues_says_how_to_make_one(cmd):
    assert "mq_queue create" in cmd("mq_queue", "list").out
    assert json.loads(cmd("mq_queue", "list", "--json").out) == []


def test_delete_with_yes(cmd, make_queue):
    make_queue("orders")
    queues.send_batch("orders", [1, 2])
    out = cmd("mq_queue", "delete", "orders", "--yes").out
    assert "Deleted queue 'orders' and its 2 messages" in out
    assert "'orders.dlq' stays" in out
    assert not Queue.objects.filter(name="orders").exists()
    assert Queue.objects.filter(name="orders.dlq").exists()
    event = AuditEvent.objects.get(action="delete_queue")
    assert (event.queue_name, event.count) == ("orders", 2)
    assert event.actor_name.startswith("cli")


def test_delete_refuses_without_yes_when_it_cannot_ask(cmd, make_queue, monkeypatch):
    make_queue("orders")
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    with pytest.raises(CommandError, match=r"refusing to delete 'orders'.*Pass --yes"):
        cmd("mq_queue", "delete", "orders")
    assert Queue.objects.filter(name="orders").exists()


def test_delete_asks_for_the_name_at_a_terminal(cmd, make_queue, monkeypatch):
    make_queue("orders")
    monkeypatch.setattr("sys.stdin", TTY("order\n"))
    with pytest.raises(CommandError, match=r"not confirmed.*nothing was changed"):
        cmd("mq_queue", "delete", "orders")
    assert Queue.objects.filter(name="orders").exists()
    monkeypatch.setattr("sys.stdin", TTY("orders\n"))
    out = cmd("mq_queue", "delete", "orders").out
    assert "Type the queue name (orders)" in out
    assert not Queue.objects.filter(name="orders").exists()


def test_delete_unknown_queue(cmd):
    with pytest.raises(CommandError, match=r"queue 'nope' does not exist"):
        cmd("mq_queue", "delete", "nope", "--yes")


def test_missing_subcommand(cmd):
    with pytest.raises(CommandError, match=r"required: \{create,list,update,delete\}|the following arguments"):
        cmd("mq_queue")


def test_help_explains_every_option(run_manage):
    result = run_manage("mq_queue", "create", "--help")
    assert result.returncode == 0
    for option in ("--kind", "--visibility-timeout", "--max-receives", "--dead-letter-queue",
                   "--no-dead-letter-queue", "--default-delay", "--retention", "--max-message-size",
                   "--dedup-window", "--paused", "--active", "--exist-ok"):
        assert option in result.stdout
    assert "Default: 30s" in result.stdout


def test_bad_input_from_the_shell_is_one_line_without_traceback(run_manage):
    result = run_manage("mq_queue", "update", "nope", "--paused")
    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: queue 'nope' does not exist: create it first"
