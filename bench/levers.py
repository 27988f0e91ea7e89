"""What the drain and send goals of issue 11 would each gain from a change of layout, measured before building it.

Migration 0022 built the HOT layout (with lease batches of another shape: rows listing their ids, which
nothing updates). Since then ``queues_message`` has ``leased_until`` and fillfactor 50, so the rows below
called "today's layout" replay the lease before 0022 (which moved ``available_at``, a key of two indexes)
on today's table, and ``lease_hot`` copies today's columns; the figures in docs/benchmarks.md were taken
before 0022.

    .venv/bin/python bench/levers.py                     # embedded server, database bench_levers
    .venv/bin/python bench/levers.py --repeat 5 --messages 40000

Drain (2 consumer processes, batches of 100, every variant on a freshly filled and vacuumed table):

- ``engine``: ``queues.receive(max_messages=100)`` + ``queues.ack_batch``, the public API;
- ``lease, today's layout``: the same two transactions as bare SQL on ``queues_message`` (claim with
  ``FOR UPDATE SKIP LOCKED``, lease by ``UPDATE`` of receipt, receive count and ``available_at``; then
  ``DELETE`` by id and receipt), without counters, dead-lettering or Python objects: the floor of the
  layout as it is;
- ``lease, HOT layout, fillfactor F``: a copy of ``queues_message`` whose lease lives in columns no
  index covers (``leased_until`` and the receipt, which leaves the INCLUDE of ``queues_msg_avail``),
  so a lease can be a heap-only (HOT) update when the page has room; the claim filters the lease on
  the heap. A prototype of the statements only: nothing else of the engine knows this layout;
- ``lease, HOT layout + lease batches``: the HOT layout at fillfactor 50 with the bookkeeping that
  would keep the in-flight count exact without an index on the lease (docs/benchmarks.md, "What each
  layout lever would buy"): each claim inserts one ``lease_batch`` row (queue, until, outstanding),
  each leased message records its batch in an unindexed column, each ack decrements the batches of
  the messages it removed. In flight is then ``sum(outstanding) WHERE until > now()``;
- ``raw floor``: the shared harness's ``DELETE ... WHERE id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP
  LOCKED LIMIT 100))``, no lease at all.

Send (1 process, synchronous commit on), one message per transaction and 100 per statement: the engine's
``SEND_FAST`` as it is; with the foreign key to ``queues_queue`` that migration 0023 replaced (its
queue-check trigger disabled for the run); without its counter upsert; without the queue check (the
trigger disabled); without both; and without both on a table that has only its primary key
(``queues_msg_claim`` and ``queues_msg_avail`` dropped for the run, then made again); against the raw
floor's ``INSERT ... + pg_notify`` (one) and ``INSERT ... SELECT unnest(...)`` (100, as the shared
harness's batch).
``--only send`` skips the drains.

Each row is the median of ``--repeat`` runs, with WAL bytes per message and, for leases, the share of
heap-only updates. All variants run in the same invocation, so their ratios are comparable.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from bench.benchdb import fresh_database, setup_django  # noqa: E402 (needs ROOT on the path)

os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
DB_NAME = "bench_levers"
QUEUE = "levers"
BATCH = 100
CONSUMERS = 2
BODY = json.dumps({"pad": "x" * 60, "i": 0})

# -- drain statements (bare SQL) ------------------------------------------------------------------
HOT_TABLE = """
CREATE TABLE lease_hot (LIKE queues_message INCLUDING DEFAULTS) WITH (fillfactor = {ff});
ALTER TABLE lease_hot ADD PRIMARY KEY (id);
CREATE INDEX lease_hot_claim ON lease_hot (queue_id, priority DESC, id, available_at);
CREATE INDEX lease_hot_avail ON lease_hot (queue_id, available_at);
"""


def _lease(table: str, until: str, free: str = "") -> str:
    """Claim up to %(n)s ready messages and lease them, the lease ending in column ``until``, as the engine
    does (claimed rows taken by ctid); ``free``: the further condition of a row whose lease is not held."""
    return f"""
WITH c AS (
    SELECT ctid FROM {table} WHERE queue_id = %(q)s AND available_at <= statement_timestamp() {free}
    ORDER BY priority DESC, id LIMIT %(n)s FOR UPDATE SKIP LOCKED)
