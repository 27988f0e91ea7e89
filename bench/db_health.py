"""Cost of the database-health reads and of a ``/metrics`` scrape with a big backlog.

    .venv/bin/python bench/db_health.py [--messages 1000000] [--queues 20] [--repeat 200] [--refill]

Uses the database of ``bench/dashboard_render.py`` (``bench_dashboard``, filled on the first run of
either script: 1,000,000 messages in 20 queues and their dead-letter queues, samples, 8 workers). Times:

- ``queues.health.read()``: the three catalog statements behind the Database page, ``mq_stats --database``
  and the ``mqadmin_db_*`` metrics (goal: cheap enough for 1 Hz, i.e. a few ms);
- the Database page and ``/metrics`` through Django's test client (middleware, view, template);
- ``/metrics`` when the sampler is not running (the newest samples are old: gauges read live).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dashboard_render as base  # the bench folder is not a package: found through sys.path above


def _timed(fn, repeat: int) -> dict[str, float]:
    for _ in range(3):
        fn()
    timings = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - t0) * 1000)
    timings.sort()
    return {"median": statistics.median(timings), "p95": timings[int(len(timings) * 0.95) - 1], "max": timings[-1]}


def main() -> None:
    """Fill (first run) and measure."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in all (default 1,000,000)")
    parser.add_argument("--queues", type=int, default=20, help="queues (default 20, each with a .dlq)")
    parser.add_argument("--repeat", type=int, default=200, help="timed runs of each read (default 200)")
    parser.add_argument("--refill", action="store_true", help="drop and refill the bench database")
    args = parser.parse_args()

    must_fill = base.kept_database(base.BENCH_DB, refill=args.refill)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from queues import health
    from queues.models import Message

    call_command("migrate", verbosity=0)
    if must_fill:
        print(f"filling {base.BENCH_DB}: {args.messages:,} messages in {args.queues} queues", flush=True)
        base.fill(args.messages, args.queues)
    print(f"database {base.BENCH_DB}: {Message.objects.count():,} messages (count(*), once)")
    h = health.read()
    print("queue tables:", ", ".join(f"{t.table} {t.live_tuples:,} live / {t.size_bytes / 2**20:,.0f} MiB"
                                     for t in h.tables[:3]))
    from queues.metrics import prometheus
    from queues.metrics.sampler import Sampler

    def statement(sql: str, params: dict | None = None):
        def run() -> None:
            with connection.cursor() as cur:
                cur.execute(sql, params)
                cur.fetchall()
        return run

    # Page timings stay within the samples' freshness (5 s) so that the "sampler running" case is that.
    pages = min(args.repeat, 60)
    rows = []
    rows.append(("health.read() (3 catalog statements)", _timed(lambda: health.read(), args.repeat)))
    rows.append(("  of which the queue tables (pg_stat_user_tables)",
                 _timed(statement(health.TABLES_SQL, {"tables": health.queue_tables()}), args.repeat)))
    rows.append(("  of which the holders (pg_stat_activity)",
                 _timed(statement(health.HOLDERS_SQL, {"limit": 5}), args.repeat)))
    rows.append(("  of which the slots (pg_replication_slots)", _timed(statement(health.SLOTS_SQL), args.repeat)))
    base.freshen()
    Sampler().tick()
    rows.append(("/metrics queue figures (counters + newest samples)",
                 _timed(statement(prometheus.QUEUES_SQL), args.repeat)))
    base.freshen()
    rows.append(("Database page", base.measure("/database/", pages)))
    base.freshen()
    Sampler().tick()  # a 1 s sample of every queue, dead-letter queues included, as a running sampler keeps
    rows.append(("/metrics, sampler running (fresh samples)", base.measure("/metrics", pages)))
    with connection.cursor() as cur:
        cur.execute("UPDATE queues_sample SET at = at - interval '1 minute'")
    rows.append(("/metrics, sampler stopped (gauges read live)", base.measure("/metrics", pages)))
    print(f"{'what':<52} {'median':>9} {'p95':>9} {'max':>9} {'queries':>8}")
    for label, r in rows:
        queries = str(r.get("queries", ""))
        print(f"{label:<52} {r['median']:>7.1f}ms {r['p95']:>7.1f}ms {r['max']:>7.1f}ms {queries:>8}")


if __name__ == "__main__":
    main()
