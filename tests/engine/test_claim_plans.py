"""The claim and the statements that settle a lease keep their access paths when the statistics lie.

Under a held snapshot the message table keeps every version acked or leased since, while ANALYZE counts
only the live rows: the planner believes the table nearly empty. Prepared (generic) plans then flipped to
paths that read every dead version: the claim to ``queues_msg_avail`` and a sort, past the claim floor;
the ack to a walk of the whole primary key (docs/engine.md, "Claims"). Here the statistics are the ones
autovacuum takes of a queue whose consumers keep up (its few live messages in flight), thousands of
messages go through it under a held snapshot, and every statement runs on a generic plan
(``plan_cache_mode = force_generic_plan``) inside a transaction that is rolled back. The claim of
before migration 0021 read 597 buffers here (the heap had 503 pages), on PostgreSQL 18 and 15 alike.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg.sql import Literal

import queues
from queues.engine import delivery, sql

pytestmark = pytest.mark.django_db(transaction=True)

SETTLEMENTS = ("ACK", "NACK", "EXTEND", "RELEASE", "EXPIRE_HELD")
# Ten times FLOOR_SLACK: the claim may read the versions within the slack below its floor, no more.
CHURN = 10_000


def _numbered(statement: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """The statement with ``$n`` placeholders, and its values in that order."""
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    text = re.sub(r"%\((\w+)\)s", number, statement).replace("%%", "%")
    return text, [params[n] for n in names]


def _generic_plan(url: str, statement: str, params: dict[str, Any]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of one execution of ``statement``'s generic plan, rolled back."""
    text, values = _numbered(statement, params)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("BEGIN")
        try:
            conn.execute("PREPARE under_test AS " + text)
            literals = ", ".join("NULL" if v is None else Literal(str(v)).as_string(conn) for v in values)
            return [r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE under_test({literals})")]
        finally:
            conn.execute("ROLLBACK")


def _generic_buffers(url: str, statement: str, params: dict[str, Any], node: str = "") -> int:
    """Shared buffers one execution of ``statement``'s generic plan touches (rolled back): all of it, or
    the first plan node after the line that contains ``node``."""
    plan = _generic_plan(url, statement, params)
    start = next(i for i, line in enumerate(plan) if node in line)
    top = next(line for line in plan[start:] if "Buffers:" in line)
    return sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", top))


def test_claims_and_settlements_read_no_dead_versions_whatever_the_statistics(make_queue, database_url):
    queue = make_queue(visibility_timeout=60, max_receives=0)
    queue_id = queues.get_queue(queue).id
    queues.send_batch(queue, [{"n": i} for i in range(100)])
    in_flight = queues.receive(queue, max_messages=100)
    with connection.cursor() as cur:
        # The statistics autovacuum takes of a queue whose consumers keep up: its few live messages are
        # in flight, every `available_at` it samples lies in the future, and nothing looks ready.
        cur.execute("ANALYZE queues_message")
    queues.ack_batch([d.receipt for d in in_flight])
    held = psycopg.connect(database_url)
    held.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    held.execute("SELECT 1")
    try:
        for _ in range(CHURN // 10):
            queues.send_batch(queue, [{"pad": "x" * 60}] * 10)
            queues.ack_batch([d.receipt for d in queues.receive(queue, max_messages=10)])
        queues.send_batch(queue, [{"pad": "x" * 60}] * 10)  # ready messages to claim and settle
        with connection.cursor() as cur:
            cur.execute("VACUUM queues_message")  # as autovacuum would: the live rows over all the pages
        [delivery_] = queues.receive(queue, max_messages=1)
        message_id, token = queues.parse_receipt(delivery_.receipt)
        with connection.cursor() as cur:
            cur.execute("SELECT pg_relation_size('queues_message') / current_setting('block_size')::int")
            heap_pages = cur.fetchone()[0]
            cur.execute("SELECT min(id) FROM queues_message WHERE queue_id = %s AND leased_until IS NULL", [queue_id])
            lowest = cur.fetchone()[0]
        params = {
            "queue_id": queue_id, "limit": 5, "vt": None, "async_commit": False,
            "floor": lowest - delivery.FLOOR_SLACK, "ids": f"{{{message_id}}}",
            "held": f'{{"{message_id}": ["{token.hex}"]}}',
            "delay": 0, "dead_letter": False, "error": "", "seconds": 30, "refund": False, "cancel": False,
        }
        # The claim's own scan (the CTE `claimed`); the lease after it writes every index of the table.
        read = {"RECEIVE_STANDARD": _generic_buffers(database_url, sql.RECEIVE_STANDARD, params, "CTE claimed")}
        for name in SETTLEMENTS:
            read[name] = _generic_buffers(database_url, getattr(sql, name), params)
    finally:
        held.rollback()
        held.close()
    # Every version of the churn is still there: a claim that visits them in the heap reads more buffers
    # than the heap has pages (1.2x here before the fix). The claim index's own entries are fewer: on
    # PostgreSQL 18 a skip scan jumps to the floor (0.3x here); before 18 the walk reads the queue's
    # entries in the index, but no heap page below the floor (0.5x).
    assert heap_pages > 300, heap_pages
    assert read["RECEIVE_STANDARD"] < heap_pages * 0.75, (read, heap_pages)
    for name in SETTLEMENTS:
        assert read[name] < 40, (name, read, heap_pages)


@pytest.mark.parametrize("name", SETTLEMENTS)
def test_a_settlement_of_many_receipts_checks_each_message_against_its_own_receipts_only(
    make_queue, database_url, name
):
    # A generic plan guesses 10 rows for the unnest of a parameter: the receipts joined with the table
    # were planned as a nested loop comparing every receipt with every message, 124,750 comparisons
    # ("Rows Removed by Join Filter") and 10 ms for an ack of 500. Each message now looks its own id up.
    count = 500
    queue = make_queue(visibility_timeout=60, max_receives=0)
    for _ in range(20):  # a backlog, as the statistics see it
        queues.send_batch(queue, [{"n": i} for i in range(1000)])
    with connection.cursor() as cur:
        cur.execute("ANALYZE queues_message")
    held = queues.receive(queue, max_messages=count)
    assert len(held) == count
    _, params = delivery._split([d.receipt for d in held])
    params.update(delay=0, dead_letter=False, error="", seconds=30, refund=False, cancel=True, async_commit=False)
    plan = _generic_plan(database_url, getattr(sql, name), params)
    compared = sum(int(n) for line in plan for n in re.findall(r"Rows Removed by Join Filter: (\d+)", line))
    assert compared < count, "\n".join(plan)
    # and the statement did settle every one of them
    settled = [line for line in plan if re.search(r"(Delete|Update) on queues_message m(_\d+)?\b", line)]
    assert any(f"rows={count}.00 " in line or f"rows={count} " in line for line in settled), "\n".join(plan)
