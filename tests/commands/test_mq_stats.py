"""mq_stats: live counts as a table or JSON, once or refreshed."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
from django.core.management.base import CommandError
from django.db import transaction

import queues
from tests.conftest import wait_for


@pytest.fixture
def busy(make_queue, dead_letters):
    """orders: 2 ready, 1 delayed, 1 in flight; 2 dead letters in orders.dlq."""
    make_queue("orders", max_receives=1)
    dead_letters("orders", 2)
    queues.send_batch("orders", [1, 2, 3])
    queues.send("orders", 4, delay=600)
    queues.receive("orders", max_messages=1)


def row(out: str, name: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [name])


def test_table_shows_every_count(cmd, busy):
    out = cmd("mq_stats").out
    header = out.splitlines()[0].split()
    assert header[:4] == ["QUEUE", "KIND", "STATE", "READY"]
    assert "OLDEST" in header and "DEAD-LETTERED" in header and header[-1] == "HEALTH"
    # queue kind state ready delayed in-flight dead oldest sent acked failed dead-lettered health
    orders = row(out, "orders")
    assert orders[:7] == ["orders", "standard", "active", "2", "1", "1", "2"]
    assert orders[7].endswith("s")
    assert orders[8:] == ["6", "0", "2", "2", "0", "0", "healthy"]  # ... expired, cancelled, health
    # The same word for a dead-letter queue as the dashboard and the metrics use.
    assert row(out, "orders.dlq")[:4] == ["orders.dlq", "dead-letter", "active", "2"]


def test_only_named_queues(cmd, busy, make_queue):
    make_queue("emails")
    out = cmd("mq_stats", "emails").out
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["emails"]


def test_json(cmd, busy):
    [orders] = json.loads(cmd("mq_stats", "orders", "--json").out)
    assert {k: orders[k] for k in ("queue", "ready", "delayed", "in_flight", "dead", "sent_total")} == {
        "queue": "orders", "ready": 2, "delayed": 1, "in_flight": 1, "dead": 2, "sent_total": 6}
    assert orders["oldest_ready_age"] >= 0
    assert (orders["health"]["state"], orders["health"]["reasons"]) == ("healthy", [])


def test_no_queues(cmd):
    assert "No queues yet" in cmd("mq_stats").out
    assert json.loads(cmd("mq_stats", "--json").out) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "orders"], r"no queue named 'nope': list queues with `mq_queue list`"),
        (["Bad"], r"invalid queue name 'Bad'"),
        (["--watch", "0"], r"invalid number '0': it must be greater than 0"),
        (["--watch", "often"], r"invalid number 'often'"),
    ],
)
def test_bad_input(cmd, busy, args, message):
    with pytest.raises(CommandError, match=message):
        cmd("mq_stats", *args)


def test_watch_on_a_terminal_clears_the_screen_until_ctrl_c(cmd, busy):
    # Ctrl-C arrives as a signal to this process while the command sleeps between refreshes.
    timer = threading.Timer(1.5, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        out = cmd("mq_stats", "--watch", "0.1", tty=True).out
    finally:
        timer.cancel()
    screens = out.split("\x1b[H\x1b[2J")[1:]
    assert len(screens) >= 2
    assert "(Ctrl-C to stop)" in screens[-1]
    assert "SENT/S" in screens[-1] and "ACKED/S" in screens[-1]
    assert row(screens[-1], "orders")[-2:] == ["0.0", "0.0"]


@pytest.mark.slow
def test_watch_prints_plain_refreshes_and_rates_and_stops_on_ctrl_c(spawn_manage, make_queue):
    make_queue("orders")
    running = spawn_manage("mq_stats", "orders", "--watch", "0.3")
    running.wait_for_output("SENT/S")
    queues.send_batch("orders", list(range(30)))
    running.wait_for_output("orders  standard  active     30")
    running.signal()
    assert running.finish() == 0
    assert running.stderr == ""
    assert "\x1b[" not in running.stdout
    refreshes = running.stdout.count("QUEUE ")
    assert refreshes >= 2
    rates = [row(block, "orders")[-2] for block in running.stdout.split("UTC\n")[1:]]
    assert rates[0] == "-"  # no rate before a second reading
    assert max(float(r.replace(",", "")) for r in rates[1:]) > 0  # the refresh that saw the 30 sends


@pytest.mark.slow
def test_watch_json_is_one_document_per_refresh(spawn_manage, make_queue):
    make_queue("orders")
    running = spawn_manage("mq_stats", "--watch", "0.2", "--json")
    running.wait_for_output("\n", timeout=30)
    running.wait_for_output('"sent_per_second": 0.0')
    running.signal(signal.SIGTERM)
    assert running.finish() == 0
    docs = [json.loads(line) for line in running.stdout.splitlines()]
    assert len(docs) >= 2
    assert {q["queue"] for q in docs[-1]["queues"]} == {"orders", "orders.dlq"}
    assert "at" in docs[-1]


@pytest.mark.slow
def test_watch_never_shows_a_negative_rate_when_a_queue_is_made_again(spawn_manage, make_queue):
    # Counters restart from zero when a queue is deleted and made again: the next refresh's delta is
    # negative, and the rate must read 0.0, as on the dashboard, not minus the old total per second.
    make_queue("orders")
    queues.send_batch("orders", list(range(30)))
    running = spawn_manage("mq_stats", "--watch", "0.3")
    # KIND is as wide as "dead-letter" (orders.dlq), the word mq_stats shares with the dashboard.
    running.wait_for_output("orders      standard     active     30")
    with transaction.atomic():  # no refresh sees the queue missing: it sees the counters go back
        queues.purge("orders")
        queues.delete_queue("orders")
        make_queue("orders")
    running.wait_for_output("orders      standard     active      0")
    refreshes = running.stdout.count("QUEUE ")
    wait_for(lambda: running.stdout.count("QUEUE ") >= refreshes + 2, timeout=30)
    running.signal()
    assert running.finish() == 0
    blocks = [b for b in running.stdout.split("UTC\n")[1:] if "\norders " in "\n" + b]
    rates = [cell for block in blocks for cell in row(block, "orders")[-2:]]
    assert rates and not [r for r in rates if r.startswith("-") and r != "-"], rates
