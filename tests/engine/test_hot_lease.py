"""Leases are heap-only updates, and the in-flight count still follows every lease (migration 0022).

A lease writes ``leased_until``, the receipt and ``receive_count``, none of which any index covers, so
PostgreSQL can write it without a new index entry (a HOT update). In-flight messages are then counted
from the claims' ``queues_lease`` rows, probing the ids they list (sql.STATS); these tests hold that count
to the message rows themselves where the two could part: an extend past its claim's batch, a lease
given back and taken again, batches pruned, and leases in flight when the migration runs.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

import queues
import queues.engine
from queues.models import LeaseBatch, Message

from .conftest import assert_counts_exact


def _xact_updates() -> tuple[int, int]:
    """This transaction's updates of queues_message so far, and how many of them were heap-only."""
    with connection.cursor() as cur:
        cur.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'queues_message'")
        return cur.fetchone()


def test_a_claim_writes_its_leases_as_heap_only_updates(make_queue):
    queue = make_queue("hot")
    queues.send_batch(queue, [{"n": i, "pad": "x" * 100} for i in range(100)])
    before = _xact_updates()
    got = queues.receive(queue, max_messages=100)
    updated, hot = (after - prior for after, prior in zip(_xact_updates(), before, strict=True))
    assert len(got) == 100 and updated == 100
    # A new page's rows fill half of it (fillfactor 50); the first lease adds a receipt and an end to each,
    # so the last few rows of a page may find no room left and take a new index entry. Before 0022, no
    # lease was heap-only: each moved available_at, a key of two indexes.
    assert hot >= 80, f"{hot} of 100 leases were heap-only updates"


def test_an_extend_past_its_claims_batch_keeps_the_message_in_flight(make_queue):
    queue = make_queue("hot")
    queues.send(queue, {"n": 1})
    [delivery] = queues.receive(queue, visibility_timeout=30)
    queues.extend(delivery.receipt, visibility_timeout=600)
    # The claim's batch runs out (time passes for it alone); the extend listed the message again.
    with connection.cursor() as cur:
        cur.execute("UPDATE queues_lease SET until = statement_timestamp() - interval '1 second' "
                    "WHERE %s = ANY(message_ids) AND until < statement_timestamp() + interval '60 seconds'",
                    [delivery.id])
        assert cur.rowcount == 1
    assert queues.queue_stats(queue).in_flight == 1
    assert_counts_exact("extend past the claim's batch")
    queues.prune()  # drops the run-out batch, keeps the extend's
    assert [len(b.message_ids) for b in LeaseBatch.objects.all()] == [1]
    assert queues.queue_stats(queue).in_flight == 1
    queues.ack(delivery.receipt)
    assert queues.queue_stats(queue).in_flight == 0


def test_a_lease_given_back_and_taken_again_counts_once(make_queue):
    queue = make_queue("hot")
    queues.send_batch(queue, [{"n": 1}, {"n": 2}])
    first = queues.receive(queue, max_messages=2)
    assert queues.queue_stats(queue).in_flight == 2
    queues.release_batch([first[0].receipt])
    assert queues.queue_stats(queue).in_flight == 1  # listed in a live batch, but its lease is over
    [again] = queues.receive(queue)
    assert again.id == first[0].id
    assert queues.queue_stats(queue).in_flight == 2  # listed in two live batches, counted once
    assert_counts_exact("release and receive again")
    queues.nack(again.receipt, delay=60)
    stats = queues.queue_stats(queue)
    assert (stats.in_flight, stats.delayed) == (1, 1)
    assert_counts_exact("nack with a delay")


def _message_columns() -> set[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'queues_message'")
        return {r[0] for r in cur.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_leases_in_flight_when_the_migration_runs_stay_in_flight(make_queue):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("queues")
    queue = make_queue("carried")
    ids = queues.send_batch(queue, [{"n": 1}, {"n": 2}])
    executor.migrate([("queues", "0021_claim_scan_functions")])
    try:
        assert "leased_until" not in _message_columns()
        token = uuid.uuid4()
        with connection.cursor() as cur:  # a lease as the old layout wrote it: available_at is its end
            cur.execute("UPDATE queues_message SET receipt = %s, receive_count = 1,"
                        " available_at = statement_timestamp() + interval '5 minutes' WHERE id = %s",
                        [token, ids[0]])
        MigrationExecutor(connection).migrate(latest)
        queues.engine.clear_cache()
        stats = queues.queue_stats(queue)
        assert (stats.in_flight, stats.ready, stats.delayed) == (1, 1, 0)
        assert_counts_exact("migration 0022")
        carried = Message.objects.get(id=ids[0])
        assert carried.leased_until > carried.available_at
        assert queues.receive(queue, max_messages=10)[0].id == ids[1]  # the leased one is not delivered
        queues.ack(f"{ids[0]}:{token.hex}")  # its holder's receipt still settles it
        assert queues.queue_stats(queue).in_flight == 1  # the one just received
    finally:
        MigrationExecutor(connection).migrate(latest)


def test_a_process_that_only_receives_keeps_the_lease_batches_few(make_queue, monkeypatch):
    from queues.engine import delivery

    monkeypatch.setattr(delivery, "LEASE_SWEEP_EVERY", 0.0)
    queue = make_queue("hot")
    queues.send_batch(queue, [{"n": i} for i in range(30)])
    for _ in range(10):
        queues.ack_batch([d.receipt for d in queues.receive(queue, max_messages=2)])
        with connection.cursor() as cur:  # time passes for the batches (their leases were acked anyway)
            cur.execute("UPDATE queues_lease SET until = statement_timestamp() - interval '1 second'")
    # No prune ran: each claim cleared the batches that had run out before it, and left its own.
    assert LeaseBatch.objects.count() == 1
    held = queues.receive(queue, max_messages=3)
    assert LeaseBatch.objects.count() == 1 and queues.queue_stats(queue).in_flight == 3
    assert {d.id for d in held} <= set(LeaseBatch.objects.get().message_ids)
