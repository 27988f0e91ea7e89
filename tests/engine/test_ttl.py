"""Message expiry: a message past its time to live is never handed out, and ends as its queue says."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

import queues
from queues import upkeep
from queues.engine.expiry import expire_due, flow_totals
from tests.engine.conftest import assert_counts_exact


def _age(queue: str, seconds: float) -> None:
    """Move a queue's messages' clocks back, as if ``seconds`` had passed (no sleeping)."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE queues_message SET enqueued_at = enqueued_at - make_interval(secs => %s),"
            " available_at = available_at - make_interval(secs => %s),"
            " expires_at = expires_at - make_interval(secs => %s)"
            " WHERE queue_id = (SELECT id FROM queues_queue WHERE name = %s)",
            [seconds, seconds, seconds, queue],
        )


def test_expires_at_counts_from_when_the_message_becomes_available(make_queue):
    queue = make_queue(message_ttl=60)
    plain, own, delayed = (
        queues.send(queue, "a"),
        queues.send(queue, "b", ttl=5),
        queues.send(queue, "c", delay=100, ttl=5),
    )
    never = queues.send(make_queue(), "d")
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id, extract(epoch FROM expires_at - enqueued_at) FROM queues_message WHERE id = ANY(%s)",
            [[plain, own, delayed, never]],
        )
        got = {i: None if s is None else round(float(s)) for i, s in cur.fetchall()}
    assert got == {plain: 60, own: 5, delayed: 105, never: None}


def test_an_expired_message_is_never_received_and_is_dropped_and_counted(make_queue):
    queue = make_queue(message_ttl=30)
    gone = queues.send(queue, "old")
    _age(queue, 31)
    fresh = queues.send(queue, "new")
    got = queues.receive(queue, max_messages=10)
    assert [d.id for d in got] == [fresh]
    assert got[0].expires_at is not None
    assert queues.peek(queue, ids=[gone]) == []
    assert flow_totals([queue])[queue].expired == 1
    assert_counts_exact("claim-time expiry")


def test_the_upkeep_job_dead_letters_expired_messages_when_the_queue_says_so(make_queue):
    queue = make_queue(message_ttl=timedelta(seconds=10), expiry_action="dead_letter")
    ids = queues.send_batch(queue, ["x", "y"])
    keep = queues.send(queue, "z", ttl=3600)
    _age(queue, 11)
    result = upkeep.sweep(only=["expiry"])
    assert result.count("ttl_expired") == 2
    dead = queues.peek(f"{queue}.dlq")
    assert sorted(m.id for m in dead) == ids
    assert all(m.history[-1]["reason"].startswith("expired") for m in dead)
    assert [m.id for m in queues.peek(queue)] == [keep]
    stats = queues.queue_stats(queue)
    assert (stats.dead, stats.dead_lettered_total) == (2, 2)
    assert flow_totals([queue])[queue].expired == 2
    # Dead letters do not expire again in the dead-letter queue.
    assert expire_due() == 0
    assert_counts_exact("expiry to the dead-letter queue")


def test_dead_letter_action_without_a_dead_letter_queue_drops(make_queue):
    queue = make_queue(message_ttl=10, expiry_action="dead_letter", dead_letter_queue=None)
    queues.send(queue, "x")
    _age(queue, 11)
    assert expire_due() == 1
    assert queues.peek(queue) == []
    assert flow_totals([queue])[queue].expired == 1


def test_a_message_in_flight_past_its_expiry_is_left_to_its_holder(make_queue):
    queue = make_queue()
    queues.send(queue, "x", ttl=1)
    [d] = queues.receive(queue, visibility_timeout=60)
    with connection.cursor() as cur:
        cur.execute("UPDATE queues_message SET expires_at = statement_timestamp() - interval '1 second'")
    assert expire_due() == 0
    queues.ack(d.receipt)
    assert flow_totals([queue])[queue].expired == 0


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"message_ttl": 0}, "message_ttl must be at least"),
        ({"message_ttl": "soon"}, r"message_ttl must be a \(finite\) number"),
        ({"expiry_action": "keep"}, "expiry_action must be one of drop, dead_letter"),
    ],
)
def test_bad_ttl_settings_are_refused_and_nothing_changes(make_queue, settings, error):
    queue = make_queue()
    with pytest.raises(queues.InvalidQueueSettings, match=error):
        queues.update_queue(queue, **settings)
    q = queues.get_queue(queue)
    assert (q.message_ttl, q.expiry_action) == (None, "drop")


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), "1", True, 400 * 86400])
def test_a_bad_message_ttl_is_refused_and_nothing_is_stored(make_queue, ttl):
    queue = make_queue()
    with pytest.raises(queues.InvalidMessage, match="ttl must be"):
        queues.send(queue, "x", ttl=ttl)
    assert queues.peek(queue) == []


def test_dead_letters_never_expire_and_a_redriven_message_no_longer_does(make_queue):
    queue = make_queue(message_ttl=10, max_receives=1)
    sent = queues.send(queue, "x")
    [d] = queues.receive(queue)
    assert queues.nack(d.receipt, error="boom") is True
    _age(f"{queue}.dlq", 11)
    assert expire_due() == 0
    [dead] = queues.receive(f"{queue}.dlq")
    assert dead.id == sent and dead.expires_at is None
    queues.nack(dead.receipt)
    queues.redrive(f"{queue}.dlq")
    [back] = queues.receive(queue)
    assert back.id == sent and back.expires_at is None


def test_a_published_copy_takes_its_queues_default_ttl(make_queue):
    short, plain = make_queue(message_ttl=5), make_queue()
    queues.subscribe("news", short)
    queues.subscribe("news", plain)
    ids = queues.publish("news", {"n": 1})
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id, round(extract(epoch FROM expires_at - enqueued_at)) FROM queues_message WHERE id = ANY(%s)",
            [list(ids.values())],
        )
        got = dict(cur.fetchall())
    assert {got[ids[short]], got[ids[plain]]} == {5, None}


def test_an_expired_fifo_head_frees_its_group_for_the_next_message(make_queue):
    queue = make_queue(kind="fifo")
    head = queues.send(queue, "old", group="g", ttl=5)
    _age(queue, 6)
    nxt = queues.send(queue, "new", group="g")
    got = queues.receive(queue) or queues.receive(queue)  # the first claim may take (and drop) the head
    assert [d.id for d in got] == [nxt]
    assert queues.peek(queue, ids=[head]) == []
    assert_counts_exact("fifo expiry")
