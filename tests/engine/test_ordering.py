"""Standard queues deliver by priority, then send order; batches keep input order in one statement."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

import queues


def test_higher_priority_is_delivered_first_then_send_order(make_queue):
    queue = make_queue()
    sent = [("low", -3), ("mid-1", 0), ("top", 100), ("high-1", 5), ("mid-2", 0), ("high-2", 5), ("bottom", -100)]
    ids = {body: queues.send(queue, body, priority=p) for body, p in sent}
    got = [d.body for _ in range(len(sent)) for d in queues.receive(queue)]
    assert got == ["top", "high-1", "high-2", "mid-1", "mid-2", "low", "bottom"]
    assert sorted(ids.values()) == list(ids.values()), "ids grow in send order"


def test_receive_batch_is_ordered_by_priority_then_send_order(make_queue):
    queue = make_queue()
    queues.send_batch(queue, [queues.Outgoing(body=n, priority=p) for n, p in enumerate([0, 1, 0, 2, 1])])
    assert [d.body for d in queues.receive(queue, max_messages=5)] == [3, 1, 4, 0, 2]


def test_delayed_high_priority_message_waits_for_its_delay(make_queue):
    queue = make_queue()
    queues.send(queue, "urgent but later", priority=100, delay=60)
    now = queues.send(queue, "normal")
    assert [d.id for d in queues.receive(queue, max_messages=5)] == [now]


def test_send_batch_returns_ids_in_input_order(make_queue):
    queue = make_queue()
    bodies = [{"i": i} for i in range(50)]
    items = [queues.Outgoing(body=b, priority=(i * 37) % 11 - 5) for i, b in enumerate(bodies)]
    ids = queues.send_batch(queue, items)
    assert len(ids) == 50 and len(set(ids)) == 50
    by_id = {m.id: m.body for m in queues.peek(queue, limit=100)}
    assert [by_id[i] for i in ids] == bodies


def test_send_batch_is_one_statement_whatever_its_size(make_queue):
    queue = make_queue()
    queues.send(queue, "warm the queue config cache")
    with CaptureQueriesContext(connection) as small:
        queues.send_batch(queue, [{"n": n} for n in range(2)])
    with CaptureQueriesContext(connection) as large:
        queues.send_batch(queue, [queues.Outgoing(body={"n": n}, headers={"k": "v"}) for n in range(100)])
    inserts = [q["sql"] for q in large.captured_queries if "INSERT INTO queues_message" in q["sql"]]
    assert len(inserts) == 1
    assert len(large.captured_queries) == len(small.captured_queries) <= 2
    assert queues.queue_stats(queue).depth == 103


def test_send_batch_of_nothing_sends_nothing(make_queue):
    queue = make_queue()
    assert queues.send_batch(queue, []) == []
    assert queues.queue_stats(queue).sent_total == 0


def test_bodies_and_headers_round_trip(make_queue):
    queue = make_queue()
    body = {"text": "žluťoučký kůň", "n": 1.5, "list": [1, None, True], "nested": {"a": []}}
    queues.send(queue, body, headers={"trace": "abc", "kind": "order"})
    queues.send(queue, None)
    queues.send(queue, "plain string")
    got = queues.receive(queue, max_messages=3)
    assert [(d.body, d.headers) for d in got] == [
        (body, {"trace": "abc", "kind": "order"}), (None, {}), ("plain string", {})
    ]
