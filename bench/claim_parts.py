"""Where a claim's time goes after migration 0022: the parts of the claim statement, and what the messages
in flight cost the claims that walk past them. Issue 11's latency goal (p50 at 200 msg/s) is mostly one
claim of one message; its drain goal is claims of 100.

    .venv/bin/python bench/claim_parts.py                  # embedded server, database bench_claim_parts
    .venv/bin/python bench/claim_parts.py --admin-dsn postgresql://postgres@127.0.0.1:5432/postgres

**Claim of one message.** Each round sends one message (not timed), times one claim of it on a
connection of its own (prepared, asynchronous commit, from the claim floor, as ``delivery.claim`` runs
it) and deletes it.
The variants are the engine's ``sql.RECEIVE_STANDARD`` as it is; without its dead-letter branch (the
``dead`` UPDATE and the counter deltas it feeds); without that and without the ``queues_lease`` row
that the in-flight count reads; and a statement that takes the same parameters and touches nothing
(the round trip); and, for comparison, the shared harness's raw floor taking one row of its own table.
Each repetition runs every variant, starting at a different one; each figure is the median of the
rounds.

**Walking past messages in flight.** Since 0022 no index holds the lease, so a claim checks each
in-flight message it passes on the heap. The claim floor (``delivery.FULL_SCAN_EVERY``) starts most
claims past them; one claim a second per process and queue starts from the queue's first id. With N
messages leased (visibility timeout 1 hour) ahead of 50,000 ready ones, it times ``receive(100)`` from the
queue's start (the floor forgotten) and the next, floored one.

The variants other than the first are prototypes of statements, not the engine; they show what each
part costs, not that it could go (the dead-letter branch sends poison messages to the dead-letter queue,
the lease row keeps the in-flight count exact).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from bench.benchdb import fresh_database, setup_django  # noqa: E402 (needs ROOT on the path)
from bench.levers import RAW_TABLE, RAW_TAKE  # noqa: E402

os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
DB_NAME = "bench_claim_parts"
QUEUE = "parts"
# The shared harness's raw floor (../shared/bench, adapters/raw_sql.py), as bench/levers.py writes it: its
# take of the message just sent.
RAW_NAME = "raw floor: DELETE ... FOR UPDATE SKIP LOCKED (its own table)"
RAW_SEND = "INSERT INTO raw_queue (payload) VALUES ('{\"i\": 0}')"


def _cut(text: str, start: str, end: str) -> str:
    """``text`` without the part from ``start`` up to (not including) ``end``; both must be there."""
    i, j = text.index(start), text.index(end)
    return text[:i] + text[j:]


def variants() -> dict[str, str]:
    """The claim statements compared, by name."""
    from queues.engine import sql

    full = sql.RECEIVE_STANDARD
    # The dead-letter UPDATE, and the deltas + counter upsert only it feeds, come out.
    no_dead = _cut(full, "dead AS (", "-- What the in-flight count reads")
    no_dead = _fix_trailing_comma(_cut(no_dead, "deltas AS (", "SELECT id, body::text"))
    no_lease_row = _fix_trailing_comma(_cut(no_dead, "-- What the in-flight count reads", "SELECT id, body::text"))
    round_trip = ("SELECT %(queue_id)s::bigint, %(limit)s::bigint, %(vt)s::float8, %(floor)s::bigint, "
                  "%(async_commit)s::boolean")
    return {
        "RECEIVE_STANDARD (the engine's)": full,
        "without the dead-letter branch": no_dead,
        "without it and without the lease row": no_lease_row,
        "round trip (same parameters, no table)": round_trip,
        RAW_NAME: RAW_TAKE,
    }


def _fix_trailing_comma(text: str) -> str:
    """The CTE list must not end in a comma once its last CTE is cut."""
    i = text.index("SELECT id, body::text")
    return text[:i].rstrip().rstrip(",") + "\n" + text[i:]


def claim_of_one(dsn: str, rounds: int, repeat: int) -> dict[str, list[float]]:
    import psycopg

    import queues
    from queues.engine.connection import config

    cfg = config(QUEUE)
    out: dict[str, list[float]] = {}
    stmts = variants()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(RAW_TABLE)
        # (RAW_TAKE takes its limit as %(n)s)
        params = {"queue_id": cfg.id, "limit": 10, "n": 10, "vt": None, "floor": 0, "async_commit": True}
        names = list(stmts)
        for rep in range(repeat):
            # Each repetition starts at another variant: the table's state (dead versions, pruning, vacuum)
            # drifts through a run, and should not fall on the same variant every time.
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                stmt = stmts[name]
                # Each variant starts from the steady state autovacuum keeps (a server with autovacuum
                # off would otherwise charge each variant the dead versions of all the rounds before it).
                conn.execute("TRUNCATE queues_lease")
                conn.execute("VACUUM queues_message, raw_queue")
                times = []
                for i in range(rounds):
                    # The claim starts at the message just sent, as a floored claim of the engine would
                    # (delivery.claim): the earlier rounds' deleted rows are not walked over.
                    if name == RAW_NAME:
                        conn.execute(RAW_SEND)
                    else:
                        params["floor"] = queues.send(QUEUE, {"i": i})
                    t = time.perf_counter()
                    rows = conn.execute(stmt, params).fetchall()
                    times.append(time.perf_counter() - t)
                    if name == RAW_NAME:
                        if len(rows) != 1:
                            raise SystemExit(f"{name}: took {len(rows)} rows, expected 1")
                        continue
                    if name.startswith("round trip"):
                        conn.execute("DELETE FROM queues_message WHERE queue_id = %s", [cfg.id])
                        continue
                    if len(rows) != 1:
                        raise SystemExit(f"{name}: claimed {len(rows)} messages, expected 1")
                    conn.execute("DELETE FROM queues_message WHERE id = %s", [rows[0][0]])
                # The first rounds prepare the statement (psycopg prepares on the 5th execution).
                out.setdefault(name, []).append(statistics.median(times[rounds // 10:]) * 1e6)
        conn.execute("TRUNCATE queues_lease")
    return out


def in_flight_walk(dsn: str, sizes: list[int], claims: int) -> list[tuple[int, float, float]]:
    import psycopg

    import queues
    from queues.engine import connection as engine_connection

    rows = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n in sizes:
            conn.execute("TRUNCATE queues_message, queues_lease")
            for _ in range(0, n, 1000):
                queues.send_batch(QUEUE, [{"i": 0}] * 1000)
            leased = 0
            while leased < n:
                leased += len(queues.receive(QUEUE, max_messages=1000, visibility_timeout=3600))
            for _ in range(50):
                queues.send_batch(QUEUE, [{"i": 1}] * 1000)
            conn.execute("VACUUM ANALYZE queues_message")
            full, floored = [], []
            for _ in range(claims):
                engine_connection.claim_floors.clear()
                t = time.perf_counter()
                first = queues.receive(QUEUE, max_messages=100)
                full.append(time.perf_counter() - t)
                t = time.perf_counter()
                second = queues.receive(QUEUE, max_messages=100)
                floored.append(time.perf_counter() - t)
                queues.ack_batch([d.receipt for d in first + second])
            rows.append((n, statistics.median(full) * 1e3, statistics.median(floored) * 1e3))
            print(f"  {n:,} in flight done", file=sys.stderr, flush=True)
        conn.execute("TRUNCATE queues_message, queues_lease")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-dsn", help="a database on the server to use (default: the embedded server)")
    parser.add_argument("--rounds", type=int, default=1000, help="claims of one message per variant and repetition")
    parser.add_argument("--repeat", type=int, default=4, help="repetitions (each starts at another variant)")
    parser.add_argument("--in-flight", default="1000,10000,100000", help="in-flight sizes, comma-separated")
    parser.add_argument("--claims", type=int, default=30, help="full + floored claim pairs per size")
    args = parser.parse_args()

    dsn = fresh_database(args.admin_dsn, DB_NAME)
    setup_django(dsn)
    import psycopg

    import queues

    queues.create_queue(QUEUE)
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    print(f"# claim_parts: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, PostgreSQL {version}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    one = claim_of_one(dsn, args.rounds, args.repeat)
    print("| claim of one message (µs, median of each run's rounds) | " +
          " | ".join(f"run {i + 1}" for i in range(args.repeat)) + " | median |")
    print("|---|" + "---:|" * (args.repeat + 1))
    for name, values in one.items():
        print(f"| {name} | " + " | ".join(f"{v:.0f}" for v in values) + f" | **{statistics.median(values):.0f}** |")
    sizes = [int(s) for s in args.in_flight.split(",") if s]
    walk = in_flight_walk(dsn, sizes, args.claims)
    print("\n| in flight ahead | receive(100) from the queue's start | floored | ratio |")
    print("|---:|---:|---:|---:|")
    for n, full, floored in walk:
        print(f"| {n:,} | {full:.2f} ms | {floored:.2f} ms | {full / floored:.1f}× |")


if __name__ == "__main__":
    main()
