"""Poison messages go to the dead-letter queue with their history; redrive brings them back."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

import queues
from queues.models import Redrive, RedriveState
from tests.conftest import wait_for
from tests.engine.conftest import Thread, assert_counts_exact


def _expire(delivery: queues.Delivery) -> None:
    wait_for(lambda: datetime.now(UTC) > delivery.lease_expires_at + timedelta(seconds=0.05), timeout=5)


def _kill(queue: str, count: int, *, receives: int = 1) -> list[int]:
    """Send ``count`` messages and nack each ``receives`` times so they die (queue max_receives)."""
    ids = queues.send_batch(queue, [{"n": n} for n in range(count)])
    for _ in range(receives):
        got = queues.receive(queue, max_messages=count)
        assert len(got) == count
        for d in got:
            queues.nack(d.receipt, error="boom")
    return ids


def test_message_expiring_past_max_receives_is_dead_lettered_with_history(make_queue):
    queue = make_queue(max_receives=2)
    poison = queues.send(queue, {"poison": True})
    for attempt in (1, 2):
        [d] = queues.receive(queue, visibility_timeout=0.2)
        assert (d.id, d.receive_count) == (poison, attempt)
        _expire(d)
    healthy = queues.send(queue, {"poison": False})

    got = queues.receive(queue, max_messages=10)
    assert [d.id for d in got] == [healthy], "the queue must keep flowing past the poison message"
    [dead] = queues.peek(f"{queue}.dlq")
    assert (dead.id, dead.state, dead.origin_queue, dead.receive_count) == (poison, "dead", queue, 2)
    assert dead.dead_at is not None
    assert dead.history[-1]["event"] == "dead-lettered"
    assert "received 2 times" in dead.history[-1]["reason"]
    stats = queues.queue_stats(queue)
    assert (stats.dead, stats.dead_lettered_total) == (1, 1)
    assert_counts_exact("dead-letter by expiry")


def test_nack_of_last_allowed_receive_dead_letters_at_once(make_queue):
    queue = make_queue(max_receives=3)
    message_id = queues.send(queue, "bad")
    for attempt in (1, 2, 3):
        [d] = queues.receive(queue)
        assert d.receive_count == attempt
        died = queues.nack(d.receipt, error=f"KeyError: attempt {attempt}")
        assert died is (attempt == 3)
    assert queues.peek(queue) == []
    [dead] = queues.peek(f"{queue}.dlq")
    assert dead.id == message_id and dead.origin_queue == queue
    assert dead.last_error == "KeyError: attempt 3"
    assert [(h["event"], h["error"]) for h in dead.history] == [
        ("nacked", "KeyError: attempt 1"), ("nacked", "KeyError: attempt 2"), ("dead-lettered", "KeyError: attempt 3")
    ]
    assert_counts_exact("dead-letter by nack")


def test_queue_without_dead_letter_queue_redelivers_forever(make_queue):
    queue = make_queue(max_receives=1, dead_letter_queue=None)
    queues.send(queue, "x")
    for attempt in (1, 2, 3):
        [d] = queues.receive(queue)
        assert d.receive_count == attempt
        assert queues.nack(d.receipt) is False


def test_redrive_moves_dead_letters_back_to_their_origin_queue(make_queue):
    a = make_queue(max_receives=1, dead_letter_queue="shared.dlq")
    b = make_queue(max_receives=1, dead_letter_queue="shared.dlq")
    from_a, from_b = _kill(a, 3), _kill(b, 2)
    job = queues.redrive("shared.dlq", requested_by="ops")
    assert (job.state, job.moved, job.total) == (RedriveState.FINISHED, 5, 5)
    assert sorted(d.id for d in queues.receive(a, max_messages=10)) == from_a
    assert sorted(d.id for d in queues.receive(b, max_messages=10)) == from_b
    [info] = queues.peek(a, ids=[from_a[0]])
    assert info.receive_count == 1 and info.origin_queue is None
    assert [h["event"] for h in info.history][-2:] == ["dead-lettered", "redriven"]
    assert queues.peek("shared.dlq") == []
    assert_counts_exact("redrive")


def test_redrive_to_a_chosen_queue_with_a_limit(make_queue):
    queue, other = make_queue(max_receives=1), make_queue(kind="fifo")
    ids = _kill(queue, 5)
    job = queues.redrive(f"{queue}.dlq", to=other, limit=3)
    assert (job.state, job.moved) == (RedriveState.FINISHED, 3)
    moved = queues.peek(other)
    assert [m.id for m in moved] == ids[:3], "redrive takes the oldest dead letters first"
    assert all(m.group == "" for m in moved), "a fifo destination gets a group key"
    assert [m.id for m in queues.peek(f"{queue}.dlq")] == ids[3:]
    assert queues.peek(queue) == []
    assert_counts_exact("redrive to a chosen queue")


@pytest.mark.django_db(transaction=True)
def test_redrive_keeps_to_its_rate(make_queue):
    queue = make_queue(max_receives=1)
    _kill(queue, 40)
    started = time.monotonic()
    job = queues.redrive(f"{queue}.dlq", rate=20)
    elapsed = time.monotonic() - started
    assert job.moved == 40
    # 40 messages at 20/s: the second batch of 20 may start only one second after the first.
    assert elapsed >= 0.95, f"redrive of 40 at 20/s took only {elapsed:.2f}s"
    assert queues.queue_stats(queue).ready == 40


@pytest.mark.django_db(transaction=True)
def test_stop_redrive_from_another_connection_stops_it(make_queue):
    queue = make_queue(max_receives=1)
    _kill(queue, 30)
    runner = Thread(lambda: queues.redrive(f"{queue}.dlq", rate=5))
    runner.start()
    job = wait_for(lambda: Redrive.objects.filter(moved__gt=0).first(), timeout=20)
    assert job.state == RedriveState.RUNNING
    assert queues.stop_redrive(job.pk) is True  # this thread's own connection, not the runner's
    finished = runner.outcome(timeout=30)
    assert finished.state == RedriveState.STOPPED
    job.refresh_from_db()
    assert job.state == RedriveState.STOPPED and job.finished_at is not None
    assert 0 < job.moved < 30
    back = queues.queue_stats(queue).ready
    assert back == job.moved
    assert queues.queue_stats(f"{queue}.dlq").depth == 30 - job.moved
    assert queues.stop_redrive(job.pk) is False, "a finished redrive is not running"
    assert_counts_exact("stopped redrive")
