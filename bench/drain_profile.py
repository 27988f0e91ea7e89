"""Where a drain's time goes: the receive and ack statements on the server, and the Python around them.

    .venv/bin/python bench/drain_profile.py                       # 100,000 queued, embedded server
    .venv/bin/python bench/drain_profile.py --admin-dsn postgresql://postgres@127.0.0.1:5432/postgres

On a FRESH database ``bench_drain_profile``:

1. ``EXPLAIN (ANALYZE, BUFFERS, WAL)`` of one ``RECEIVE_STANDARD`` of 100 and one ``ACK`` of them with
   ``--backlog`` messages queued (in a transaction rolled back), the top plan lines by time;
2. one process draining ``--messages`` with ``receive(100)`` + ``ack_batch``: wall time, this process's
   CPU time (the client's share) and the rest (the server's, and waiting), per message;
3. the same loop under ``cProfile``: the functions with the most own time, per message.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from bench.benchdb import fresh_database, setup_django  # noqa: E402 (needs ROOT on the path)

os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
QUEUE = "drain"
BODY = {"pad": "x" * 60, "i": 0}


def fill(count: int) -> None:
    import queues

    for start in range(0, count, 5000):
        queues.send_batch(QUEUE, [BODY] * min(5000, count - start))


def explain() -> None:
    from django.db import connection, transaction

    import queues
    from queues.engine import delivery, sql

    qid = queues.get_queue(QUEUE).id
    with transaction.atomic(), connection.cursor() as cur:
        params = {"queue_id": qid, "limit": 100, "vt": None, "async_commit": False, "floor": 0}
        cur.execute(sql.RECEIVE_STANDARD, params)  # warm the plan cache and the pages
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) " + sql.RECEIVE_STANDARD, params)
        receive_plan = [r[0] for r in cur.fetchall()]
        cur.execute(
            "SELECT id, receipt FROM queues_message WHERE queue_id = %s AND receipt IS NOT NULL LIMIT 100", [qid]
        )
        rows = cur.fetchall()
        _, held = delivery._split([f"{r[0]}:{r[1].hex}" for r in rows])
        ack = {**held, "async_commit": False}
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) " + sql.ACK, ack)
        ack_plan = [r[0] for r in cur.fetchall()]
        transaction.set_rollback(True)
    for title, plan in (("receive(100)", receive_plan), ("ack_batch(100)", ack_plan)):
        print(f"\n#### EXPLAIN (ANALYZE, BUFFERS, WAL) {title}\n```")
        print("\n".join(plan))
        print("```")


def loop(messages: int) -> int:
    import queues

    done = 0
    while done < messages:
        got = queues.receive(QUEUE, max_messages=100)
        if not got:
            break
        queues.ack_batch([d.receipt for d in got])
        done += len(got)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-dsn")
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=20_000)
    opts = parser.parse_args()
    setup_django(fresh_database(opts.admin_dsn, "bench_drain_profile"))
    from django.db import connection

    import queues

    queues.create_queue(QUEUE, visibility_timeout=60, max_receives=0, dead_letter_queue=None)
    fill(opts.backlog)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE queues_message")
    print(f"load {os.getloadavg()[0]:.2f}; {opts.backlog:,} queued")
    explain()
    loop(2000)  # warm
    wall, cpu = time.perf_counter(), time.process_time()
    n = loop(opts.messages)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"\none process, receive(100) + ack_batch: {n:,} messages, {n / wall:,.0f} msg/s; per message "
        f"{wall / n * 1e6:.1f} µs wall, {cpu / n * 1e6:.1f} µs client CPU, "
        f"{(wall - cpu) / n * 1e6:.1f} µs elsewhere (server, waiting); load {os.getloadavg()[0]:.2f}"
    )
    prof = cProfile.Profile()
    prof.enable()
    n = loop(opts.messages)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())
    print(f"\ncProfile, {n:,} messages: own time per message (µs), top 15 (total {total / n * 1e6:.1f} µs)")
    print("| function | µs/msg | calls/msg |\n|---|---:|---:|")
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:15]
    for (file, line, fn), (_, ncalls, tottime, _, _) in top:
        print(f"| `{Path(file).name}:{line} {fn}` | {tottime / n * 1e6:.2f} | {ncalls / n:.2f} |")
    fill(n)  # leave the backlog as it was


if __name__ == "__main__":
    main()
