"""A queue's concurrency limit: at most N of its messages in flight at once, however many claim at once.

The race the limit must not have: a claim that waited for another one holds a snapshot older than the
leases that other claim just committed. Counting in-flight messages in that snapshot would see their
slots free. The interleaving tests hold one claim's transaction open while a second claim starts on
another connection, then let the first commit.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

import queues
from tests.conftest import wait_for
from tests.engine.conftest import Thread

# The worker tests' fixtures, for the test with real worker processes.
from tests.worker.conftest import WorkerProcess, handled, scratch, worker_env, wt_dir  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

_IN_FLIGHT = """
SELECT count(*) FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id
WHERE q.name = %s AND m.leased_until > clock_timestamp()
"""


def _in_flight(queue: str) -> int:
    with connection.cursor() as cur:
        cur.execute(_IN_FLIGHT, [queue])
        return cur.fetchone()[0]


def _waiting_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cur.fetchone()
    return row is not None and row[0] == "Lock"


class _BlockedClaim:
    """A receive on another connection, started while this test's transaction holds the queue's limit."""

    def __init__(self, queue: str, max_messages: int) -> None:
        self.pid: int | None = None
        started = threading.Event()

        def claim() -> list[queues.Delivery]:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                self.pid = cur.fetchone()[0]
            started.set()
            return queues.receive(queue, max_messages=max_messages)

        self.thread = Thread(claim, name="second-claim")
        self.thread.start()
        assert started.wait(30)
        wait_for(lambda: _waiting_on_a_lock(self.pid), timeout=10)

    def result(self) -> list[queues.Delivery]:
        return self.thread.outcome(30)


def test_a_claim_that_waited_counts_the_leases_committed_meanwhile(make_queue):
    queue = make_queue(concurrency_limit=3)
    queues.send_batch(queue, list(range(10)))

    with transaction.atomic():
        first = queues.receive(queue, max_messages=2)
        assert len(first) == 2
        # Its statement's snapshot is taken now, before the two leases above commit.
        second = _BlockedClaim(queue, max_messages=10)
    got = second.result()

    assert len(got) == 1, f"the second claim took {len(got)} with 2 of 3 slots taken"
    assert _in_flight(queue) == 3


def test_a_full_limit_gives_nothing_until_a_lease_ends(make_queue):
    queue = make_queue(concurrency_limit=2)
    queues.send_batch(queue, list(range(5)))
    held = queues.receive(queue, max_messages=5)
    assert len(held) == 2
    assert queues.receive(queue, max_messages=5) == []

    queues.ack(held[0].receipt)
    [again] = queues.receive(queue, max_messages=5)
    queues.nack(held[1].receipt, delay=60)
    assert len(queues.receive(queue, max_messages=5)) == 1
    assert queues.receive(queue, max_messages=5) == []
    assert _in_flight(queue) == 2
    assert again.id not in {d.id for d in held}


def test_leases_in_flight_before_the_limit_count_against_it(make_queue):
    queue = make_queue()
    queues.send_batch(queue, list(range(6)))
    assert len(queues.receive(queue, max_messages=2)) == 2
    queues.update_queue(queue, concurrency_limit=3)
    assert len(queues.receive(queue, max_messages=6)) == 1


def test_removing_the_limit_restores_the_plain_claim(make_queue):
    queue = make_queue(concurrency_limit=1)
    queues.send_batch(queue, list(range(4)))
    assert len(queues.receive(queue, max_messages=4)) == 1
    queues.update_queue(queue, concurrency_limit=None)
    assert len(queues.receive(queue, max_messages=4)) == 3


def test_per_group_a_held_group_is_skipped_and_its_new_leases_counted(make_queue):
    queue = make_queue(concurrency_limit=2, limits_per_group=True)
    queues.send_batch(queue, [queues.Outgoing(body=i, group="g" if i < 6 else "h") for i in range(8)])
    assert len(queues.receive(queue, max_messages=1)) == 1  # makes the groups' rows
    with transaction.atomic():
        # Holds the rows of g and h until the commit.
        assert len(queues.receive(queue, max_messages=2)) == 2
        blocked = Thread(lambda: queues.receive(queue, max_messages=10), name="second-claim")
        blocked.start()
        # A claim skips a group whose row another claim holds (it does not wait): it gets nothing now.
        assert blocked.outcome(30) == []
    got = queues.receive(queue, max_messages=10)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT m.group_key, count(*) FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id "
            "WHERE q.name = %s AND m.leased_until > clock_timestamp() GROUP BY 1",
            [queue],
        )
        per_group = dict(cur.fetchall())
    assert per_group == {"g": 2, "h": 2}, (per_group, len(got))


@pytest.mark.slow
def test_three_in_flight_at_most_under_four_workers(make_queue, worker_env, scratch, handled):  # noqa: F811
    """4 worker processes with concurrency 8 each; the table sampled continuously never shows 4 in flight."""
    queues.create_queue("wt-conc", concurrency_limit=3)
    queues.send_batch("wt-conc", [{"sleep": 0.05}] * 400)
    workers = [
        WorkerProcess(("wt-conc", "--concurrency", "8"), worker_env, scratch / f"conc-{i}.log") for i in range(4)
    ]
    try:
        for worker in workers:
            worker.started(timeout=120)  # four Django processes starting at once on a busy machine
        samples: list[int] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            samples.append(_in_flight("wt-conc"))
        done = handled.count("wt-conc")
    finally:
        for worker in workers:
            worker.kill()
    assert max(samples) <= 3, f"{max(samples)} in flight with a limit of 3"
    assert max(samples) == 3, "the limit was never reached: the test did not push against it"
    assert done >= 60, f"only {done} handled in 5 s: the limit throttles more than it should"
    assert len(samples) > 500
