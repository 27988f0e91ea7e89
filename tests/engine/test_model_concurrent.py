"""The model's promises with several real processes at once, checked over all of their logs.

Each process (``_model_child.py``) sends, sends in batches with shared dedup ids, receives, acks,
nacks and extends at random on a standard and a fifo queue, with producers' transactions committing
out of id order. While they run, the table is watched for two leases in one fifo group. Afterwards
what is left is drained, and:

- every stored message was acked exactly once or is in the dead-letter queue (none lost, none twice);
- a dedup id stored one message, and every send with it got that message's id;
- no two deliveries of one fifo group overlapped in time, and each producer's messages of a group
  were first delivered in the order it sent them;
- the live counts equal ``count(*)``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

import queues
from tests.conftest import wait_for
from tests.engine.conftest import Thread, assert_counts_exact

FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
CHILD = Path(__file__).resolve().parent / "_model_child.py"
PROCESSES, OPS = 5, 150

_DOUBLE_LEASES = """
SELECT m.group_key, array_agg(m.id) FROM queues_message m
WHERE m.queue_id = (SELECT id FROM queues_queue WHERE name = %s)
  AND m.leased_until > clock_timestamp()
GROUP BY m.group_key HAVING count(*) > 1
"""

_runs = iter(range(1_000_000))


def _drain(queue: str, log: list[dict]) -> None:
    """Receive and ack until ``queue`` is empty (waiting out nack backoffs), logging as the children do."""

    def empty() -> bool:
        for d in queues.receive(queue, max_messages=10, visibility_timeout=30):
            held = time.time()
            log.append({"id": d.id, "queue": queue, "group": d.group, "count": d.receive_count, "body": d.body,
                        "held": held, "released": time.time(), "ending": "ack"})
            queues.ack(d.receipt)
        return queues.queue_stats(queue).depth == 0

    wait_for(empty, timeout=60)


@pytest.mark.property
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@settings(max_examples=40 if FUZZ else 1, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_processes_doing_random_operations_keep_every_promise(spawn, seed):
    n = next(_runs)
    std, fifo = f"cstd{n}", f"cfifo{n}"
    queues.create_queue(std, max_receives=4)
    queues.create_queue(fifo, kind="fifo", max_receives=4)
    children = [spawn_child(spawn, std, fifo, i, seed + i) for i in range(PROCESSES)]
    for child in children:
        child.wait_ready()

    stop = threading.Event()
    doubles: list[object] = []

    def watch() -> None:
        while not stop.is_set():
            with connection.cursor() as cur:
                cur.execute(_DOUBLE_LEASES, [fifo])
                doubles.extend(cur.fetchall())
            time.sleep(0.005)

    watcher = Thread(watch, name="watch")
    watcher.start()
    for child in children:
        child.go()
    try:
        logs = [child.result(timeout=300) for child in children]
    finally:
        stop.set()
        watcher.outcome(30)
    assert not doubles, f"two leases in one fifo group: {doubles[:5]}"

    drained: list[dict] = []
    _drain(std, drained)
    _drain(fifo, drained)
    deliveries = [d for log in logs for d in log["deliveries"]] + drained

    # Dedup: one message per (queue, dedup id), and every send with it got that id.
    by_dedup: dict[tuple[str, str], set[int]] = defaultdict(set)
    for log in logs:
        for queue, dedup, message_id in log["dedup"]:
            by_dedup[(queue, dedup)].add(message_id)
    assert all(len(ids) == 1 for ids in by_dedup.values()), {k: v for k, v in by_dedup.items() if len(v) > 1}
    stored = {s["id"] for log in logs for s in log["sent"]} | {i for ids in by_dedup.values() for i in ids}
    assert len(stored) == sum(len(log["sent"]) for log in logs) + len(by_dedup), "an id was handed out twice"

    # Nothing lost, nothing twice: acked exactly once, or dead.
    acks = defaultdict(int)
    for d in deliveries:
        if d["ending"] != "nack":
            acks[d["id"]] += 1
    assert all(count == 1 for count in acks.values()), {i: c for i, c in acks.items() if c > 1}
    dead = {m.id for name in (f"{std}.dlq", f"{fifo}.dlq") for m in queues.peek(name, limit=1000)}
    assert set(acks) | dead == stored, f"lost: {sorted(stored - set(acks) - dead)[:10]}"
    assert not (set(acks) & dead)

    # Fifo: one delivery of a group at a time, and each producer's messages of a group in its order.
    fifo_deliveries = [d for d in deliveries if d["queue"] == fifo]
    by_group: dict[str, list[dict]] = defaultdict(list)
    for d in fifo_deliveries:
        by_group[d["group"]].append(d)
    for group, ds in by_group.items():
        ds.sort(key=lambda d: d["held"])
        for before, after in itertools.pairwise(ds):
            assert after["held"] >= before["released"], (
                f"group {group!r}: {after['id']} was delivered while {before['id']} was held")
        first: dict[tuple[int, int], float] = {}
        for d in ds:
            first.setdefault((d["body"]["p"], d["body"]["s"]), d["held"])
        for p in {p for p, _ in first}:
            seqs = [s for (q, s), _ in sorted(first.items(), key=lambda kv: kv[1]) if q == p]
            assert seqs == sorted(seqs), f"producer {p}'s messages of group {group!r} out of order: {seqs}"

    truth = assert_counts_exact("the concurrent run")
    assert truth[std]["depth"] == truth[fifo]["depth"] == 0
    print(f"\nconcurrent model: {len(stored)} messages, {len(deliveries)} deliveries, {len(dead)} dead")


def spawn_child(spawn, std: str, fifo: str, index: int, seed: int):
    """Start one ``_model_child.py`` process (through the engine tests' ``spawn`` fixture)."""
    return spawn(std, fifo, str(index), str(seed), str(OPS), script=CHILD)
