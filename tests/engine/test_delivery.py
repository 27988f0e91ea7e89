"""Leases: one holder at a time, at-least-once, expiry and redelivery, extend, nack."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

import queues
from queues.engine.types import DELIVERY_OF_FIELDS
from queues.models import Message
from tests.conftest import wait_for
from tests.engine.conftest import Thread, assert_counts_exact


def _lease_over(delivery: queues.Delivery, margin: float = 0.05) -> bool:
    return datetime.now(UTC) > delivery.lease_expires_at + timedelta(seconds=margin)


def _info(queue: str, message_id: int) -> queues.MessageInfo:
    [info] = queues.peek(queue, ids=[message_id])
    return info


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_four_processes_drain_10000_messages_each_exactly_once(make_queue, spawn):
    queue = make_queue(visibility_timeout=600)
    sent = queues.send_batch(queue, [{"n": n} for n in range(10_000)])
    assert len(set(sent)) == 10_000

    children = [spawn("drain", queue, "10") for _ in range(4)]
    for child in children:
        child.wait_ready()
    for child in children:  # start together, so they really compete for the same rows
        child.go()
    results = [child.result(timeout=180) for child in children]

    seen = Counter(message_id for got in results for message_id, _ in got)
    duplicates = {m: c for m, c in seen.items() if c > 1}
    assert not duplicates, f"{len(duplicates)} messages delivered more than once"
    assert set(seen) == set(sent), f"{len(set(sent) - set(seen))} messages never delivered"
    assert all(count == 1 for got in results for _, count in got), "a message was received twice"
    assert all(got for got in results), f"a consumer got nothing: {[len(g) for g in results]}"
    stats = queues.queue_stats(queue)
    assert (stats.depth, stats.sent_total, stats.acked_total) == (0, 10_000, 10_000)


@pytest.mark.django_db(transaction=True)
def test_process_that_dies_without_ack_gives_message_back_after_its_lease(make_queue, spawn):
    queue = make_queue()
    message_id = queues.send(queue, {"job": 1})
    holder = spawn("hold", queue, "2.0")
    held = holder.result(timeout=60)
    assert held == message_id
    assert queues.receive(queue) == [], "a leased message was delivered twice"

    started = time.monotonic()
    [again] = wait_for(lambda: queues.receive(queue), timeout=10)
    assert again.id == message_id and again.receive_count == 2
    # The lease was 2 s from the child's claim, so it comes back within about one visibility timeout.
    assert time.monotonic() - started < 4.0


def test_expired_lease_is_redelivered_and_old_receipt_refused(make_queue):
    queue = make_queue()
    message_id = queues.send(queue, {"a": 1})
    [first] = queues.receive(queue, visibility_timeout=1.0)
    assert first.receive_count == 1
    assert queues.receive(queue) == [], "a message under lease was delivered again"

    wait_for(lambda: _lease_over(first), timeout=5)
    [second] = queues.receive(queue, visibility_timeout=60)
    assert (second.id, second.receive_count) == (message_id, 2)
    assert second.receipt != first.receipt

    before = _info(queue, message_id)
    with pytest.raises(queues.LeaseExpired, match="no longer valid"):
        queues.ack(first.receipt)
    with pytest.raises(queues.LeaseExpired):
        queues.nack(first.receipt, error="late", delay=100)
    with pytest.raises(queues.LeaseExpired):
        queues.extend(first.receipt, visibility_timeout=1000)
    assert queues.ack_batch([first.receipt]).stale == [first.receipt]
    assert queues.extend_batch([first.receipt], visibility_timeout=1000) == [first.receipt]
    after = _info(queue, message_id)
    assert after == before, "a stale receipt changed the message"
    assert after.state == "in_flight" and after.last_error == ""

    queues.ack(second.receipt)
    assert queues.peek(queue) == []


def test_receipt_of_a_lease_that_ran_out_is_refused_before_anyone_else_takes_it(make_queue):
    queue = make_queue()
    message_id = queues.send(queue, "x")
    [delivery] = queues.receive(queue, visibility_timeout=0.2)
    wait_for(lambda: _lease_over(delivery), timeout=5)
    with pytest.raises(queues.LeaseExpired):
        queues.ack(delivery.receipt)
    info = _info(queue, message_id)
    assert (info.state, info.receive_count) == ("ready", 1)


def test_extend_keeps_a_message_from_being_redelivered(make_queue):
    queue = make_queue()
    message_id = queues.send(queue, "slow job")
    [delivery] = queues.receive(queue, visibility_timeout=1.5)
    queues.extend(delivery.receipt, visibility_timeout=30)
    wait_for(lambda: _lease_over(delivery, margin=0.2), timeout=5)
    assert queues.receive(queue) == [], "an extended lease was handed to someone else"
    info = _info(queue, message_id)
    assert info.state == "in_flight" and info.available_at > delivery.lease_expires_at + timedelta(seconds=20)
    queues.ack(delivery.receipt)  # the original receipt still holds the lease
    assert queues.queue_stats(queue).depth == 0


def test_extend_batch_renews_valid_leases_and_reports_stale_ones(make_queue):
    queue = make_queue()
    queues.send_batch(queue, ["a", "b"])
    fresh, short = queues.receive(queue, max_messages=1, visibility_timeout=60) + queues.receive(
        queue, visibility_timeout=0.2
    )
    wait_for(lambda: _lease_over(short), timeout=5)
    assert queues.extend_batch([fresh.receipt, short.receipt], visibility_timeout=120) == [short.receipt]
    assert _info(queue, fresh.id).available_at > fresh.lease_expires_at + timedelta(seconds=30)
    assert _info(queue, short.id).state == "ready"


def test_nack_with_delay_makes_message_ready_after_the_delay_with_error_recorded(make_queue):
    queue = make_queue()
    message_id = queues.send(queue, {"n": 1})
    [delivery] = queues.receive(queue)
    nacked_at = time.monotonic()
    assert queues.nack(delivery.receipt, delay=2.0, error="ValueError: boom") is False

    info = _info(queue, message_id)
    assert info.state == "delayed"
    assert info.last_error == "ValueError: boom"
    assert [(h["event"], h["error"], h["receive_count"]) for h in info.history] == [
        ("nacked", "ValueError: boom", 1)
    ]
    assert queues.receive(queue) == [], "a nacked message came back before its delay"
    assert_counts_exact("nack with delay")

    [again] = wait_for(lambda: queues.receive(queue), timeout=10)
    assert time.monotonic() - nacked_at >= 1.9
    assert (again.id, again.receive_count, again.last_error) == (message_id, 2, "ValueError: boom")
    with pytest.raises(queues.LeaseExpired):
        queues.ack(delivery.receipt)  # a nack ends the lease for good
    queues.ack(again.receipt)


def test_nack_without_delay_makes_message_ready_at_once(make_queue):
    queue = make_queue()
    message_id = queues.send(queue, "x")
    [delivery] = queues.receive(queue)
    queues.nack(delivery.receipt)
    [again] = queues.receive(queue)
    assert (again.id, again.receive_count) == (message_id, 2)


def test_ack_removes_the_message_and_a_second_ack_is_refused(make_queue):
    queue = make_queue()
    queues.send(queue, "x")
    [delivery] = queues.receive(queue)
    queues.ack(delivery.receipt)
    assert queues.peek(queue) == []
    with pytest.raises(queues.LeaseExpired):
        queues.ack(delivery.receipt)
    stats = queues.queue_stats(queue)
    assert (stats.depth, stats.acked_total) == (0, 1)


def test_receive_leases_up_to_max_messages_each_with_its_own_receipt(make_queue):
    queue = make_queue()
    ids = queues.send_batch(queue, list(range(5)))
    got = queues.receive(queue, max_messages=3)
    assert [d.id for d in got] == ids[:3]
    assert len({d.receipt for d in got}) == 3
    rest = queues.receive(queue, max_messages=10)
    assert [d.id for d in rest] == ids[3:]
    assert queues.ack_batch([d.receipt for d in got + rest]).stale == []


def test_a_deliverys_times_are_the_rows_own_in_utc(make_queue):
    # The hot cursor loads timestamps with psycopg's own loader, not Django's: same instants, same zone.
    queue = make_queue()
    queues.send(queue, {"n": 1})
    [delivery] = queues.receive(queue, visibility_timeout=45)
    row = Message.objects.get(id=delivery.id)
    assert (delivery.enqueued_at, delivery.lease_expires_at) == (row.enqueued_at, row.leased_until)
    for when in (delivery.enqueued_at, delivery.lease_expires_at):
        assert when.utcoffset() == timedelta(0) and when.tzinfo == row.enqueued_at.tzinfo
    assert timedelta(seconds=44) < delivery.lease_expires_at - datetime.now(UTC) <= timedelta(seconds=45)


@pytest.mark.parametrize("current_first", [True, False])
def test_a_batch_with_a_stale_and_the_current_receipt_of_one_message_acks_it(make_queue, current_first):
    # The settlements look each message's tokens up by its id (sql._HELD_BY_RECEIPT): two receipts of one
    # message in one batch must both be looked at, whichever comes last.
    queue = make_queue()
    message_id = queues.send(queue, {"n": 1})
    [first] = queues.receive(queue)
    assert queues.release_batch([first.receipt]) == []
    [again] = queues.receive(queue)
    assert again.id == message_id and again.receipt != first.receipt
    batch = [again.receipt, first.receipt] if current_first else [first.receipt, again.receipt]
    queues.ack_batch(batch)
    assert not Message.objects.filter(id=message_id).exists()
    assert queues.queue_stats(queue).depth == 0


def test_a_received_delivery_is_the_same_frozen_object_its_constructor_makes(make_queue):
    # receive() builds Deliveries without Delivery.__init__ (types.delivery_of): every field set, frozen,
    # equal to the constructor's object with the same values, a lease status of its own.
    assert DELIVERY_OF_FIELDS == tuple(f.name for f in dataclasses.fields(queues.Delivery)), (
        "Delivery has a field that types.delivery_of does not set"
    )
    queue = make_queue(kind="fifo")
    queues.send(queue, {"n": 1}, headers={"h": "v"}, priority=3, group="g", ttl=60)
    queues.send(queue, [2], group="other")
    got = queues.receive(queue, max_messages=2)
    assert len(got) == 2
    for delivery in got:
        values = {f.name: getattr(delivery, f.name) for f in dataclasses.fields(delivery) if f.name != "lease"}
        assert delivery == queues.Delivery(**values)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delivery.body = None  # type: ignore[misc]
    first, second = got
    assert (first.body, first.headers, first.priority, first.group, first.receive_count) == ({"n": 1}, {"h": "v"}, 3,
                                                                                             "g", 1)
    assert first.expires_at is not None and second.expires_at is None and second.headers == {}
    assert first.lease is not second.lease and not first.lease_lost and not first.cancel_requested


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_leases_running_out_under_load_every_message_is_acked_exactly_once(make_queue):
    """Consumers that are sometimes slower than their lease: late acks are refused, nothing is lost,
    and no message is acked twice (two valid leases at once would allow that)."""
    queue = make_queue(max_receives=0)  # never dead-letter: every message must end acked
    sent = queues.send_batch(queue, list(range(300)))
    lock = threading.Lock()
    acked: Counter[int] = Counter()
    refused = redelivered = 0

    def consume() -> None:
        nonlocal refused, redelivered
        idle_since = None
        while True:
            got = queues.receive(queue, max_messages=3, visibility_timeout=0.2)
            if not got:
                if queues.queue_stats(queue).depth == 0:
                    return
                idle_since = idle_since or time.monotonic()
                assert time.monotonic() - idle_since < 30, "messages stuck"
                time.sleep(0.01)
                continue
            idle_since = None
            time.sleep(random.choice([0, 0, 0.01, 0.3]))  # one in four outlives its lease
            for d in got:
                try:
                    queues.ack(d.receipt)
                except queues.LeaseExpired:
                    with lock:
                        refused += 1
                else:
                    with lock:
                        acked[d.id] += 1
                        redelivered += d.receive_count > 1

    consumers = [Thread(consume) for _ in range(4)]
    for t in consumers:
        t.start()
    for t in consumers:
        t.outcome(timeout=120)

    assert set(acked) == set(sent), "a message was lost"
    assert max(acked.values()) == 1, "a message was acked under two leases"
    assert refused > 0 and redelivered > 0, "the test never let a lease run out"
    stats = queues.queue_stats(queue)
    assert (stats.depth, stats.acked_total) == (0, 300)


def test_queue_settings_give_the_default_lease_and_delay(make_queue):
    queue = make_queue(visibility_timeout=120, default_delay=300)
    delayed = queues.send(queue, "waits for the default delay")
    now = queues.send(queue, "explicitly not delayed", delay=0)
    batch = queues.send_batch(queue, ["default", queues.Outgoing(body="zero", delay=0)])
    assert [(m.id, m.state) for m in queues.peek(queue)] == [
        (delayed, "delayed"), (now, "ready"), (batch[0], "delayed"), (batch[1], "ready")
    ]
    got = queues.receive(queue, max_messages=10)
    assert [d.id for d in got] == [now, batch[1]]
    lease = (got[0].lease_expires_at - datetime.now(UTC)).total_seconds()
    assert 100 < lease <= 120


def test_history_of_a_message_that_fails_forever_stays_bounded(make_queue):
    queue = make_queue(max_receives=0)
    queues.send(queue, "hopeless")
    for attempt in range(1, 26):
        [d] = queues.receive(queue)
        queues.nack(d.receipt, error=f"failure {attempt}")
    [info] = queues.peek(queue)
    assert info.receive_count == 25 and info.last_error == "failure 25"
    assert len(info.history) == 20
    assert info.history[-1]["error"] == "failure 25" and info.history[0]["error"] == "failure 6"
