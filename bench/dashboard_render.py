"""Server-side render time of the dashboard's overview and queue pages with a big backlog.

    .venv/bin/python bench/dashboard_render.py [--messages 1000000] [--queues 20] [--repeat 30] [--refill]

Uses its own database ``bench_dashboard`` on the same server as the project (the embedded one, or
the server of ``DATABASE_URL``), never the test databases. The first run fills it: ``--queues``
queues (each with its dead-letter queue) holding ``--messages`` messages in all, about 90 % ready,
5 % delayed, 1 % in flight and the rest dead letters; two hours of 1-second samples and two days of
1-minute samples per queue; a handful of workers. Later runs reuse it (``--refill`` starts over).

Each page is requested through Django's test client in this process (middleware, view, selectors,
template; no network), after a warm-up, ``--repeat`` times. The goal is 200 ms at the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The benchmarks name their database (DATABASE_URL), so the settings want a key: one for benchmarks only,
# inherited by the processes they start (docs/deploy.md, "The secret key").
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
sys.path.insert(0, str(ROOT))
from bench.benchdb import kept_database  # noqa: E402 (needs ROOT on the path)

BENCH_DB = "bench_dashboard"


def fill(total: int, n_queues: int) -> None:
    """Queues, messages in every state, samples and workers."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    import queues
    from queues.models import Worker

    per_queue = total // n_queues
    names = [f"bench.q{i:02d}" for i in range(n_queues)]
    started = time.monotonic()
    for name in names:
        queues.create_queue(name, max_receives=1, visibility_timeout=3600)
        delayed = per_queue // 20
        flying = per_queue // 100
        dead = per_queue // 200
        ready = per_queue - delayed
        body = {"order": {"id": 0, "customer": "c-0001", "lines": [{"sku": "A-1", "qty": 2}]}, "note": "x" * 80}
        for start in range(0, ready, 10_000):
            queues.send_batch(name, [body] * min(10_000, ready - start))
        for start in range(0, delayed, 10_000):
            queues.send_batch(name, [queues.Outgoing(body=body, delay=3600)] * min(10_000, delayed - start))
        # Dead letters: max_receives=1, so a nack sends each to <name>.dlq; then some in flight.
        for d in queues.receive(name, max_messages=dead):
            queues.nack(d.receipt, error="ValueError: bench")
        queues.receive(name, max_messages=flying)
        print(f"  {name}: {queues.queue_stats(name)}", flush=True)
    now = timezone.now()
    with connection.cursor() as cur:
        # History as the sampler would leave it: 2 h at 1 s and 2 days at 60 s, per queue.
        for resolution, count in ((1, 7200), (60, 2880)):
            cur.execute(
                """
                INSERT INTO queues_sample (queue_name, at, resolution, ready, delayed, in_flight, dead,
                                           oldest_ready_age, sent_total, acked_total, failed_total)
                SELECT q, %(now)s - make_interval(secs => g * %(res)s), %(res)s, 45000, 2500, 500, 250, 12.5,
                       1000000 - g * 10, 900000 - g * 9, greatest(0, 250 - g / 100)
                FROM unnest(%(names)s::text[]) q, generate_series(0, %(count)s - 1) g
                """,
                {"now": now, "res": resolution, "names": names, "count": count},
            )
        cur.execute("VACUUM ANALYZE queues_message")
        cur.execute("ANALYZE queues_sample")
    for i in range(8):
        Worker.objects.create(
            name=f"bench{i}:{100 + i}:x", host=f"bench{i}", pid=100 + i, queues=names[i::8], concurrency=8,
            started_at=now - timedelta(hours=1), last_beat_at=now,
        )
    print(f"filled in {time.monotonic() - started:.0f} s", flush=True)


def freshen() -> None:
    """Move the history up to now, as a running sampler keeps it, so rates and failures are live."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("UPDATE queues_sample SET at = at + (statement_timestamp() - (SELECT max(at) FROM queues_sample))")
        cur.execute("UPDATE queues_worker SET last_beat_at = statement_timestamp()")


def measure(path: str, repeat: int) -> dict[str, float]:
    """Median, p95 and max milliseconds of ``repeat`` GETs of ``path`` (after two warm-ups)."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", password="bench")
    client = Client(HTTP_HOST="127.0.0.1")  # the demo site does not allow "testserver"
    client.force_login(user)
    for _ in range(2):
        assert client.get(path).status_code == 200, path
    timings = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        client.get(path)
    timings.sort()
    return {
        "median": statistics.median(timings), "p95": timings[int(len(timings) * 0.95) - 1], "max": timings[-1],
        "queries": len(ctx.captured_queries),
    }


def main() -> None:
    """Fill (first run) and measure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in all (default 1,000,000)")
    parser.add_argument("--queues", type=int, default=20, help="queues (default 20, each with a .dlq)")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page (default 30)")
    parser.add_argument("--refill", action="store_true", help="drop and refill the bench database")
    args = parser.parse_args()

    must_fill = kept_database(BENCH_DB, refill=args.refill)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
    import django

    django.setup()
    from django.core.management import call_command

    import queues
    from queues.formatting import format_rate
    from queues.models import Message
    from queues.selectors import get_overview

    call_command("migrate", verbosity=0)
    if must_fill:
        print(f"filling {BENCH_DB}: {args.messages:,} messages in {args.queues} queues", flush=True)
        fill(args.messages, args.queues)

    stats = queues.stats()
    print(f"database {BENCH_DB}: {len(stats)} queues (with dead-letter queues), "
          f"{sum(s.depth for s in stats):,} messages (count(*) {Message.objects.count():,})")
    t0 = time.perf_counter()
    for _ in range(10):
        queues.stats()
    print(f"queues.stats() alone: {(time.perf_counter() - t0) * 100:.1f} ms")
    ordinary = [s.queue for s in stats if not s.is_dead_letter_queue]
    first, last = ordinary[0], ordinary[-1]
    dlq = next(s.queue for s in stats if s.is_dead_letter_queue)
    deep = Message.objects.filter(queue__name=last).order_by("id").values_list("id", flat=True)[99 * 50]
    freshen()
    totals = get_overview().totals
    print(f"overview sees: ready {totals.ready:,}, dead {totals.dead:,}, workers {totals.workers}, "
          f"in {format_rate(totals.rate_in)}, out {format_rate(totals.rate_out)}, "
          f"failures last hour {totals.failed_last_hour}")
    pages = {
        "overview": "/",
        "queues": "/queues/",
        "queues sorted by ready": "/queues/?sort=-ready",
        "queue detail": f"/queues/{first}/",
        "message browser (first queue)": f"/queues/{first}/messages/",
        "message browser (last queue)": f"/queues/{last}/messages/",
        "message browser (last, page 100)": f"/queues/{last}/messages/?after={deep}",
        "message browser (all, state:dead)": "/messages/?state=dead",
        "dead letters of a dead-letter queue": f"/queues/{dlq}/dead-letters/",
        "dead letters of a source queue": f"/queues/{first}/dead-letters/",
        "workers": "/workers/",
        "audit log": "/audit/",
    }
    print(f"{'page':<36} {'median':>9} {'p95':>9} {'max':>9} {'queries':>8}")
    for label, path in pages.items():
        freshen()
        r = measure(path, args.repeat)
        print(f"{label:<36} {r['median']:>7.1f}ms {r['p95']:>7.1f}ms {r['max']:>7.1f}ms {r['queries']:>8}")


if __name__ == "__main__":
    main()
