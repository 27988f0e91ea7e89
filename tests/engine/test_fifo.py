"""Fifo queues: strict send order within a group, one in flight per group, groups in parallel."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

import pytest

import queues
from tests.engine.conftest import Thread


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_fifo_order_holds_per_group_under_concurrent_consumers(make_queue):
    queue = make_queue(kind="fifo", visibility_timeout=300)
    groups, per_group = 6, 40
    # Interleave the groups so that every consumer sees heads of several groups at once.
    queues.send_batch(
        queue,
        [
            queues.Outgoing(body={"g": f"g{g}", "seq": s}, group=f"g{g}")
            for s in range(per_group)
            for g in range(groups)
        ],
    )

    lock = threading.Lock()
    holding: dict[str, int] = {}  # group -> seq received and not yet acked
    processed: dict[str, list[int]] = defaultdict(list)
    overlaps: list[tuple[str, int, int]] = []
    max_groups_at_once = 0
    done = threading.Event()

    def consume() -> int:
        nonlocal max_groups_at_once
        count, empty_since = 0, None
        while not done.is_set():
            got = queues.receive(queue, max_messages=2)
            if not got:
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since > 2.0:
                    return count
                time.sleep(0.005)
                continue
            empty_since = None
            with lock:
                for d in got:
                    group, seq = d.body["g"], d.body["seq"]
                    assert d.group == group
                    if group in holding:
                        overlaps.append((group, holding[group], seq))
                    holding[group] = seq
                    processed[group].append(seq)
                max_groups_at_once = max(max_groups_at_once, len(holding))
            time.sleep(random.uniform(0, 0.004))  # "work", so leases overlap across consumers
            with lock:
                for d in got:
                    del holding[d.body["g"]]
            # The receipt is released from `holding` before the ack commits: the observed hold is
            # inside the real lease, so any overlap seen here is a real one.
            assert queues.ack_batch([d.receipt for d in got]).stale == []
            count += len(got)
            with lock:
                if sum(len(v) for v in processed.values()) >= groups * per_group:
                    done.set()
        return count

    consumers = [Thread(consume, name=f"consumer{i}") for i in range(4)]
    for t in consumers:
        t.start()
    counts = [t.outcome(timeout=120) for t in consumers]

    assert not overlaps, f"two messages of one group in flight at once: {overlaps[:5]}"
    for g in range(groups):
        assert processed[f"g{g}"] == list(range(per_group)), f"group g{g} out of order: {processed[f'g{g}']}"
    assert sum(counts) == groups * per_group
    assert sum(1 for c in counts if c) >= 2, f"work was not shared: {counts}"
    assert max_groups_at_once >= 2, "groups never proceeded in parallel"
    assert queues.queue_stats(queue).depth == 0


def test_fifo_group_head_in_flight_blocks_only_its_own_group(make_queue):
    queue = make_queue(kind="fifo")
    a1 = queues.send(queue, "a1", group="a")
    a2 = queues.send(queue, "a2", group="a")
    b1 = queues.send(queue, "b1", group="b")

    [first] = queues.receive(queue)
    assert first.id == a1
    [second] = queues.receive(queue)
    assert second.id == b1, "group b must proceed while group a has a message in flight"
    assert queues.receive(queue) == [], "a2 was delivered while a1 was in flight"

    queues.ack(first.receipt)
    [third] = queues.receive(queue)
    assert third.id == a2


def test_fifo_nacked_head_blocks_its_group_until_it_is_redelivered(make_queue):
    queue = make_queue(kind="fifo")
    a1 = queues.send(queue, "a1", group="a")
    queues.send(queue, "a2", group="a")
    [d] = queues.receive(queue)
    queues.nack(d.receipt, delay=1.0, error="retry later")
    assert queues.receive(queue) == [], "a2 overtook the nacked a1"
    deadline = time.monotonic() + 10
    while not (got := queues.receive(queue)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [(x.id, x.receive_count) for x in got] == [(a1, 2)]


def test_fifo_receive_batch_takes_one_head_per_group(make_queue):
    queue = make_queue(kind="fifo")
    ids = queues.send_batch(queue, [queues.Outgoing(body=i, group=g) for i, g in enumerate("aabbc")])
    got = queues.receive(queue, max_messages=10)
    assert sorted(d.id for d in got) == [ids[0], ids[2], ids[4]]


def test_fifo_messages_without_group_are_one_ordered_line(make_queue):
    queue = make_queue(kind="fifo")
    ids = queues.send_batch(queue, ["first", "second", "third"])
    seen = []
    for _ in range(3):
        got = queues.receive(queue, max_messages=10)
        assert len(got) == 1, "ungrouped fifo messages must go one at a time"
        assert got[0].group == ""
        seen.append(got[0].id)
        queues.ack(got[0].receipt)
    assert seen == ids


def test_fifo_expired_head_is_redelivered_before_the_rest_of_its_group(make_queue):
    queue = make_queue(kind="fifo")
    a1 = queues.send(queue, "a1", group="a")
    queues.send(queue, "a2", group="a")
    [d] = queues.receive(queue, visibility_timeout=0.2)
    deadline = time.monotonic() + 10
    while not (got := queues.receive(queue)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [(x.id, x.receive_count) for x in got] == [(a1, 2)]
    with pytest.raises(queues.LeaseExpired):
        queues.ack(d.receipt)


def test_fifo_receive_that_wraps_around_the_groups_still_returns_priority_then_id_order(make_queue):
    """Found by the model (tests/engine/test_model.py): a walk that resumed mid-way and wrapped
    around returned the second statement's heads after the first's, whatever their ids."""
    queue = make_queue(kind="fifo")
    b1, a1, c1 = queues.send_batch(queue, [queues.Outgoing(body=g, group=g) for g in "bac"])
    [first] = queues.receive(queue)
    assert first.id == b1  # the walk now resumes after group "b"
    got = queues.receive(queue, max_messages=2)  # c1 from the resumed walk, a1 after wrapping
    assert [d.id for d in got] == [a1, c1]
