"""Dedup: a repeat inside the window stores nothing and returns the first message's id."""

from __future__ import annotations

import threading

import pytest

import queues
from tests.conftest import wait_for
from tests.engine.conftest import Thread, message_rows


def test_second_send_with_same_dedup_id_returns_first_id_and_stores_nothing(make_queue):
    queue = make_queue()
    first = queues.send(queue, {"v": 1}, dedup_id="order-17")
    again = queues.send(queue, {"v": 2}, dedup_id="order-17", priority=50)
    assert again == first
    [info] = queues.peek(queue)
    assert (info.id, info.body, info.priority, info.dedup_id) == (first, {"v": 1}, 0, "order-17")
    stats = queues.queue_stats(queue)
    assert (stats.depth, stats.sent_total) == (1, 1)


def test_dedup_holds_after_the_first_message_was_acked(make_queue):
    queue = make_queue()
    first = queues.send(queue, "x", dedup_id="once")
    [d] = queues.receive(queue)
    queues.ack(d.receipt)
    assert queues.send(queue, "x", dedup_id="once") == first
    assert queues.peek(queue) == []
    assert queues.receive(queue) == []


def test_dedup_holds_after_the_first_message_was_dead_lettered_or_purged(make_queue):
    queue = make_queue(max_receives=1)
    first = queues.send(queue, "x", dedup_id="d1")
    [d] = queues.receive(queue)
    assert queues.nack(d.receipt, error="bad") is True
    assert queues.send(queue, "x", dedup_id="d1") == first
    second = queues.send(queue, "y", dedup_id="d2")
    queues.purge(queue)
    assert queues.send(queue, "y", dedup_id="d2") == second
    assert queues.peek(queue) == []


def test_after_the_dedup_window_the_same_id_stores_a_new_message(make_queue):
    queue = make_queue(dedup_window=1)
    first = queues.send(queue, "v1", dedup_id="k")
    assert queues.send(queue, "v1", dedup_id="k") == first
    # Poll: every send inside the window must keep returning the first id; the first one after it stores.
    new = wait_for(lambda: (i := queues.send(queue, "v2", dedup_id="k")) != first and i, timeout=10)
    assert [m.body for m in queues.peek(queue)] == ["v1", "v2"]
    assert queues.send(queue, "v3", dedup_id="k") == new, "the new message opens a new window"
    assert message_rows() == 2


def test_duplicate_dedup_ids_within_one_send_batch(make_queue):
    queue = make_queue()
    ids = queues.send_batch(
        queue,
        [
            queues.Outgoing(body="a", dedup_id="x"),
            queues.Outgoing(body="b", dedup_id="y"),
            queues.Outgoing(body="c", dedup_id="x"),
            queues.Outgoing(body="d"),
            queues.Outgoing(body="e", dedup_id="y"),
        ],
    )
    assert ids[0] == ids[2] and ids[1] == ids[4]
    assert len(set(ids)) == 3
    assert [(m.id, m.body) for m in queues.peek(queue)] == [(ids[0], "a"), (ids[1], "b"), (ids[3], "d")]
    assert queues.queue_stats(queue).sent_total == 3


def test_batch_mixing_new_and_already_seen_dedup_ids(make_queue):
    queue = make_queue()
    old = queues.send(queue, "old", dedup_id="seen")
    ids = queues.send_batch(
        queue, [queues.Outgoing(body="n1", dedup_id="new"), queues.Outgoing(body="o", dedup_id="seen"), "plain"]
    )
    assert ids[1] == old
    assert [m.body for m in queues.peek(queue)] == ["old", "n1", "plain"]


def test_dedup_ids_are_per_queue(make_queue):
    a, b = make_queue(), make_queue()
    assert queues.send(a, "x", dedup_id="same") != queues.send(b, "x", dedup_id="same")
    assert message_rows() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_of_one_dedup_id_store_one_message(make_queue):
    queue = make_queue()
    barrier = threading.Barrier(6)

    def sender(n: int):
        def run() -> int:
            queues.queue_stats(queue)  # connect before the race
            barrier.wait()
            return queues.send(queue, {"sender": n}, dedup_id="race")

        return run

    threads = [Thread(sender(n)) for n in range(6)]
    for t in threads:
        t.start()
    ids = {t.outcome() for t in threads}
    assert len(ids) == 1
    assert message_rows() == 1
    assert queues.queue_stats(queue).sent_total == 1
