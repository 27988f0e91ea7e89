"""Topics: publish copies one message to every subscribed queue whose filter matches, all or nothing."""

from __future__ import annotations

import pytest
from django.db import transaction

import queues
from tests.engine.conftest import assert_counts_exact, table_snapshot


def test_publish_copies_to_every_matching_subscription(make_queue):
    everything, eu, us = make_queue(), make_queue(), make_queue()
    queues.subscribe("orders.created", everything)
    queues.subscribe("orders.created", eu, filter={"region": "eu"})
    queues.subscribe("orders.created", us, filter={"region": "us", "tier": "gold"})

    got = queues.publish("orders.created", {"order": 1}, headers={"region": "eu", "tier": "gold"})
    assert set(got) == {everything, eu}
    got = queues.publish("orders.created", {"order": 2}, headers={"region": "us", "tier": "gold"})
    assert set(got) == {everything, us}
    got = queues.publish("orders.created", {"order": 3}, headers={"region": "us"})
    assert set(got) == {everything}, "a filter matches only when every key matches"

    assert [m.body["order"] for m in queues.peek(everything)] == [1, 2, 3]
    assert [(m.body, m.headers) for m in queues.peek(eu)] == [({"order": 1}, {"region": "eu", "tier": "gold"})]
    assert [m.body["order"] for m in queues.peek(us)] == [2]
    [d] = queues.receive(eu)
    assert d.id == queues.peek(eu)[0].id
    assert_counts_exact("publish")


def test_publish_with_no_match_stores_nothing(make_queue):
    queue = make_queue()
    queues.subscribe("t", queue, filter={"kind": "a"})
    assert queues.publish("t", "x", headers={"kind": "b"}) == {}
    assert queues.publish("t", "x") == {}
    assert queues.peek(queue) == []


def test_publish_to_fifo_and_delayed_subscribers(make_queue):
    fifo, slow = make_queue(kind="fifo"), make_queue(default_delay=300)
    queues.subscribe("t", fifo)
    queues.subscribe("t", slow)
    got = queues.publish("t", "x", group="customer-9", priority=5)
    assert queues.peek(fifo)[0].group == "customer-9"
    assert queues.peek(slow)[0].state == "delayed"
    assert queues.peek(slow)[0].priority == 5
    assert queues.receive(fifo)[0].id == got[fifo]


def test_publish_too_large_for_one_subscriber_stores_nothing_anywhere(make_queue):
    roomy, tight = make_queue(), make_queue(max_message_size=64)
    queues.subscribe("t", roomy)
    queues.subscribe("t", tight)
    before = table_snapshot()
    with pytest.raises(queues.MessageTooLarge, match="max message size"):
        queues.publish("t", {"blob": "x" * 100})
    assert table_snapshot() == before


@pytest.mark.django_db(transaction=True)
def test_publish_rolls_back_with_the_callers_transaction(make_queue):
    a, b = make_queue(), make_queue()
    queues.subscribe("t", a)
    queues.subscribe("t", b)
    before = table_snapshot()
    with pytest.raises(RuntimeError), transaction.atomic():
        assert len(queues.publish("t", "x")) == 2
        raise RuntimeError("handler failed after publishing")
    assert table_snapshot() == before
    assert queues.stats([a, b])[0].sent_total == 0


def test_unsubscribe_stops_copies(make_queue):
    a, b = make_queue(), make_queue()
    queues.subscribe("t", a)
    queues.subscribe("t", b)
    assert queues.unsubscribe("t", b) is True
    assert set(queues.publish("t", "x")) == {a}
    assert queues.unsubscribe("t", b) is False


def test_subscribe_again_replaces_the_filter(make_queue):
    queue = make_queue()
    queues.subscribe("t", queue, filter={"k": "1"})
    queues.subscribe("t", queue, filter={"k": "2"})
    assert queues.publish("t", "x", headers={"k": "1"}) == {}
    assert set(queues.publish("t", "x", headers={"k": "2"})) == {queue}
