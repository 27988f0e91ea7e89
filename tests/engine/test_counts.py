"""Live counts (``queues.stats()``) equal ``count(*)`` of the message table after every operation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

import queues
from tests.conftest import wait_for
from tests.engine.conftest import assert_counts_exact, in_thread


def _expire(delivery: queues.Delivery) -> None:
    wait_for(lambda: datetime.now(UTC) > delivery.lease_expires_at + timedelta(seconds=0.05), timeout=5)


@pytest.mark.django_db(transaction=True)
def test_counts_stay_exact_through_every_operation(make_queue):
    main = make_queue("orders", max_receives=2, retention=60)
    other = make_queue("audit", kind="fifo")
    dlq = f"{main}.dlq"
    check = assert_counts_exact

    queues.send(main, {"n": 0})
    assert check("send")[main] == {"ready": 1, "delayed": 0, "in_flight": 0, "depth": 1, "dead": 0}
    queues.send_batch(main, [{"n": n} for n in range(1, 11)])
    check("send_batch")
    # Sends from other connections land in other counter slots.
    in_thread(lambda: queues.send_batch(main, [{"n": n} for n in range(11, 16)]))
    in_thread(lambda: queues.send(main, "x", dedup_id="d"))
    queues.send(main, "x again", dedup_id="d")
    check("sends from several connections and a dedup repeat")
    delayed = queues.send(main, "later", delay=300)
    check("delayed send")
    assert queues.queue_stats(main).delayed == 1

    leased = queues.receive(main, max_messages=6, visibility_timeout=300)
    truth = check("receive")
    assert truth[main]["in_flight"] == 6
    queues.ack(leased[0].receipt)
    queues.ack_batch([leased[1].receipt, leased[2].receipt])
    check("ack")
    queues.nack(leased[3].receipt, delay=300, error="later")
    queues.nack(leased[4].receipt)
    check("nack")
    queues.extend(leased[5].receipt, visibility_timeout=600)
    check("extend")

    short = queues.receive(main, max_messages=2, visibility_timeout=0.2)
    _expire(short[-1])
    assert check("lease expiry")[main]["in_flight"] == 1
    for _ in range(2):  # receive again, let expire: the third claim dead-letters them
        got = queues.receive(main, max_messages=20, visibility_timeout=0.2)
        _expire(got[-1])
    queues.receive(main, max_messages=20, visibility_timeout=300)
    truth = check("dead-letter by expiry")
    assert truth[main]["dead"] > 0 and truth[dlq]["depth"] == truth[main]["dead"]
    leased = queues.receive(dlq, max_messages=1, visibility_timeout=300)  # dead letters can be inspected
    check("receive from the dead-letter queue")
    queues.nack(leased[0].receipt)
    check("nack in the dead-letter queue")

    in_thread(lambda: queues.redrive(dlq, limit=3))
    check("redrive")
    queues.redrive(dlq, to=other, limit=2)
    check("redrive to another queue")

    fresh = queues.send_batch(main, [{"fresh": n} for n in range(6)])
    in_flight = [m.id for m in queues.peek(main, limit=1000) if m.state == "in_flight"]
    assert queues.move_messages(main, [*fresh[:3], delayed, *in_flight], to=other) == 4
    check("move_messages")
    assert queues.delete_messages(main, [*fresh[3:5], 10**12]) == 2
    check("delete_messages")
    queues.retry_now(other, [m.id for m in queues.peek(other)])
    check("retry_now")

    queues.subscribe("events", main)
    queues.subscribe("events", other, filter={"kind": "audit"})
    queues.publish("events", {"e": 1}, headers={"kind": "audit"})
    queues.publish("events", {"e": 2}, headers={"kind": "other"})
    check("publish")

    with connection.cursor() as cur:
        cur.execute(
            "UPDATE queues_message SET enqueued_at = enqueued_at - interval '2 minutes',"
            " available_at = available_at - interval '2 minutes'"
            " WHERE queue_id = (SELECT id FROM queues_queue WHERE name = %s)",
            [main],
        )
    pruned = queues.prune()
    assert pruned.expired_messages > 0
    truth = check("prune")
    assert truth[main]["in_flight"] > 0, "prune must leave messages in flight alone"

    assert queues.purge(other) > 0
    check("purge")
    queues.purge(dlq)
    queues.purge(main)
    truth = check("purge everything")
    assert all(c["depth"] == 0 for c in truth.values())
    queues.prune()  # folds counter slots together
    check("counter compaction")
