"""Fifo's promise whatever order producers commit in: one message of a group in flight, the lowest id first.

Ids are drawn when a send statement runs, not when its transaction commits, so a lower id can become
visible after a higher one of its group was delivered; a message can also come back into a group
with an old id (redrive, move). None of these may put two messages of one group in flight.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

import pytest
from django.db import connection, transaction

import queues
from tests.conftest import wait_for
from tests.engine.conftest import Thread

pytestmark = pytest.mark.django_db(transaction=True)

# Two messages of one group leased at once, straight from the table (not from anyone's bookkeeping).
_DOUBLE_LEASES = """
SELECT m.group_key, array_agg(m.id ORDER BY m.id) FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id
WHERE q.name = %s AND m.leased_until > clock_timestamp()
GROUP BY m.group_key HAVING count(*) > 1
"""


def _double_leases(queue: str) -> list[tuple[str, list[int]]]:
    with connection.cursor() as cur:
        cur.execute(_DOUBLE_LEASES, [queue])
        return cur.fetchall()


class _OpenSend:
    """A producer in another thread whose send stays uncommitted until :meth:`commit`."""

    def __init__(self, queue: str, body: object, group: str) -> None:
        self.sent = threading.Event()
        self._release = threading.Event()
        self.id: int | None = None

        def produce() -> int:
            with transaction.atomic():
                self.id = queues.send(queue, body, group=group)
                self.sent.set()
                assert self._release.wait(30), "the test never let the producer commit"
            return self.id

        self.thread = Thread(produce, name="late-producer")
        self.thread.start()
        assert self.sent.wait(30)

    def commit(self) -> int:
        self._release.set()
        return self.thread.outcome(30)


def test_lower_id_committed_late_waits_until_the_group_is_free(make_queue):
    queue = make_queue(kind="fifo")
    late = _OpenSend(queue, "A", group="g")  # draws the lower id, commits last
    b = queues.send(queue, "B", group="g")
    assert late.id < b

    [first] = queues.receive(queue)
    assert first.id == b, "only B was committed"
    a = late.commit()

    assert queues.receive(queue, max_messages=10) == [], "A was delivered while B of its group was in flight"
    assert _double_leases(queue) == []
    queues.ack(first.receipt)
    [second] = queues.receive(queue, max_messages=10)
    assert second.id == a


def test_late_lower_id_waits_for_an_extended_lease(make_queue):
    queue = make_queue(kind="fifo")
    late = _OpenSend(queue, "A", group="g")
    queues.send(queue, "B", group="g")
    [b] = queues.receive(queue, visibility_timeout=0.5)
    queues.extend(b.receipt, visibility_timeout=60)
    late.commit()
    # Past the lease B was first given: the group is still B's, because the lease was extended.
    deadline = b.lease_expires_at.timestamp() + 0.5
    while time.time() < deadline:
        assert queues.receive(queue) == [], "the group opened when B's first lease would have ended"
        time.sleep(0.05)
    queues.ack(b.receipt)
    assert [d.body for d in queues.receive(queue)] == ["A"]


@pytest.mark.parametrize("ending", ["nack", "release", "expiry"])
def test_group_opens_when_its_message_in_flight_comes_back(make_queue, ending):
    queue = make_queue(kind="fifo")
    late = _OpenSend(queue, "A", group="g")
    queues.send(queue, "B", group="g")
    [b] = queues.receive(queue, visibility_timeout=0.3 if ending == "expiry" else 30)
    late.commit()
    if ending == "nack":
        queues.nack(b.receipt, delay=60)
    elif ending == "release":
        queues.release_batch([b.receipt])
    # The lowest id of the group is next, as soon as the group has nothing in flight.
    got = wait_for(lambda: queues.receive(queue, max_messages=10), timeout=10)
    assert [d.body for d in got] == ["A"]


def test_redriven_head_waits_for_the_message_of_its_group_in_flight(make_queue):
    queue = make_queue(kind="fifo", max_receives=1)
    a1 = queues.send(queue, "a1", group="g")
    a2 = queues.send(queue, "a2", group="g")
    [d] = queues.receive(queue)
    assert queues.nack(d.receipt, error="boom") is True  # a1 is dead
    [second] = queues.receive(queue)
    assert second.id == a2
    assert queues.redrive_batch(f"{queue}.dlq") == {queue: 1}

    assert queues.receive(queue, max_messages=10) == [], "the redriven a1 was delivered while a2 was in flight"
    queues.ack(second.receipt)
    assert [x.id for x in queues.receive(queue)] == [a1]


def test_message_moved_into_a_busy_group_waits_for_it(make_queue):
    source = make_queue()
    queue = make_queue(kind="fifo")
    old = queues.send(source, "moved", group="g")  # the lower id
    queues.send(queue, "first", group="g")
    [held] = queues.receive(queue)
    assert queues.move_messages(source, [old], to=queue) == 1

    assert queues.receive(queue, max_messages=10) == [], "the moved message was delivered while its group was busy"
    queues.ack(held.receipt)
    assert [x.id for x in queues.receive(queue)] == [old]


@pytest.mark.slow
def test_racing_producers_and_consumers_never_lease_two_of_a_group(make_queue):
    """Producers commit in random order against greedy consumers: the group's promise holds throughout.

    Each producer sends its own sequence per group, one transaction per message held open for a
    random moment, so commits of different producers interleave against their ids. Per producer
    and group the order is the send order; no group ever has two leases (checked by the consumers
    and, independently, in the table).
    """
    queue = make_queue(kind="fifo", visibility_timeout=60)
    groups, producers, per_producer = ["g0", "g1", "g2"], 3, 30
    total = producers * per_producer
    lock = threading.Lock()
    holding: dict[str, int] = {}
    overlaps: list[tuple[str, int, int]] = []
    table_overlaps: list[object] = []
    delivered: dict[tuple[int, str], list[int]] = defaultdict(list)
    done = threading.Event()

    def produce(p: int) -> None:
        rng = random.Random(p)
        for n in range(per_producer):
            group = groups[rng.randrange(len(groups))]
            with transaction.atomic():
                queues.send(queue, {"p": p, "n": n}, group=group)
                time.sleep(rng.uniform(0, 0.01))  # commit later than producers that drew later ids

    def consume() -> None:
        while not done.is_set():
            got = queues.receive(queue, max_messages=3)
            if not got:
                time.sleep(0.001)
                continue
            with lock:
                for d in got:
                    if d.group in holding:
                        overlaps.append((d.group, holding[d.group], d.id))
                    holding[d.group] = d.id
                    delivered[(d.body["p"], d.group)].append(d.body["n"])
            time.sleep(random.uniform(0, 0.003))
            with lock:
                for d in got:
                    holding.pop(d.group, None)
            assert queues.ack_batch([d.receipt for d in got]).stale == []
            with lock:
                if sum(len(v) for v in delivered.values()) >= total:
                    done.set()

    def watch() -> None:
        while not done.is_set():
            table_overlaps.extend(_double_leases(queue))
            time.sleep(0.002)

    threads = [Thread(lambda p=p: produce(p), name=f"producer{p}") for p in range(producers)]
    threads += [Thread(consume, name=f"consumer{c}") for c in range(3)] + [Thread(watch, name="watch")]
    for t in threads:
        t.start()
    try:
        for t in threads[:producers]:
            t.outcome(120)
        wait_for(done.is_set, timeout=120)
    finally:
        done.set()
    for t in threads[producers:]:
        t.outcome(30)

    assert not overlaps, f"two messages of one group in flight at once: {overlaps[:5]}"
    assert not table_overlaps, f"the table showed two leases in one group: {table_overlaps[:5]}"
    for (p, group), seqs in delivered.items():
        assert seqs == sorted(seqs), f"producer {p}'s messages of {group} came out of order: {seqs}"
    assert sum(len(v) for v in delivered.values()) == total
    assert queues.queue_stats(queue).depth == 0
