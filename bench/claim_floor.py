"""What the standard claim reads under a held snapshot, from the start of the queue and from its claim floor.

    .venv/bin/python bench/claim_floor.py                 # 50,000 messages churned under the snapshot
    .venv/bin/python bench/claim_floor.py --churn 20000 --admin-dsn postgresql://postgres@127.0.0.1:5432/postgres

On a FRESH database ``bench_floor`` (embedded server unless ``--admin-dsn``): another session holds a
snapshot open (``BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1``, idle in transaction) while CHURN
messages are sent, received and acked in batches of ``--batch`` (10: a worker's prefetch); then 10 messages are sent and
``EXPLAIN (ANALYZE, BUFFERS)`` shows one ``RECEIVE_STANDARD`` of 10 from id 0 (a full claim: it walks every
version the snapshot keeps) and one from the floor the engine keeps (the lowest id the last claim took,
less ``FLOOR_SLACK``). Then ``receive(10)`` and ``ack_batch`` through the API, timed apart,
with the floor (the engine's default) and with every claim a full one (``FULL_SCAN_EVERY = 0``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from bench.benchdb import fresh_database, setup_django  # noqa: E402 (needs ROOT on the path)

os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)


def explain(cur, statement: str, params: dict) -> tuple[float, int, str]:
    """(execution ms, shared buffers hit+read of the claim's index scan, its index condition line)."""
    cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params)
    lines = [r[0] for r in cur.fetchall()]
    ms = next(float(x.split(":")[1].split()[0]) for x in lines if x.strip().startswith("Execution Time"))
    # the claim's own scan: the first of queues_message (the claim index, or the availability index + a sort)
    # (the claim's scan is the function queues_claim_ready since migration 0021; the plans before it scanned
    # queues_message in the statement itself)
    scan = next(i for i, x in enumerate(lines)
                if "Function Scan on queues_claim_ready" in x or " on queues_message m " in x)
    cond, buffers = lines[scan].strip().split(" (")[0], 0
    for x in lines[scan + 1 : scan + 6]:
        if "Index Cond" in x:
            cond += "; " + x.strip()
        if "Buffers:" in x and not buffers:
            buffers = sum(int(p.split("=")[1]) for p in x.split(":")[1].split() if "=" in p)
    return ms, buffers, cond


def generic_scan(cur, statement: str) -> str:
    """The claim's scan in the statement's generic plan (the one a prepared statement settles on)."""
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    cur.execute("EXPLAIN (GENERIC_PLAN, COSTS OFF) " + re.sub(r"%\((\w+)\)s", number, statement).replace("%%", "%"))
    lines = [r[0] for r in cur.fetchall()]
    scan = next(i for i, x in enumerate(lines) if re.search(r" on queues_message m( |$)", x))
    return "; ".join(x.strip() for x in lines[scan : scan + 3] if "Scan" in x or "Cond" in x or "Filter" in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-dsn")
    parser.add_argument("--churn", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=10, help="Messages per send, receive and ack while churning.")
    parser.add_argument("--timed", type=int, default=200, help="Timed receive(10) + ack per mode.")
    opts = parser.parse_args()
    dsn = fresh_database(opts.admin_dsn, "bench_floor")
    setup_django(dsn)
    import psycopg
    from django.db import connection

    import queues
    from queues.engine import delivery, sql
    from queues.engine.connection import claim_floors

    queues.create_queue("floor", visibility_timeout=60, max_receives=0, dead_letter_queue=None)
    qid = queues.get_queue("floor").id
    holder = psycopg.connect(dsn)
    holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT 1")
    try:
        for _ in range(opts.churn // opts.batch):
            queues.send_batch("floor", [{"pad": "x" * 60}] * opts.batch)
            queues.ack_batch([d.receipt for d in queues.receive("floor", max_messages=opts.batch)])
        queues.send_batch("floor", [{"pad": "x" * 60}] * 10)
        with connection.cursor() as cur:
            cur.execute("SELECT min(id) FROM queues_message WHERE queue_id = %s", [qid])
            lowest = cur.fetchone()[0]
            cur.execute("SELECT version()")
            print(
                cur.fetchone()[0].split(",")[0],
                f"; {opts.churn:,} messages churned under a held snapshot"
                f" in batches of {opts.batch}; load {os.getloadavg()[0]:.2f}",
            )
            print("| claim | ms | buffers of the index scan | scan; index condition |\n|---|---:|---:|---|")
            for label, statement, floor in (
                ("full", sql.RECEIVE_STANDARD, 0),
                ("from the floor", sql.RECEIVE_STANDARD, lowest - delivery.FLOOR_SLACK),
            ):
                params = {"queue_id": qid, "limit": 10, "vt": None, "async_commit": False, "floor": floor}
                cur.execute("BEGIN")
                ms, buffers, cond = explain(cur, statement, params)
                cur.execute("ROLLBACK")
                print(f"| {label} | {ms:.2f} | {buffers:,} | `{cond}` |")
            print(f"| generic plan | | | `{generic_scan(cur, sql.RECEIVE_STANDARD)}` |")
        print(
            "\n| through the API | receive(10) median ms | p95 | ack_batch median ms | p95 |\n|---|---:|---:|---:|---:|"
        )
        saved = delivery.FULL_SCAN_EVERY
        for label, every in (("claim floor (default)", saved), ("every claim full", 0.0)):
            delivery.FULL_SCAN_EVERY = every
            claim_floors.clear()
            rec, ack = [], []
            for _ in range(opts.timed):
                queues.send_batch("floor", [{"pad": "x" * 60}] * 10)
                t0 = time.perf_counter()
                got = queues.receive("floor", max_messages=10)
                t1 = time.perf_counter()
                queues.ack_batch([d.receipt for d in got])
                rec.append((t1 - t0) * 1e3)
                ack.append((time.perf_counter() - t1) * 1e3)
            cells = []
            for times in (sorted(rec), sorted(ack)):
                cells += [f"{statistics.median(times):.2f}", f"{times[int(0.95 * (len(times) - 1))]:.2f}"]
            print(f"| {label} | {' | '.join(cells)} |")
        delivery.FULL_SCAN_EVERY = saved
    finally:
        holder.rollback()
        holder.close()


if __name__ == "__main__":
    main()
