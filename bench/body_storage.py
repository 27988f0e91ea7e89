"""What storing message bodies as ``json`` (text kept as sent) costs against ``jsonb`` (parsed, reordered).

    .venv/bin/python bench/body_storage.py [--messages 100000] [--single 3000]

Uses its own database ``bench_body`` on the project's server (the embedded one, or ``DATABASE_URL``),
dropped and migrated afresh on every run, so it measures whatever column type the current migrations
make. Measures, in this process:

- single sends per second (``queues.send``, one statement and commit each);
- batch sends per second (``send_batch`` of 1,000);
- receive + ack per second (``receive(max_messages=100)`` then ``ack_batch``);
- the message table's size with ``--messages`` messages, and the average stored body size;
- search time of ``body.customer:c-0042`` and ``body.order_id:4242`` through the dashboard's own
  query (``search.message_queryset``) over those messages (median of 5, after a warm-up).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A database named by DATABASE_URL means production settings, which want a key: one for benchmarks only.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
sys.path.insert(0, str(ROOT))
from bench import benchdb  # noqa: E402 (needs ROOT on the path)

BENCH_DB = "bench_body"


def fresh_database() -> None:
    """A fresh, migrated ``bench_body`` on the server the benchmarks use; DATABASE_URL points at it."""
    admin = benchdb.with_database(benchdb.server_url(), "postgres")
    os.environ["DATABASE_URL"] = benchdb.fresh_database(admin, BENCH_DB)


def body(n: int) -> dict:
    # order_id first, as a producer would write it: jsonb stores it last (shorter keys first).
    return {"order_id": n, "customer": f"c-{n % 1000:04d}", "lines": [{"sku": "A-1", "qty": 2}], "note": "x" * 80}


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=3000)
    args = parser.parse_args()
    fresh_database()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
    import django

    django.setup()
    from django.db import connection

    import queues
    from queues import search

    queues.create_queue("bench", visibility_timeout=3600)
    column = None
    with connection.cursor() as cur:
        cur.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'queues_message'::regclass AND attname = 'body'")
        column = cur.fetchone()[0]
    print(f"body column: {column}")

    t0 = time.perf_counter()
    for n in range(args.single):
        queues.send("bench", body(n))
    print(f"single sends: {rate(args.single, time.perf_counter() - t0)}")
    queues.purge("bench")

    t0 = time.perf_counter()
    for start in range(0, args.messages, 1000):
        queues.send_batch("bench", [body(n) for n in range(start, min(start + 1000, args.messages))])
    print(f"batch sends (1,000 each): {rate(args.messages, time.perf_counter() - t0)}")

    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE queues_message")
        cur.execute("SELECT pg_total_relation_size('queues_message'), pg_relation_size('queues_message'), "
                    "avg(pg_column_size(body)) FROM queues_message")
        total, heap, avg_body = cur.fetchone()
    print(f"table with {args.messages:,} messages: {total / 2**20:.1f} MiB (heap {heap / 2**20:.1f} MiB), "
          f"average stored body {float(avg_body):.0f} bytes")

    for term in ("body.customer:c-0042", "body.order_id:4242"):
        f = search.parse_search(term)
        found = search.message_queryset(f).count()
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            search.message_queryset(f).count()
            timings.append((time.perf_counter() - t0) * 1000)
        print(f"search {term!r} over {args.messages:,}: {found} found, median {statistics.median(timings):.0f} ms")

    received = 0
    t0 = time.perf_counter()
    while received < min(args.messages, 20_000):
        got = queues.receive("bench", max_messages=100)
        if not got:
            break
        queues.ack_batch([d.receipt for d in got])
        received += len(got)
    print(f"receive + ack (100 each): {rate(received, time.perf_counter() - t0)}")
    queues.create_queue("bench.order")
    queues.send("bench.order", body(7))
    [got] = queues.receive("bench.order")
    print(f"round trip keeps key order: {list(got.body) == list(body(7))}")


if __name__ == "__main__":
    main()
