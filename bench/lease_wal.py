#!/usr/bin/env python
"""What one lease and one ack write, and what waiting for the WAL flush costs them.

On a FRESH database (``bench_lease_wal``, dropped and made again), with 20,000 messages queued:

1. ``EXPLAIN (ANALYZE, BUFFERS, WAL)`` of ``sql.RECEIVE_STANDARD`` (100 messages) and of ``sql.ACK`` of
   those 100, inside a transaction that is rolled back (so the figures are one claim's and one ack's).
2. ``pg_stat_user_tables`` of ``queues_message`` after the engine leased and acked 10,000 messages:
   updates against HOT updates (since migration 0022 a lease changes no indexed column: most are HOT).
3. One consumer loop (``receive(100)`` + ``ack_batch``) for 10,000 messages with
   ``MQADMIN["ASYNC_COMMIT_LEASES"]`` True and False, alternating, with ``pg_stat_wal`` deltas
   (WAL writes and syncs, server-wide: a synchronous commit writes and flushes the WAL itself; the WAL
   writer's own are counted too).
4. ``--consumers`` processes (2) draining together, as the peer harness's W2 does, the two settings
   alternating ``--rounds`` times.

    .venv/bin/python bench/lease_wal.py --admin-dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/lease_wal.py          # the project's embedded server

Prints a markdown summary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

# (it also sets the benchmarks' DJANGO_SECRET_KEY)
from engine_extra import _default_admin_dsn, _django, _fresh_database  # noqa: E402

DATABASE = "bench_lease_wal"
QUEUE = "lease-wal"
PAD = "x" * 60


def _setup(admin_dsn: str) -> None:
    """A fresh, migrated database next to ``admin_dsn``'s, with this process's Django on it."""
    _django(_fresh_database(admin_dsn, DATABASE))


def _fill(count: int) -> None:
    import queues

    for start in range(0, count, 1000):
        queues.send_batch(QUEUE, [{"i": i, "pad": PAD} for i in range(start, min(count, start + 1000))])


def _explain() -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS, WAL) of one claim of 100 and one ack of them, rolled back."""
    from django.db import connection, transaction

    import queues
    from queues.engine import delivery, sql

    queue_id = queues.get_queue(QUEUE).id
    out = {}
    with transaction.atomic(), connection.cursor() as cur:
        params = {"queue_id": queue_id, "limit": 100, "vt": None, "async_commit": False, "floor": 0}
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF, TIMING OFF) " + sql.RECEIVE_STANDARD, params)
        out["receive(100)"] = "\n".join(r[0] for r in cur.fetchall())
        cur.execute("SELECT id, replace(receipt::text, '-', '') FROM queues_message WHERE receipt IS NOT NULL")
        rows = cur.fetchall()
        _, held = delivery._split([f"{r[0]}:{r[1]}" for r in rows])
        params = {**held, "async_commit": False}
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF, TIMING OFF) " + sql.ACK, params)
        out["ack_batch(100)"] = "\n".join(r[0] for r in cur.fetchall())
        transaction.set_rollback(True)
    return out


def _wal() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")  # this backend's own WAL counts, now
        cur.execute("SELECT wal_records, wal_bytes FROM pg_stat_wal")
        records, size = cur.fetchone()
        if connection.pg_version >= 180000:  # WAL writes and syncs moved to pg_stat_io in PostgreSQL 18
            cur.execute("SELECT sum(writes), sum(fsyncs) FROM pg_stat_io WHERE object = 'wal'")
        else:
            cur.execute("SELECT wal_write, wal_sync FROM pg_stat_wal")
        writes, syncs = cur.fetchone()
    return {"records": int(records), "bytes": int(size), "writes": int(writes), "syncs": int(syncs)}


def _table() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")
        cur.execute(
            "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables "
            "WHERE relname = 'queues_message'"
        )
        ins, upd, hot, dele = cur.fetchone()
    return {"inserted": ins, "updated": upd, "hot_updated": hot, "deleted": dele}


