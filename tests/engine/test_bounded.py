"""Bounded queues: a send never leaves a queue over its max_length; reject or drop the oldest."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

import queues
from queues.engine.expiry import flow_totals
from tests.engine.conftest import Thread, assert_counts_exact


def test_reject_refuses_the_send_that_does_not_fit_and_writes_nothing(make_queue):
    queue = make_queue(max_length=3)
    queues.send_batch(queue, ["a", "b"])
    queues.send(queue, "c")
    with pytest.raises(queues.QueueFull, match=r"is full \(max_length 3\)"):
        queues.send(queue, "d")
    with pytest.raises(queues.QueueFull):
        queues.send(queue, "d", dedup_id="d1")
    with pytest.raises(queues.QueueFull, match="can never fit"):
        queues.send_batch(queue, ["x"] * 4)
    assert [m.body for m in queues.peek(queue)] == ["a", "b", "c"]
    assert queues.queue_stats(queue).sent_total == 3
    # A dedup repeat stores nothing, so it fits even in a full queue.
    [d] = queues.receive(queue)
    queues.ack(d.receipt)
    first = queues.send(queue, "e", dedup_id="e1")
    assert queues.send(queue, "e", dedup_id="e1") == first
    assert_counts_exact("reject")


def test_a_refused_send_leaves_the_callers_transaction_alive(make_queue):
    queue, other = make_queue(max_length=1), make_queue()
    queues.send(queue, "a")
    with transaction.atomic():
        kept = queues.send(other, "kept")
        with pytest.raises(queues.QueueFull):
            queues.send(queue, "b")
    assert [m.id for m in queues.peek(other)] == [kept]


def test_drop_oldest_moves_the_oldest_waiting_messages_to_the_dead_letter_queue(make_queue):
    queue = make_queue(max_length=3, overflow="drop_oldest")
    first, second, third = queues.send_batch(queue, ["a", "b", "c"])
    [held] = queues.receive(queue)  # the oldest is in flight: it is not the one dropped
    assert held.id == first
    fourth, fifth = queues.send_batch(queue, ["d", "e"])
    assert sorted(m.id for m in queues.peek(queue)) == [first, fourth, fifth]
    dead = queues.peek(f"{queue}.dlq")
    assert [m.id for m in dead] == [second, third]
    assert dead[0].history[-1]["reason"].startswith("overflow")
    assert flow_totals([queue])[queue].overflowed == 2
    assert_counts_exact("drop oldest")


def test_drop_oldest_without_a_dead_letter_queue_deletes(make_queue):
    queue = make_queue(max_length=2, overflow="drop_oldest", dead_letter_queue=None)
    queues.send_batch(queue, ["a", "b"])
    queues.send(queue, "c")
    assert [m.body for m in queues.peek(queue)] == ["b", "c"]
    assert flow_totals([queue])[queue].overflowed == 1


def test_drop_oldest_refuses_when_everything_else_is_in_flight(make_queue):
    queue = make_queue(max_length=1, overflow="drop_oldest")
    queues.send(queue, "a")
    queues.receive(queue)
    with pytest.raises(queues.QueueFull, match="all in flight"):
        queues.send(queue, "b")
    assert len(queues.peek(queue)) == 1


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"max_length": 0}, "max_length must be an integer from 1"),
        ({"max_length": 2**31}, "max_length must be an integer"),
        ({"max_length": "10"}, "max_length must be an integer"),
        ({"overflow": "block"}, "overflow must be one of reject, drop_oldest"),
    ],
)
def test_bad_bound_settings_are_refused_and_nothing_changes(make_queue, settings, error):
    queue = make_queue()
    with pytest.raises(queues.InvalidQueueSettings, match=error):
        queues.update_queue(queue, **settings)
    q = queues.get_queue(queue)
    assert (q.max_length, q.overflow) == (None, "reject")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("overflow", ["reject", "drop_oldest"])
def test_concurrent_producers_never_exceed_max_length(make_queue, overflow):
    limit, producers, each = 25, 6, 20
    queue = make_queue(max_length=limit, overflow=overflow)
    start = threading.Barrier(producers)
    peak: list[int] = []

    def produce() -> tuple[int, int]:
        start.wait()
        sent = refused = 0
        for n in range(each):
            try:
                queues.send(queue, n)
                sent += 1
            except queues.QueueFull:
                refused += 1
        return sent, refused

    def watch(stop: threading.Event) -> None:
        while not stop.is_set():
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id WHERE q.name = %s",
                    [queue],
                )
                peak.append(cur.fetchone()[0])

    stop = threading.Event()
    watcher = Thread(lambda: watch(stop))
    watcher.start()
    threads = [Thread(produce) for _ in range(producers)]
    for t in threads:
        t.start()
    outcomes = [t.outcome() for t in threads]
    stop.set()
    watcher.outcome()
    total_sent = sum(s for s, _ in outcomes)
    stats = queues.queue_stats(queue)
    assert stats.depth == limit
    assert max(peak) <= limit
    if overflow == "reject":
        assert total_sent == limit
        assert sum(r for _, r in outcomes) == producers * each - limit
    else:
        assert total_sent == producers * each
        assert flow_totals([queue])[queue].overflowed == producers * each - limit
    assert_counts_exact(f"concurrent {overflow}")
