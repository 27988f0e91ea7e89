"""Bad input raises a specific ValueError subclass naming the value and the fix; nothing is written."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import pytest

import queues
from tests.engine.conftest import table_snapshot


@pytest.fixture
def queue(make_queue) -> str:
    return make_queue("orders", max_message_size=200)


@pytest.fixture
def unchanged():
    """Fail the test if the message, dedup or counter tables changed."""
    before = table_snapshot()
    yield
    assert table_snapshot() == before, "a failed call wrote something"


def _raises(exc: type[Exception], call, *fragments: str) -> Exception:
    with pytest.raises(exc) as info:
        call()
    assert issubclass(info.type, ValueError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return info.value


def test_unknown_queue(queue, unchanged):
    for call in (
        lambda: queues.send("nope", "x"),
        lambda: queues.send_batch("nope", ["x"]),
        lambda: queues.receive("nope"),
        lambda: queues.peek("nope"),
        lambda: queues.pause("nope"),
        lambda: queues.queue_stats("nope"),
    ):
        _raises(queues.QueueNotFound, call, "'nope'", "does not exist")
    _raises(queues.QueueNotFound, lambda: queues.send("nope", "x"), "create it first")
    _raises(queues.QueueNotFound, lambda: queues.move_messages(queue, [1], to="nope"), "'nope'")


def test_purge_of_a_missing_queue(queue, unchanged):
    _raises(queues.QueueNotFound, lambda: queues.purge("ghost"), "'ghost'", "create it first")
    _raises(queues.QueueNotFound, lambda: queues.delete_messages("ghost", [1]), "'ghost'")


@pytest.mark.parametrize("name", ["", "Orders", "-lead", "has space", "ünïcode", "x" * 81, None, 7])
def test_bad_queue_name(name, queue, unchanged):
    _raises(queues.InvalidQueueName, lambda: queues.send(name, "x"), repr(name), "a-z, 0-9")
    _raises(queues.InvalidQueueName, lambda: queues.create_queue(name), repr(name))


def test_body_not_json_serialisable(queue, unchanged):
    for body in ({"when": datetime(2024, 1, 1)}, Decimal("1.5"), {1, 2}, float("nan"), object()):
        _raises(queues.InvalidMessage, lambda b=body: queues.send(queue, b), "not JSON-serialisable", "convert")


def test_body_over_the_queues_max_size(queue, unchanged):
    err = _raises(
        queues.MessageTooLarge, lambda: queues.send(queue, "x" * 300), "304 bytes", "'orders'", "200 bytes",
        "max_message_size",
    )
    assert isinstance(err, queues.InvalidMessage)


@pytest.mark.parametrize("priority", [101, -101, 1.5, "high", True])
def test_priority_out_of_range(priority, queue, unchanged):
    _raises(queues.InvalidMessage, lambda: queues.send(queue, "x", priority=priority), repr(priority), "-100 to 100")


@pytest.mark.parametrize("delay", [-1, -0.001, float("nan"), "soon", 16 * 24 * 3600])
def test_bad_delay(delay, queue, unchanged):
    _raises(queues.InvalidMessage, lambda: queues.send(queue, "x", delay=delay), repr(delay), "delay")


def test_negative_timeouts(queue):
    queues.send(queue, "x")
    _raises(queues.InvalidQueueSettings, lambda: queues.receive(queue, visibility_timeout=-1), "-1", "visibility")
    _raises(queues.InvalidQueueSettings, lambda: queues.receive(queue, wait=-5), "-5", "wait")
    [d] = queues.receive(queue, visibility_timeout=60)
    [before] = queues.peek(queue)
    _raises(queues.InvalidQueueSettings, lambda: queues.extend(d.receipt, visibility_timeout=-1), "-1")
    _raises(queues.InvalidMessage, lambda: queues.nack(d.receipt, delay=-2), "-2")
    assert queues.peek(queue) == [before]
    _raises(ValueError, lambda: queues.receive(queue, max_messages=0), "max_messages", "0")


def test_bad_headers_group_and_dedup_id(queue, unchanged):
    _raises(queues.InvalidMessage, lambda: queues.send(queue, "x", headers={"n": 1}), "'n': 1", "strings")
    _raises(queues.InvalidMessage, lambda: queues.send(queue, "x", headers=["a"]), "['a']")
    _raises(queues.InvalidMessage, lambda: queues.send(queue, "x", group=""), "group", "1 to 128")
    _raises(queues.InvalidMessage, lambda: queues.send(queue, "x", dedup_id=5), "dedup_id", "5")


def test_send_batch_with_one_bad_item_stores_none(queue):
    good = [queues.Outgoing(body=n, dedup_id=f"d{n}") for n in range(5)]
    before = table_snapshot()
    for bad in (
        queues.Outgoing(body=object()),
        queues.Outgoing(body="x" * 500),
        queues.Outgoing(body="x", priority=1000),
        queues.Outgoing(body="x", delay=-1),
    ):
        with pytest.raises(queues.InvalidMessage):
            queues.send_batch(queue, [*good, bad, *good])
    assert table_snapshot() == before
    # The dedup ids of the failed batches were not taken either.
    ids = queues.send_batch(queue, good)
    assert [m.id for m in queues.peek(queue)] == ids


@pytest.mark.parametrize(
    "receipt",
    ["", "garbage", "12", "12:", "12:not-hex", "x:" + "ab" * 16, f"{2**70}:" + "cd" * 16, None, 12],
)
def test_malformed_receipt(receipt, queue):
    queues.send(queue, "x")
    [d] = queues.receive(queue)
    [before] = queues.peek(queue)
    for call in (
        lambda: queues.ack(receipt),
        lambda: queues.nack(receipt),
        lambda: queues.extend(receipt, visibility_timeout=10),
        lambda: queues.ack_batch([d.receipt, receipt]),
    ):
        _raises(queues.InvalidReceipt, call, repr(receipt), "receive()")
    assert queues.peek(queue) == [before]
    queues.ack(d.receipt)  # the connection is still usable and the real lease intact


def test_stale_receipt(queue):
    queues.send(queue, "x")
    [d] = queues.receive(queue)
    queues.ack(d.receipt)
    stale = d.receipt
    forged = f"{d.id}:{uuid.uuid4().hex}"
    for receipt in (stale, forged):
        err = _raises(queues.LeaseExpired, lambda r=receipt: queues.ack(r), repr(receipt), "extend")
        assert isinstance(err, queues.InvalidReceipt)


def test_bad_queue_settings(make_queue, unchanged):
    _raises(queues.InvalidQueueSettings, lambda: queues.create_queue("a", kind="lifo"), "'lifo'", "standard")
    _raises(queues.InvalidQueueSettings, lambda: queues.create_queue("a", retention=5), "retention", "60")
    _raises(queues.InvalidQueueSettings, lambda: queues.create_queue("a", visibility_timeout=-1), "-1")
    _raises(queues.InvalidQueueSettings, lambda: queues.create_queue("a", max_receives=-1), "-1")
    _raises(queues.InvalidQueueSettings, lambda: queues.create_queue("a", colour="red"), "'colour'")
    make_queue("a")
    _raises(queues.QueueExists, lambda: queues.create_queue("a"), "'a'", "update_queue")


def test_publish_to_unknown_topic(queue, unchanged):
    _raises(queues.TopicNotFound, lambda: queues.publish("nobody.listens", "x"), "'nobody.listens'", "subscribe")


@pytest.mark.parametrize("name", ["a", "0", "a" * 80, "billing.invoices", "x_y-z.9"])
def test_valid_queue_names_are_accepted(name, make_queue):
    make_queue(name, dead_letter_queue=None)
    assert queues.receive(name) == []
    queues.send(name, "x")
    assert queues.queue_stats(name).depth == 1


def test_a_body_of_exactly_the_max_size_is_accepted(queue):
    body = "x" * (200 - 4)  # two quotes around the string, "{}" for the headers
    queues.send(queue, body)
    with pytest.raises(queues.MessageTooLarge):
        queues.send(queue, body + "x")
    assert [m.body for m in queues.peek(queue)] == [body]


def test_queue_defaults_match_the_design(make_queue):
    from datetime import timedelta

    queue = queues.get_queue(make_queue("plain"))
    assert queue.kind == "standard" and queue.paused is False
    assert queue.visibility_timeout == timedelta(seconds=30)
    assert queue.max_receives == 5
    assert queue.dead_letter_queue.name == "plain.dlq"
    assert queue.retention == timedelta(days=4)
    assert queue.max_message_size == 256 * 1024
    assert queue.dedup_window == timedelta(minutes=5)
    assert queue.default_delay == timedelta(0)
    assert queues.get_queue("plain.dlq").max_receives == 0, "dead letters are never dead-lettered again"
