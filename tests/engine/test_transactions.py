"""Sends and acks join the caller's transaction: they commit or roll back with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

import queues
from tests.conftest import wait_for
from tests.engine.conftest import assert_counts_exact, in_thread, message_rows, table_snapshot

pytestmark = pytest.mark.django_db(transaction=True)


class Boom(Exception):
    pass


def test_send_in_rolled_back_transaction_leaves_nothing(make_queue):
    queue = make_queue()
    before = table_snapshot()
    with pytest.raises(Boom), transaction.atomic():
        queues.send(queue, "a", dedup_id="tx-1")
        queues.send_batch(queue, ["b", "c"])
        queues.send(queue, "d", delay=60)
        raise Boom
    assert table_snapshot() == before
    stats = queues.queue_stats(queue)
    assert (stats.depth, stats.ready, stats.delayed, stats.sent_total) == (0, 0, 0, 0)
    assert queues.receive(queue) == []
    # The dedup id was rolled back too: it is free to use.
    fresh = queues.send(queue, "a again", dedup_id="tx-1")
    assert [m.id for m in queues.peek(queue)] == [fresh]


def test_send_in_committed_transaction_is_invisible_until_commit(make_queue):
    queue = make_queue()
    with transaction.atomic():
        message_id = queues.send(queue, {"order": 1})
        # Another connection (a consumer) cannot see it before the commit.
        assert in_thread(lambda: queues.receive(queue)) == []
        assert in_thread(lambda: queues.queue_stats(queue).depth) == 0
    [delivery] = in_thread(lambda: queues.receive(queue))
    assert delivery.id == message_id
    assert_counts_exact("commit")


def test_ack_inside_a_rolled_back_handler_transaction_keeps_the_message(make_queue, django_user_model):
    queue = make_queue()
    message_id = queues.send(queue, {"user": "bob"})
    [delivery] = queues.receive(queue, visibility_timeout=60)
    with pytest.raises(Boom), transaction.atomic():
        django_user_model.objects.create(username=delivery.body["user"])
        queues.ack(delivery.receipt)
        raise Boom
    assert not django_user_model.objects.filter(username="bob").exists()
    [info] = queues.peek(queue)
    assert (info.id, info.state) == (message_id, "in_flight"), "the ack must roll back with the handler"
    queues.ack(delivery.receipt)  # the lease is still valid
    assert message_rows() == 0


def test_ack_and_handler_writes_commit_together(make_queue, django_user_model):
    queue = make_queue()
    queues.send(queue, {"user": "ann"})
    [delivery] = queues.receive(queue)
    with transaction.atomic():
        django_user_model.objects.create(username=delivery.body["user"])
        queues.ack(delivery.receipt)
    assert django_user_model.objects.filter(username="ann").exists()
    assert message_rows() == 0
    stats = queues.queue_stats(queue)
    assert (stats.depth, stats.acked_total) == (0, 1)


def test_receive_in_rolled_back_transaction_leaves_message_ready(make_queue):
    queue = make_queue()
    message_id = queues.send(queue, "x")
    with pytest.raises(Boom), transaction.atomic():
        assert [d.id for d in queues.receive(queue)] == [message_id]
        raise Boom
    [info] = queues.peek(queue)
    assert (info.state, info.receive_count) == ("ready", 0)


def _lease_over(delivery: queues.Delivery) -> bool:
    return datetime.now(UTC) > delivery.lease_expires_at + timedelta(seconds=0.05)


def test_ack_refused_inside_a_handler_transaction_rolls_its_writes_back(make_queue, django_user_model):
    queue = make_queue()
    message_id = queues.send(queue, {"user": "late"})
    [delivery] = queues.receive(queue, visibility_timeout=0.3)
    with pytest.raises(queues.LeaseExpired), transaction.atomic():
        django_user_model.objects.create(username="late")
        wait_for(lambda: _lease_over(delivery), timeout=5)  # the handler was too slow
        queues.ack(delivery.receipt)
    assert not django_user_model.objects.filter(username="late").exists()
    [again] = queues.receive(queue)
    assert (again.id, again.receive_count) == (message_id, 2)


def test_message_acked_in_an_open_transaction_is_not_redelivered_when_the_lease_ends_before_commit(make_queue):
    queue = make_queue()
    queues.send(queue, "x")
    [delivery] = queues.receive(queue, visibility_timeout=1.0)
    with transaction.atomic():
        queues.ack(delivery.receipt)
        wait_for(lambda: _lease_over(delivery), timeout=5)
        # The lease is over but the ack holds the row: no one else may take it meanwhile.
        assert in_thread(lambda: queues.receive(queue)) == []
    assert message_rows() == 0
    assert in_thread(lambda: queues.receive(queue)) == []
