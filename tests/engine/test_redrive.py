"""The one redrive: a second running redrive of a queue is impossible, from any caller, at any timing."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import queues
from queues.models import Queue, Redrive, RedriveState
from tests.conftest import wait_for
from tests.engine.conftest import Child

CHILD = Path(__file__).resolve().parent / "_redrive_child.py"
BARRIER_KEY = 7_340_012


def _dead_letters(queue: str, n: int) -> None:
    queues.send_batch(queue, [{"i": i} for i in range(n)])
    for delivery in queues.receive(queue, max_messages=n):
        assert queues.nack(delivery.receipt, error="boom")


@pytest.fixture
def dlq(make_queue) -> str:
    queue = make_queue("orders", max_receives=1)
    _dead_letters(queue, 3)
    return "orders.dlq"


def test_a_second_redrive_of_a_queue_is_refused_naming_the_running_one(dlq):
    first = queues.start_redrive(dlq)
    assert (first.state, first.total) == (RedriveState.RUNNING, 3)
    with pytest.raises(queues.RedriveRunning, match=rf"a redrive of 'orders\.dlq' is already running "
                                                    rf"\(redrive {first.pk}\): stop it first") as refused:
        queues.redrive(dlq)  # the path mq_redrive takes
    assert refused.value.redrive_id == first.pk
    assert isinstance(refused.value, ValueError)
    assert list(Redrive.objects.values_list("pk", flat=True)) == [first.pk]
    assert queues.queue_stats(dlq).depth == 3


def test_a_redrive_asked_to_stop_does_not_block_a_new_one(dlq):
    first = queues.start_redrive(dlq)
    assert queues.stop_redrive(first.pk) is True
    job = queues.redrive(dlq)
    assert (job.state, job.moved) == (RedriveState.FINISHED, 3)


def test_a_refused_start_leaves_the_callers_transaction_usable(dlq):
    with transaction.atomic():
        queues.start_redrive(dlq)
        with pytest.raises(queues.RedriveRunning):
            queues.start_redrive(dlq)
        assert Queue.objects.filter(name=dlq).exists()  # no "current transaction is aborted"
    assert Redrive.objects.filter(state=RedriveState.RUNNING).count() == 1


def test_a_redrive_is_sized_by_the_counters_not_by_counting_the_queue(dlq):
    with CaptureQueriesContext(connection) as queries:
        job = queues.start_redrive(dlq, limit=2)
    assert job.total == 2
    assert not [q["sql"] for q in queries if 'COUNT(*) AS "__count"' in q["sql"]]
    assert queues.start_redrive("orders", to="orders.dlq").total == 0


def test_a_redrive_of_a_queue_that_is_no_dead_letter_queue_needs_a_target(dlq):
    with pytest.raises(queues.InvalidRedrive, match="not a dead-letter queue"):
        queues.start_redrive("orders")
    with pytest.raises(queues.InvalidRedrive, match="into itself"):
        queues.start_redrive(dlq, to=dlq)
    with pytest.raises(queues.InvalidRedrive, match="rate must be"):
        queues.start_redrive(dlq, rate=0)
    assert not Redrive.objects.exists()


@pytest.mark.slow
def test_two_processes_starting_a_redrive_of_one_queue_at_once_leave_exactly_one_running(
    make_queue, subprocess_env
):
    make_queue("orders", max_receives=1)
    _dead_letters("orders", 10)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", [BARRIER_KEY])
    children = [Child(subprocess_env, "orders.dlq", str(BARRIER_KEY), script=CHILD) for _ in range(2)]
    try:
        for child in children:
            child.wait_ready()

        def both_waiting() -> bool:
            with connection.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                            "AND objid = %s", [BARRIER_KEY])
                return cur.fetchone()[0] == 2

        wait_for(both_waiting, timeout=30)
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", [BARRIER_KEY])  # both start now
        running = wait_for(lambda: Redrive.objects.filter(state=RedriveState.RUNNING).first(), timeout=30)
        # The loser answers at once and exits; the winner redrives 10 messages at 0.5/s until stopped.
        wait_for(lambda: any(child.proc.poll() is not None for child in children), timeout=30)
        queues.stop_redrive(running.pk)
        outcomes = [child.result(timeout=60) for child in children]
    finally:
        for child in children:
            child.kill()
    refused = [o for o in outcomes if "refused" in o]
    ran = [o for o in outcomes if "ran" in o]
    assert len(refused) == 1 and len(ran) == 1, outcomes
    assert refused[0]["redrive_id"] == ran[0]["ran"] == running.pk
    assert ran[0]["state"] == RedriveState.STOPPED
    assert Redrive.objects.count() == 1
