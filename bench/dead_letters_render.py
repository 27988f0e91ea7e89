"""Server-side render time of the dead-letter view with 1,000,000 messages in the table.

    .venv/bin/python bench/dead_letters_render.py [--ordinary 900000] [--dead 100000] [--repeat 20] [--refill]

Uses its own database ``bench_dead_letters`` on the server of ``DATABASE_URL`` (never a test database).
The first run fills it with SQL: ``--ordinary`` messages spread over ten queues (a tenth of them
backing off with an error on record, no ``dead_at``) and ``--dead`` dead letters in ``orders.dlq``,
80 % from ``orders`` and 20 % from ``payments``, with 20 error signatures whose first lines carry
ids, amounts and UUIDs that the signature rule folds. Then each page is requested through Django's
test client (middleware, view, selectors, template; no network) ``--repeat`` times after a warm-up,
and the plans of the grouping and listing statements are printed (``EXPLAIN (ANALYZE, BUFFERS)``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
sys.path.insert(0, str(ROOT))
from bench.benchdb import kept_database  # noqa: E402 (needs ROOT on the path)
from bench.dashboard_render import measure  # noqa: E402

BENCH_DB = "bench_dead_letters"

ERRORS = [
    "KeyError: 'unknown SKU {n}'",
    "requests.exceptions.HTTPError: 503 Server Error for url: https://pay.example.com/charge/{n}",
    "ValueError: amount {n} is below the minimum",
    "orders.errors.OutOfStock: item {n} out of stock in warehouse {m}",
    "TimeoutError: handler orders.handle ran longer than its timeout of 30s and was abandoned",
    "psycopg.OperationalError: connection to server at 10.0.0.{m}, port 5432 failed",
    "PermissionError: tenant {uuid} is suspended",
    "json.decoder.JSONDecodeError: Expecting value: line 1 column {m} (char {n})",
    "AttributeError: 'NoneType' object has no attribute 'customer'",
    "ZeroDivisionError: division by zero",
    "LookupError: customer {n} not found",
    "RuntimeError: object at 0x7f{n}ab is locked",
    "orders.errors.Duplicate: order {n} already paid",
    "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
    "ConnectionResetError: [Errno 104] Connection reset by peer",
    "IndexError: list index out of range",
    "smtplib.SMTPRecipientsRefused: user{n}@example.com refused",
    "decimal.InvalidOperation: [<class 'decimal.ConversionSyntax'>]",
    "orders.errors.FraudSuspected: score {m} for card ending {n}",
    "",
]


def fill(ordinary: int, dead: int) -> None:
    """Ten ordinary queues, ``orders.dlq`` fed by ``orders`` and ``payments``, rows written with SQL."""
    from django.db import connection

    import queues
    from queues.models import Queue

    started = time.monotonic()
    queues.create_queue("orders.dlq")
    queues.create_queue("orders", dead_letter_queue="orders.dlq")
    queues.create_queue("payments", dead_letter_queue="orders.dlq")
    names = ["orders", "payments"] + [f"bench.q{i}" for i in range(8)]
    for name in names[2:]:
        queues.create_queue(name)
    ids = dict(Queue.objects.values_list("name", "id"))
    templates = "ARRAY[" + ",".join("$$" + e + "$$" for e in ERRORS) + "]"
    with connection.cursor() as cur:
        per = ordinary // len(names)
        for name in names:
            cur.execute(
                f"""
                INSERT INTO queues_message (queue_id, body, headers, priority, enqueued_at, available_at,
                    receive_count, last_error, history)
                SELECT %s, json_build_object('order', g, 'sku', 'SKU-' || (g %% 5000)), '{{}}'::jsonb, 0,
                    now() - interval '1 hour',
                    now() + CASE WHEN g %% 10 = 0 THEN interval '30 seconds' ELSE -interval '1 minute' END,
                    CASE WHEN g %% 10 = 0 THEN 3 ELSE 0 END,
                    CASE WHEN g %% 10 = 0 THEN replace(({templates})[1 + g %% 19], '{{n}}', g::text)
                         || E'\\nTraceback (most recent call last):\\n  File "orders/handlers.py", line 42'
                         ELSE '' END,
                    '[]'::jsonb
                FROM generate_series(1, %s) g
                """,
                [ids[name], per],
            )
            cur.execute(
                "INSERT INTO queues_counter (queue_id, slot, depth, sent, acked, failed, dead) "
                "VALUES (%s, 99, %s, %s, 0, 0, 0)",
                [ids[name], per, per],
            )
        cur.execute(
            f"""
            INSERT INTO queues_message (queue_id, body, headers, priority, enqueued_at, available_at,
                receive_count, last_error, history, origin_queue_id, dead_at)
            SELECT %(dlq)s, json_build_object('order', g), '{{}}'::jsonb, 0, t - interval '10 minutes', t, 5,
                CASE WHEN e = '' THEN '' ELSE
                replace(replace(replace(e, '{{n}}', (g * 7919 %% 1000003)::text), '{{m}}', (g %% 250)::text),
                        '{{uuid}}', md5(g::text)::uuid::text)
                || E'\\nTraceback (most recent call last):\\n  File "orders/handlers.py", line 42, in handle\\n'
                || '    raise exc' END,
                jsonb_build_array(jsonb_build_object('at', t, 'event', 'dead-lettered', 'receive_count', 5)),
                CASE WHEN g %% 5 = 0 THEN %(payments)s ELSE %(orders)s END, t
            FROM (SELECT g, now() - (g * interval '1 second') AS t,
                         ({templates})[1 + (g * 31) %% 20] AS e FROM generate_series(1, %(n)s) g) s
            """,
            {"dlq": ids["orders.dlq"], "payments": ids["payments"], "orders": ids["orders"], "n": dead},
        )
        cur.execute(
            "INSERT INTO queues_counter (queue_id, slot, depth, sent, acked, failed, dead) "
            "VALUES (%s, 99, %s, %s, 0, 0, 0)",
            [ids["orders.dlq"], dead, dead],
        )
        # Rows written here did not die through the engine: touching dead_at runs the trigger that signs them.
        cur.execute("UPDATE queues_message SET dead_at = dead_at WHERE dead_at IS NOT NULL")
    with connection.cursor() as cur:
        cur.execute("ANALYZE queues_message")
    print(f"filled {ordinary:,} ordinary + {dead:,} dead letters in {time.monotonic() - started:.0f} s", flush=True)


def explain() -> None:
    """The plans of the statements behind the view."""
    from django.db import connection

    from queues.models import Queue

    dlq = Queue.objects.get(name="orders.dlq")
    orders = Queue.objects.get(name="orders")
    statements = {
        "groups (dead-letter queue)": (
            "SELECT origin_queue_id, coalesce(error_signature, ''), count(*), max(dead_at) FROM queues_message "
            "WHERE queue_id = %s AND dead_at IS NOT NULL GROUP BY origin_queue_id, error_signature",
            [dlq.id],
        ),
        "newest 50 (dead-letter queue)": (
            "SELECT id FROM queues_message WHERE queue_id = %s AND dead_at IS NOT NULL "
            "ORDER BY dead_at DESC, id DESC LIMIT 50",
            [dlq.id],
        ),
        "newest 50 of one group": (
            "SELECT id FROM queues_message WHERE queue_id = %s AND dead_at IS NOT NULL AND origin_queue_id = %s "
            "AND error_signature = %s ORDER BY dead_at DESC, id DESC LIMIT 50",
            [dlq.id, orders.id, "ValueError: amount # is below the minimum"],
        ),
    }
    with connection.cursor() as cur:
        for label, (text, params) in statements.items():
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + text, params)
            print(f"\n-- {label}")
            print("\n".join(r[0] for r in cur.fetchall()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ordinary", type=int, default=900_000)
    parser.add_argument("--dead", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--refill", action="store_true")
    parser.add_argument("--vacuum", action="store_true", help="VACUUM the message table before measuring")
    args = parser.parse_args()
    must_fill = kept_database(BENCH_DB, refill=args.refill)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    if must_fill:
        fill(args.ordinary, args.dead)
    if args.vacuum:
        with connection.cursor() as cur:
            cur.execute("VACUUM (ANALYZE) queues_message")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), count(*) FILTER (WHERE dead_at IS NOT NULL) FROM queues_message")
        total, dead = cur.fetchone()
    print(f"queues_message: {total:,} rows, {dead:,} dead letters")
    group = urlencode({"origin": "orders", "sig": "ValueError: amount # is below the minimum"})
    for path in (
        "/queues/orders.dlq/dead-letters/",
        f"/queues/orders.dlq/dead-letters/?{group}",
        "/queues/orders.dlq/",
        "/queues/orders/",
        "/queues/orders/dead-letters/",
    ):
        r = measure(path, args.repeat)
        print(f"{path:90s} median {r['median']:7.1f} ms   p95 {r['p95']:7.1f} ms   max {r['max']:7.1f} ms")
    explain()


if __name__ == "__main__":
    main()
