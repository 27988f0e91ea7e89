"""queues.testing: a host's tests run a queue's handlers in-process and leave no connection behind."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

import queues
from queues.engine import notify
from queues.testing import DrainError, drain
from queues.worker import registry


@pytest.fixture
def paid(transactional_db):
    seen: list[int] = []
    queues.create_queue("orders-t")

    def mark_paid(delivery: queues.Delivery) -> None:
        if delivery.body.get("fail"):
            raise RuntimeError("card declined")
        seen.append(delivery.body["order"])

    registry.register("orders-t", mark_paid, backoff=60)
    yield seen
    registry.unregister("orders-t")


def _other_backends() -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cur.fetchone()[0]


def test_drain_runs_the_handlers_until_nothing_is_ready(paid):
    for n in range(5):
        queues.send("orders-t", {"order": n})
    queues.send("orders-t", {"order": 99, "fail": True})

    result = drain("orders-t")

    assert sorted(paid) == [0, 1, 2, 3, 4]
    assert (result.processed, result.failed) == (5, 1)
    [stats] = queues.stats("orders-t")
    assert (stats.ready, stats.delayed, stats.in_flight) == (0, 1, 0)  # the failure waits for its retry


def test_drain_leaves_no_database_connection_open(paid):
    queues.send("orders-t", {"order": 1})
    drain("orders-t")
    assert notify._listener is None
    assert _other_backends() == 0  # so pytest-django can drop the test database at the end


def test_drain_inside_a_transaction_says_what_to_do(paid):
    with transaction.atomic(), pytest.raises(DrainError, match=r"django_db\(transaction=True\)"):
        drain("orders-t")


def test_a_burst_worker_run_from_a_test_leaves_no_connection_open(paid):
    from django.core.management import call_command

    queues.send("orders-t", {"order": 2})
    call_command("mq_worker", "orders-t", "--burst", "--log-interval", "0")
    assert paid == [2]
    assert _other_backends() == 0