UPDATE {table} m
SET receive_count = m.receive_count + 1, receipt = gen_random_uuid(),
    {until} = statement_timestamp() + interval '60 seconds'
WHERE m.ctid = ANY(ARRAY(SELECT ctid FROM c))
RETURNING m.id, m.body::text, m.headers, m.receive_count, m.enqueued_at, m.{until}, m.receipt
"""


def _ack(table: str, until: str) -> str:
    """Delete the messages of %(ids)s whose lease %(receipts)s still holds."""
    return f"""
DELETE FROM {table} m USING unnest(%(ids)s::bigint[], %(receipts)s::uuid[]) AS r(id, receipt)
WHERE m.id = r.id AND m.receipt = r.receipt AND m.{until} > clock_timestamp()
"""


LEASE_TODAY, ACK_TODAY = _lease("queues_message", "available_at"), _ack("queues_message", "available_at")
_HOT_FREE = "AND (leased_until IS NULL OR leased_until <= statement_timestamp())"
LEASE_HOT, ACK_HOT = _lease("lease_hot", "leased_until", _HOT_FREE), _ack("lease_hot", "leased_until")
BATCH_TABLES = """
ALTER TABLE lease_hot ADD COLUMN lease_batch bigint;
CREATE TABLE lease_batch (id bigserial PRIMARY KEY, queue_id bigint NOT NULL, until timestamptz NOT NULL,
                          outstanding int NOT NULL);
CREATE INDEX lease_batch_live ON lease_batch (queue_id, until);
"""
LEASE_BATCHED = """
WITH c AS (
    SELECT ctid FROM lease_hot WHERE queue_id = %(q)s AND available_at <= statement_timestamp()
      AND (leased_until IS NULL OR leased_until <= statement_timestamp())
    ORDER BY priority DESC, id LIMIT %(n)s FOR UPDATE SKIP LOCKED),
b AS (
    INSERT INTO lease_batch (queue_id, until, outstanding)
    SELECT %(q)s, statement_timestamp() + interval '60 seconds', count(*) FROM c HAVING count(*) > 0
    RETURNING id, until)
UPDATE lease_hot m
SET receive_count = m.receive_count + 1, receipt = gen_random_uuid(), leased_until = b.until, lease_batch = b.id
FROM b WHERE m.ctid = ANY(ARRAY(SELECT ctid FROM c))
RETURNING m.id, m.body::text, m.headers, m.receive_count, m.enqueued_at, m.leased_until, m.receipt
"""
ACK_BATCHED = """
WITH d AS (
    DELETE FROM lease_hot m USING unnest(%(ids)s::bigint[], %(receipts)s::uuid[]) AS r(id, receipt)
    WHERE m.id = r.id AND m.receipt = r.receipt AND m.leased_until > clock_timestamp()
    RETURNING m.lease_batch)
