"""The claim floor of standard queues: claims start near where the last one found ready messages, and
nothing below that floor is lost or starved (a full claim runs at least every ``FULL_SCAN_EVERY`` s).

Each test first puts a message out of reach (a nack's backoff, an expired lease, an uncommitted send),
then moves the process's floor past it with later messages, then checks it is still delivered in time.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import transaction

import queues
from queues.engine import delivery
from queues.engine.connection import claim_floors
from tests.engine.conftest import Thread

pytestmark = pytest.mark.django_db(transaction=True)

# Out of reach for this long; the floor must pass the message within it (a few hundred ms of sends).
HIDDEN = 1.5
# A receive that waits this long must get the message once it is ready again.
DEADLINE = delivery.FULL_SCAN_EVERY + 2.0


def _floor(queue: str) -> int:
    return claim_floors[queues.get_queue(queue).id][0]


def _move_floor_past(queue: str, message_id: int) -> None:
    """Send, receive and ack later messages until this process's claim floor is above ``message_id``."""
    for _ in range(5):
        queues.send_batch(queue, [{"filler": i} for i in range(delivery.FLOOR_SLACK + 10)])
        while got := queues.receive(queue, max_messages=delivery.FLOOR_SLACK, visibility_timeout=60):
            assert message_id not in {d.id for d in got}, "the hidden message was ready too early"
            queues.ack_batch([d.receipt for d in got])
        if _floor(queue) > message_id:
            return
    raise AssertionError(f"the claim floor stayed at {_floor(queue)}, not above {message_id}")


def _receive_within(queue: str, message_id: int, deadline: float) -> float:
    """Seconds until a waiting receive returns ``message_id`` (fails after ``deadline`` seconds)."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        got = queues.receive(queue, max_messages=10, wait=0.5)
        if got:
            assert [d.id for d in got] == [message_id], "only the hidden message was left"
            return time.monotonic() - started
    raise AssertionError(f"message {message_id} was not delivered within {deadline}s")


def test_a_nacked_message_below_the_floor_comes_back_after_its_backoff(make_queue):
    queue = make_queue()
    a = queues.send(queue, "A")
    [first] = queues.receive(queue)
    queues.nack(first.receipt, delay=HIDDEN)
    nacked = time.monotonic()
    _move_floor_past(queue, a)
    assert time.monotonic() - nacked < HIDDEN, "the machine is too slow for this test's timing"
    waited = _receive_within(queue, a, HIDDEN + DEADLINE)
    assert time.monotonic() - nacked >= HIDDEN
    assert waited <= HIDDEN + DEADLINE


def test_an_expired_lease_below_the_floor_is_redelivered(make_queue):
    queue = make_queue()
    a = queues.send(queue, "A")
    [first] = queues.receive(queue, visibility_timeout=HIDDEN)
    _move_floor_past(queue, a)
    got = queues.receive(queue, max_messages=10, wait=HIDDEN + DEADLINE)
    assert [(d.id, d.receive_count) for d in got] == [(a, 2)]
    [again] = got
    with pytest.raises(queues.LeaseExpired):
        queues.ack(first.receipt)
    queues.ack(again.receipt)


def test_a_send_committed_late_below_the_floor_is_delivered(make_queue):
    queue = make_queue()
    sent, release = threading.Event(), threading.Event()
    late_id: list[int] = []

    def produce() -> None:
        with transaction.atomic():
            late_id.append(queues.send(queue, "late"))
            sent.set()
            assert release.wait(30), "the test never let the producer commit"

    producer = Thread(produce, name="late-producer")
    producer.start()
    assert sent.wait(30)
    _move_floor_past(queue, late_id[0])  # every later id is committed, claimed and acked first
    release.set()
    producer.outcome(30)
    _receive_within(queue, late_id[0], DEADLINE)


def test_priorities_the_claim_did_not_reach_are_not_starved(make_queue):
    # A claim that fills its limit with high-priority messages says nothing about the lower ones below
    # its floor: they wait for the next full claim, not forever.
    queue = make_queue()
    low = queues.send(queue, "low", priority=-5)
    queues.send_batch(queue, [queues.Outgoing(body=i, priority=5) for i in range(delivery.FLOOR_SLACK + 20)])
    while len(got := queues.receive(queue, max_messages=10, visibility_timeout=60)) == 10:
        assert all(d.priority == 5 for d in got)
        queues.ack_batch([d.receipt for d in got])
    queues.ack_batch([d.receipt for d in got if d.priority == 5])
    assert low in {d.id for d in got} or _receive_within(queue, low, DEADLINE)


def test_the_floor_never_skips_messages_above_it(make_queue):
    # Within a second of a full claim every claim is bounded: new messages, and old ones nacked
    # without delay, are still delivered at once and in order.
    queue = make_queue()
    ids = queues.send_batch(queue, list(range(20)))
    got = queues.receive(queue, max_messages=5)
    assert [d.id for d in got] == ids[:5]
    queues.nack(got[0].receipt)
    assert [d.id for d in queues.receive(queue, max_messages=20)] == [ids[0], *ids[5:]]
    assert _floor(queue) <= ids[0]