def _drain(count: int, async_commit: bool) -> dict[str, Any]:
    """receive(100) + ack_batch until ``count`` messages went through; the rate and the WAL deltas."""
    from django.conf import settings

    import queues

    settings.MQADMIN = {**getattr(settings, "MQADMIN", {}), "ASYNC_COMMIT_LEASES": async_commit}
    _fill(count)
    before = _wal()
    started = time.perf_counter()
    done = 0
    while done < count:
        got = queues.receive(QUEUE, max_messages=100)
        queues.ack_batch([d.receipt for d in got])
        done += len(got)
    elapsed = time.perf_counter() - started
    time.sleep(1.1)  # statistics are flushed at most once a second per backend
    after = _wal()
    batches = count / 100
    return {"rate": count / elapsed, **{f"{k}/batch": (after[k] - before[k]) / batches for k in after}}


def _consumer(async_commit: bool) -> None:
    """One consumer process of ``_drain_together``: receive(100) + ack_batch until the queue is empty."""
    from django.conf import settings

    import queues

    settings.MQADMIN = {**getattr(settings, "MQADMIN", {}), "ASYNC_COMMIT_LEASES": async_commit}
    while got := queues.receive(QUEUE, max_messages=100):
        queues.ack_batch([d.receipt for d in got])


def _drain_together(count: int, async_commit: bool, consumers: int) -> dict[str, Any]:
    """``consumers`` processes drain ``count`` messages together (the harness's W2 shape); the rate."""
    import multiprocessing

    from django.db import connections

    _fill(count)
    connections.close_all()  # the children must not share this process's connection
    fork = multiprocessing.get_context("fork")
    procs = [fork.Process(target=_consumer, args=(async_commit,)) for _ in range(consumers)]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return {"rate": count / (time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-dsn", default=None)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=2, help="processes of the shared drain (part 4)")
    parser.add_argument("--only-shared", action="store_true", help="part 4 only")
    args = parser.parse_args()
    _setup(args.admin_dsn or _default_admin_dsn())
    from django.db import connection

    import queues

    queues.ensure_queue(QUEUE)
    _fill(20_000)
    with connection.cursor() as cur:
        cur.execute("ANALYZE queues_message")
        cur.execute("SELECT version(), current_setting('synchronous_commit'), current_setting('fsync')")
        version, sync, fsync = cur.fetchone()
    print(f"# Lease and ack cost ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, nproc {os.cpu_count()})\n")
    print(f"{version}; synchronous_commit={sync}, fsync={fsync}\n")
    if args.only_shared:
        queues.purge(QUEUE)
    else:
        _explain_and_drain(args.messages, args.rounds)
    shared: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for mode in (False, True):
            shared[mode].append(_drain_together(args.messages * 2, mode, args.consumers)["rate"])
    print(f"\n## {args.consumers} processes draining {args.messages * 2:,} messages together, alternating\n")
    print("| ASYNC_COMMIT_LEASES | msg/s, median | each round |")
    print("|---|---:|---|")
    for mode in (False, True):
        each = ", ".join(f"{r:,.0f}" for r in shared[mode])
        print(f"| {mode} | {statistics.median(shared[mode]):,.0f} | {each} |")


def _explain_and_drain(messages: int, rounds: int) -> None:
    """Parts 1 to 3 of the module docstring."""
    import queues

    for name, plan in _explain().items():
        print(f"## {name}\n\n```\n{plan}\n```\n")
    queues.purge(QUEUE)
    table_before = _table()
    results: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for _ in range(rounds):
        for mode in (False, True):
            results[mode].append(_drain(messages, mode))
    table_after = _table()
    delta = {k: table_after[k] - table_before[k] for k in table_after}
    print(f"## queues_message over the drains\n\n{delta}\n")
    print("## receive(100) + ack_batch, one process, medians of", rounds, "rounds\n")
    print("| ASYNC_COMMIT_LEASES | msg/s | WAL records/batch | WAL bytes/batch | WAL writes/batch | WAL syncs/batch |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in (False, True):
        med = {k: statistics.median(r[k] for r in results[mode]) for k in results[mode][0]}
        print(f"| {mode} | {med['rate']:,.0f} | {med['records/batch']:.0f} | {med['bytes/batch']:,.0f} | "
              f"{med['writes/batch']:.2f} | {med['syncs/batch']:.2f} |")


if __name__ == "__main__":
    main()