UPDATE lease_batch b SET outstanding = b.outstanding - x.n
FROM (SELECT lease_batch, count(*) AS n FROM d GROUP BY lease_batch) x WHERE b.id = x.lease_batch
"""
RAW_TABLE = """
CREATE TABLE raw_queue (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now())
"""
RAW_TAKE = ("DELETE FROM raw_queue WHERE id = ANY(ARRAY(SELECT id FROM raw_queue ORDER BY id LIMIT %(n)s "
            "FOR UPDATE SKIP LOCKED)) RETURNING id, payload")
RAW_SEND = ("WITH ins AS (INSERT INTO raw_queue (payload) VALUES (%s::jsonb) RETURNING id) "
            "SELECT pg_notify('raw_queue', (SELECT count(*) FROM ins)::text)")


def _connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def _drain_child(kind: str, dsn: str, queue_id: int, start: Any, done: Any) -> None:
    """One consumer: wait for ``start``, drain until nothing is left, put its count (or its error) on ``done``."""
    try:
        done.put(_drain(kind, dsn, queue_id, start))
    except BaseException as exc:
        done.put(f"{kind} consumer failed: {exc!r}")
        raise


def _drain(kind: str, dsn: str, queue_id: int, start: Any) -> int:
    count = 0
    if kind == "engine":
        setup_django(dsn)
        import queues

        for warm in queues.receive(QUEUE):  # connect, prepare, cache the queue's config; the message goes back
            queues.nack(warm.receipt)
        start.wait()
        while got := queues.receive(QUEUE, max_messages=BATCH):
            queues.ack_batch([d.receipt for d in got])
            count += len(got)
        return count
    with _connect(dsn) as conn:
        conn.execute("SET synchronous_commit = off")  # what the engine does for leases and acks
        lease, ack = {"hot": (LEASE_HOT, ACK_HOT), "batches": (LEASE_BATCHED, ACK_BATCHED)}.get(
            kind, (LEASE_TODAY, ACK_TODAY))
        start.wait()
        while True:
            if kind == "raw":
                with conn.transaction():
                    rows = conn.execute(RAW_TAKE, {"n": BATCH}, prepare=True).fetchall()
            else:
                rows = conn.execute(lease, {"q": queue_id, "n": BATCH}, prepare=True).fetchall()
                if rows:
                    conn.execute(ack, {"ids": [r[0] for r in rows], "receipts": [r[6] for r in rows]}, prepare=True)
            if not rows:
                break
            count += len(rows)
    return count


def _wal_lsn(conn: Any) -> Any:
    return conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]


def _wal_since(conn: Any, lsn: Any) -> int:
    return int(conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", [lsn]).fetchone()[0])


def _fill(conn: Any, kind: str, queue_id: int, count: int, fillfactor: int) -> str:
    """A fresh table of ``count`` ready messages for ``kind``; returns the table whose updates to count."""
    if kind == "raw":
        conn.execute("DROP TABLE IF EXISTS raw_queue")
        conn.execute(RAW_TABLE)
        conn.execute("INSERT INTO raw_queue (payload) SELECT %s::jsonb FROM generate_series(1, %s)", [BODY, count])
        conn.execute("VACUUM (ANALYZE) raw_queue")
        return "raw_queue"
    if kind in ("hot", "batches"):
        conn.execute("DROP TABLE IF EXISTS lease_hot, lease_batch")
        conn.execute(HOT_TABLE.format(ff=int(fillfactor)))
        if kind == "batches":
            conn.execute(BATCH_TABLES)
        table = "lease_hot"
    else:
        import queues

        queues.purge(QUEUE)
        table = "queues_message"
    for start in range(0, count, 10_000):
        n = min(10_000, count - start)
        if table == "lease_hot":
            conn.execute(
                "INSERT INTO lease_hot (id, queue_id, body, headers, priority, enqueued_at, available_at, "
                "receive_count, last_error, history) SELECT nextval('queues_message_id_seq'), %s, %s::json, "
                "'{}', 0, now(), now(), 0, '', '[]' FROM generate_series(1, %s)",
                [queue_id, BODY, n],
            )
        else:
            queues.send_batch(QUEUE, [json.loads(BODY)] * n)
    conn.execute(f"VACUUM (ANALYZE) {table}, queues_counter")
    return table


def drain(dsn: str, kind: str, count: int, queue_id: int, fillfactor: int = 100) -> dict:
    ctx = multiprocessing.get_context("spawn")  # a child must not inherit this process's connections
    with _connect(dsn) as conn:
        table = _fill(conn, kind, queue_id, count, fillfactor)
        updates = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = %s", [table]
        ).fetchone()
        start, done = ctx.Event(), ctx.Queue()
        children = [ctx.Process(target=_drain_child, args=(kind, dsn, queue_id, start, done))
                    for _ in range(CONSUMERS)]
        for child in children:
            child.start()
        time.sleep(2.0 if kind == "engine" else 0.5)  # let each child connect (and set Django up)
        lsn = _wal_lsn(conn)
        began = time.perf_counter()
        start.set()
        counts = [done.get(timeout=600) for _ in children]
        if failed := [c for c in counts if isinstance(c, str)]:
            raise SystemExit("; ".join(failed))
        handled = sum(counts)
        seconds = time.perf_counter() - began
        for child in children:
            child.join(60)
        wal = _wal_since(conn, lsn)
        time.sleep(0.6)  # the statistics collector reports at most every 0.5 s
        after = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = %s", [table]
        ).fetchone()
        if kind == "batches":  # the bookkeeping is exact: every lease taken was ended by its ack
            left = conn.execute("SELECT coalesce(sum(outstanding), 0), count(*) FROM lease_batch").fetchone()
            if left[0] != 0:
                raise SystemExit(f"batches: {left[0]} leases still outstanding in {left[1]} batches after the drain")
    if handled < count:
        raise SystemExit(f"{kind}: drained {handled} of {count}")
    upd, hot = after[0] - updates[0], after[1] - updates[1]
    return {"rate": handled / seconds, "wal_per_msg": wal / handled, "hot_share": hot / upd if upd else None}


# -- send ------------------------------------------------------------------------------------------
RAW_SEND_MANY = "INSERT INTO raw_queue (payload) SELECT unnest(%s::jsonb[])"
# The secondary indexes every message row carries (the partial ones hold no row of a plain send).
SECONDARY = ("queues_msg_claim", "queues_msg_avail")
# The check of a message's queue (migration 0023), and the foreign key it replaced, as Django made it.
QUEUE_CHECK = "queues_message_queue_check"
OLD_FK = ("queues_message_queue_fk FOREIGN KEY (queue_id) REFERENCES queues_queue(id) "
          "DEFERRABLE INITIALLY DEFERRED")


def send_variants(dsn: str, queue_id: int, count: int, per_statement: int = 1) -> dict[str, dict]:
    """One process, ``per_statement`` messages per statement and transaction: the engine's statement with and
    without its parts, down to an insert into a table that has only its primary key, against the raw floor's."""
    import re

    from queues.engine import sql

    statements = max(1, count // per_statement)
    params = {"queue_id": queue_id, "bodies": "[" + ",".join([BODY] * per_statement) + "]", "headers": None,
              "priorities": None, "groups": None, "delays": None, "ttls": None}
    without_bump = re.sub(r"bumped AS \(.*?\n\),", "", sql.SEND_FAST, flags=re.S)
    assert without_bump != sql.SEND_FAST
    out: dict[str, dict] = {}
    with _connect(dsn) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'queues_message' AND indexname = ANY(%s)",
            [list(SECONDARY)],
        ).fetchall()
        assert len(indexes) == len(SECONDARY), indexes

        def timed(label: str, statement: str, args: Any) -> None:
            conn.execute(statement, args, prepare=True)
            lsn = _wal_lsn(conn)
            began = time.perf_counter()
            for _ in range(statements):
                conn.execute(statement, args, prepare=True)
            seconds = time.perf_counter() - began
            sent = statements * per_statement
            out[label] = {"rate": sent / seconds, "wal_per_msg": _wal_since(conn, lsn) / sent}

        conn.execute("DROP TABLE IF EXISTS raw_queue")
        conn.execute(RAW_TABLE)
        if per_statement == 1:
            timed("raw floor: INSERT + pg_notify", RAW_SEND, [BODY])
        else:
            timed("raw floor: INSERT ... unnest", RAW_SEND_MANY, [[BODY] * per_statement])
        timed("engine SEND_FAST", sql.SEND_FAST, params)
        conn.execute(f"ALTER TABLE queues_message DISABLE TRIGGER {QUEUE_CHECK}")
        try:
            conn.execute(f"ALTER TABLE queues_message ADD CONSTRAINT {OLD_FK}")
            try:
                timed("SEND_FAST with the foreign key instead (before migration 0023)", sql.SEND_FAST, params)
            finally:
                conn.execute(f"ALTER TABLE queues_message DROP CONSTRAINT {OLD_FK.split()[0]}")
        finally:
            conn.execute(f"ALTER TABLE queues_message ENABLE TRIGGER {QUEUE_CHECK}")
        timed("SEND_FAST without the counter upsert", without_bump, params)
        conn.execute(f"ALTER TABLE queues_message DISABLE TRIGGER {QUEUE_CHECK}")
        try:
            timed("SEND_FAST without the queue check", sql.SEND_FAST, params)
            timed("SEND_FAST without both", without_bump, params)
            for name, _ in indexes:
                conn.execute(f"DROP INDEX {name}")
            try:
                timed("SEND_FAST without both, table with its primary key only", without_bump, params)
            finally:
                for _, definition in indexes:
                    conn.execute(definition)
        finally:
            conn.execute(f"ALTER TABLE queues_message ENABLE TRIGGER {QUEUE_CHECK}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-dsn", help="A server's maintenance database (default: the embedded server).")
    parser.add_argument("--messages", type=int, default=40_000, help="Messages per drain run.")
    parser.add_argument("--sends", type=int, default=3_000, help="Sends per send variant, one per transaction.")
    parser.add_argument("--batch-sends", type=int, default=30_000,
                        help=f"Messages per send variant in statements of {BATCH}.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fillfactors", default="100,70,50")
    parser.add_argument("--only", choices=("drain", "send"), help="Measure only the drains or only the sends.")
    opts = parser.parse_args()

    dsn = fresh_database(opts.admin_dsn, DB_NAME)
    setup_django(dsn)
    import queues

    queues.ensure_queue(QUEUE, visibility_timeout=60, max_receives=0)
    queue_id = queues.get_queue(QUEUE).id
    from django.db import connections

    connections.close_all()
    variants: list[tuple[str, str, int]] = [("engine (receive 100 + ack_batch)", "engine", 100),
                                            ("lease, today's layout (bare SQL)", "today", 100)]
    variants += [(f"lease, HOT layout, fillfactor {ff} (bare SQL)", "hot", int(ff))
                 for ff in opts.fillfactors.split(",")]
    variants.append(("lease, HOT layout, fillfactor 50, + lease batches (bare SQL)", "batches", 50))
    variants.append(("raw floor (delete on claim, 100/tx)", "raw", 100))
    drains: dict[str, list[dict]] = {label: [] for label, _, _ in variants}
    sends: dict[str, list[dict]] = {}
    batch_sends: dict[str, list[dict]] = {}
    for rep in range(opts.repeat):
        for label, kind, ff in variants if opts.only != "send" else ():
            drains[label].append(drain(dsn, kind, opts.messages, queue_id, ff))
            print(f"[{rep + 1}] {label}: {drains[label][-1]}", flush=True)
        if opts.only == "drain":
            continue
        for label, result in send_variants(dsn, queue_id, opts.sends).items():
            sends.setdefault(label, []).append(result)
            print(f"[{rep + 1}] {label}: {result}", flush=True)
        for label, result in send_variants(dsn, queue_id, opts.batch_sends, BATCH).items():
            batch_sends.setdefault(label, []).append(result)
            print(f"[{rep + 1}] {label}, {BATCH} per statement: {result}", flush=True)

    with _connect(dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    print(f"\nMeasured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores), "
          f"PostgreSQL {version}; medians of {opts.repeat}; drains of {opts.messages:,} messages by "
          f"{CONSUMERS} processes, sends of {opts.sends:,} one per transaction and of {opts.batch_sends:,} "
          f"{BATCH} per statement.\n")
    if opts.only != "send":
        print_drains(drains)
    if opts.only != "drain":
        print_sends({"send, 1 per transaction": sends, f"send, {BATCH} per statement": batch_sends})


def print_drains(drains: dict[str, list[dict]]) -> None:
    raw = statistics.median(r["rate"] for r in drains["raw floor (delete on claim, 100/tx)"])
    engine = statistics.median(r["rate"] for r in drains["engine (receive 100 + ack_batch)"])
    print("| drain | msg/s | of the engine | of raw floor | WAL bytes/msg | HOT updates |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, runs in drains.items():
        rate = statistics.median(r["rate"] for r in runs)
        wal = statistics.median(r["wal_per_msg"] for r in runs)
        hot = [r["hot_share"] for r in runs if r["hot_share"] is not None]
        print(f"| {label} | {rate:,.0f} | {rate / engine:.2f}x | {rate / raw:.2f}x | {wal:,.0f} | "
              f"{f'{statistics.median(hot):.0%}' if hot else '-'} |")


def print_sends(tables: dict[str, dict[str, list[dict]]]) -> None:
    """One table per kind of send; each variant's rate against the table's first row (the raw floor)."""
    for title, runs_by_label in tables.items():
        floor = statistics.median(r["rate"] for r in next(iter(runs_by_label.values())))
        print(f"\n| {title} | msg/s | of raw floor | WAL bytes/msg |\n|---|---:|---:|---:|")
        for label, runs in runs_by_label.items():
            rate = statistics.median(r["rate"] for r in runs)
            print(f"| {label} | {rate:,.0f} | {rate / floor:.2f}x | "
                  f"{statistics.median(r['wal_per_msg'] for r in runs):,.0f} |")


if __name__ == "__main__":
    main()
