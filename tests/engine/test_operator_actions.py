"""Operator actions: pause, purge, delete, move, retry now, peek, retention."""

from __future__ import annotations

import pytest
from django.db import connection

import queues
from tests.engine.conftest import assert_counts_exact, message_rows


def _age(queue: str, ids: list[int], minutes: int) -> None:
    """Pretend the messages were sent ``minutes`` ago (retention is at least 60 s)."""
    with connection.cursor() as cur:
        cur.execute(
            # Leases in flight keep their end (leased_until); every message has been waiting that long.
            "UPDATE queues_message SET enqueued_at = enqueued_at - %s * interval '1 minute',"
            " available_at = available_at - %s * interval '1 minute' WHERE id = ANY(%s)",
            [minutes, minutes, ids],
        )


def test_paused_queue_delivers_nothing_but_accepts_sends_and_resume_delivers(make_queue):
    queue = make_queue()
    first = queues.send(queue, "before pause")
    queues.pause(queue)
    assert queues.queue_stats(queue).paused is True
    second = queues.send(queue, "while paused")
    assert queues.receive(queue, max_messages=10) == []
    assert queues.queue_stats(queue).ready == 2
    queues.resume(queue)
    assert [d.id for d in queues.receive(queue, max_messages=10)] == [first, second]


def test_paused_fifo_queue_delivers_nothing(make_queue):
    queue = make_queue(kind="fifo", paused=True)
    queues.send(queue, "x", group="g")
    assert queues.receive(queue) == []
    queues.resume(queue)
    assert len(queues.receive(queue)) == 1


def test_pause_keeps_leases_already_given(make_queue):
    queue = make_queue()
    queues.send(queue, "x")
    [d] = queues.receive(queue)
    queues.pause(queue)
    queues.ack(d.receipt)
    assert message_rows() == 0


def test_purge_removes_ready_delayed_and_in_flight_messages_of_that_queue_only(make_queue):
    queue, bystander = make_queue(), make_queue()
    queues.send_batch(queue, ["a", "b", "c"])
    queues.send(queue, "later", delay=300)
    [d] = queues.receive(queue)
    queues.send(bystander, "stays")
    assert queues.purge(queue) == 4
    assert queues.peek(queue) == []
    assert [m.body for m in queues.peek(bystander)] == ["stays"]
    with pytest.raises(queues.LeaseExpired):
        queues.ack(d.receipt)
    assert_counts_exact("purge")
    assert queues.purge(queue) == 0


def test_delete_messages_removes_only_the_given_ids_of_that_queue(make_queue):
    queue, other = make_queue(), make_queue()
    ids = queues.send_batch(queue, ["a", "b", "c"])
    foreign = queues.send(other, "not mine")
    assert queues.delete_messages(queue, [ids[0], ids[2], foreign, 10**12]) == 2
    assert [m.id for m in queues.peek(queue)] == [ids[1]]
    assert [m.id for m in queues.peek(other)] == [foreign]
    assert queues.delete_messages(queue, []) == 0
    assert_counts_exact("delete_messages")


def test_move_messages_skips_messages_in_flight(make_queue):
    queue, target = make_queue(), make_queue()
    ids = queues.send_batch(queue, ["a", "b", "c"])
    [held] = queues.receive(queue)
    assert held.id == ids[0]
    delayed = queues.send(queue, "later", delay=300)
    assert queues.move_messages(queue, [*ids, delayed], to=target) == 3
    assert [m.id for m in queues.peek(queue)] == [ids[0]]
    moved = queues.peek(target)
    assert [(m.id, m.state, m.receive_count) for m in moved] == [
        (ids[1], "ready", 0), (ids[2], "ready", 0), (delayed, "ready", 0)
    ]
    assert moved[0].history[-1]["event"] == "moved" and moved[0].history[-1]["from"] == queue
    queues.ack(held.receipt)  # the holder's lease was untouched
    assert_counts_exact("move_messages")


def test_move_messages_out_of_a_dead_letter_queue_makes_them_live(make_queue):
    queue, target = make_queue(max_receives=1), make_queue()
    message_id = queues.send(queue, "x")
    [d] = queues.receive(queue)
    queues.nack(d.receipt, error="boom")
    assert queues.move_messages(f"{queue}.dlq", [message_id], to=target) == 1
    [info] = queues.peek(target)
    assert (info.id, info.state, info.dead_at) == (message_id, "ready", None)
    assert queues.receive(target)[0].id == message_id


def test_retry_now_makes_delayed_messages_ready_and_leaves_leases_alone(make_queue):
    queue = make_queue()
    delayed = queues.send(queue, "later", delay=300)
    queues.send(queue, "now")
    [held] = queues.receive(queue)
    assert queues.retry_now(queue, [delayed, held.id]) == 1
    [got] = queues.receive(queue)
    assert got.id == delayed
    [info] = queues.peek(queue, ids=[held.id])
    assert info.state == "in_flight"
    queues.ack(held.receipt)


def test_retry_now_cuts_a_nack_backoff_short(make_queue):
    queue = make_queue()
    message_id = queues.send(queue, "x")
    [d] = queues.receive(queue)
    queues.nack(d.receipt, delay=300, error="backing off")
    assert queues.receive(queue) == []
    assert queues.retry_now(queue, [message_id]) == 1
    [again] = queues.receive(queue)
    assert (again.id, again.receive_count, again.last_error) == (message_id, 2, "backing off")


def test_peek_does_not_change_delivery_state(make_queue):
    queue = make_queue()
    ids = queues.send_batch(queue, ["a", "b"])
    queues.send(queue, "c", delay=300)
    [held] = queues.receive(queue)
    before = queues.peek(queue)
    assert [m.state for m in before] == ["in_flight", "ready", "delayed"]
    for _ in range(3):
        assert queues.peek(queue) == before
        assert queues.peek(queue, ids=[ids[1]]) == [before[1]]
    assert [m.receive_count for m in before] == [1, 0, 0]
    [got] = queues.receive(queue)
    assert (got.id, got.receive_count) == (ids[1], 1)
    queues.ack(held.receipt)


def test_peek_pages_in_id_order(make_queue):
    queue = make_queue()
    ids = queues.send_batch(queue, list(range(7)))
    first = queues.peek(queue, limit=3)
    second = queues.peek(queue, limit=3, after_id=first[-1].id)
    third = queues.peek(queue, limit=3, after_id=second[-1].id)
    assert [m.id for m in first + second + third] == ids


def test_prune_removes_messages_past_retention_but_never_ones_in_flight(make_queue):
    queue = make_queue(retention=60)
    long_lived = make_queue()  # default retention: four days
    old = queues.send_batch(queue, ["old-1", "old-2", "old-3"])
    fresh = queues.send(queue, "fresh")
    kept = queues.send(long_lived, "two minutes old is young here")
    [held] = queues.receive(queue)
    assert held.id == old[0]
    _age(queue, old, minutes=2)
    _age(long_lived, [kept], minutes=2)

    result = queues.prune()
    assert result.expired_messages == 2
    assert [m.id for m in queues.peek(queue)] == [old[0], fresh]
    assert [m.id for m in queues.peek(long_lived)] == [kept]
    queues.ack(held.receipt)
    assert_counts_exact("prune")


def test_prune_forgets_expired_dedup_ids(make_queue):
    queue = make_queue(dedup_window=0)
    first = queues.send(queue, "a", dedup_id="k")
    assert queues.prune().expired_dedup_ids == 1
    assert queues.send(queue, "b", dedup_id="k") != first
