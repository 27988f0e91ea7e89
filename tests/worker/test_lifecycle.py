"""A worker's life: graceful and forced shutdown, recycling limits, burst mode, and other workers
releasing the leases of one that died."""

from __future__ import annotations

import signal

import pytest
from django.db import connection

import queues
from tests.conftest import wait_for
from tests.worker.conftest import wait_exit, worker_row

pytestmark = pytest.mark.django_db(transaction=True)


def states(queue: str) -> dict[int, tuple[str, int]]:
    """Each message's state and receive count."""
    return {m.id: (m.state, m.receive_count) for m in queues.peek(queue, limit=1000)}


def test_sigterm_finishes_the_running_handler_and_releases_the_rest(make_queue, handled, start_worker, wt_dir):
    make_queue("wt-record", visibility_timeout=60)
    ids = queues.send_batch("wt-record", [{"mark": True, "sleep": 1.5} for _ in range(5)])
    worker = start_worker("wt-record", "--concurrency", "1", "--prefetch", "5")
    wait_for(lambda: len(list(wt_dir.glob("started-*"))) == 1, timeout=20)
    worker.send_signal(signal.SIGTERM)
    code, took = wait_exit(worker, timeout=15)
    assert code == 0 and took < 10, worker.output()
    [first] = [i for i in ids if (wt_dir / f"started-{i}").exists()]
    assert handled.times(first) == 1, "the running handler finishes within the grace period"
    rest = states("wt-record")
    # The others never started: ready at once for other workers, their receive given back.
    assert rest == {i: ("ready", 0) for i in ids if i != first}
    assert "event=stopping" in worker.output() and "reason=signal:SIGTERM" in worker.output()
    row = worker_row(worker.pid)
    assert (row.state, row.in_flight, row.processed) == ("stopped", 0, 1)


def test_handler_still_running_at_the_grace_deadline_is_released(make_queue, handled, start_worker, wt_dir):
    make_queue("wt-record", visibility_timeout=60)
    message = queues.send("wt-record", {"mark": True, "sleep": 30})
    worker = start_worker("wt-record", "--grace", "0.5")
    wait_for(lambda: (wt_dir / f"started-{message}").exists(), timeout=20)
    worker.send_signal(signal.SIGINT)
    code, took = wait_exit(worker, timeout=10)
    assert code == 0 and took < 8, worker.output()
    assert states("wt-record") == {message: ("ready", 1)}
    assert handled.times(message) == 0
    assert "event=grace_expired" in worker.output()


def test_second_signal_exits_at_once_and_leaves_the_lease(make_queue, handled, start_worker, wt_dir):
    make_queue("wt-record", visibility_timeout=60)
    message = queues.send("wt-record", {"mark": True, "sleep": 30})
    worker = start_worker("wt-record", "--grace", "60")
    wait_for(lambda: (wt_dir / f"started-{message}").exists(), timeout=20)
    worker.send_signal(signal.SIGTERM)
    worker.wait_for_log("event=stopping")
    worker.send_signal(signal.SIGTERM)
    code, took = wait_exit(worker, timeout=10)
    assert code == 1 and took < 5
    assert "exiting now" in worker.output()
    assert states("wt-record") == {message: ("in_flight", 1)}, "forced exit: the lease expires on its own"


def test_max_messages_exits_cleanly_after_exactly_that_many(make_queue, handled, start_worker):
    make_queue("wt-record")
    queues.send_batch("wt-record", [{"n": i} for i in range(30)])
    worker = start_worker("wt-record", "--max-messages", "10", "--prefetch", "4")
    code, _ = wait_exit(worker, timeout=30)
    assert code == 0
    assert handled.count() == 10
    assert queues.queue_stats("wt-record").depth == 20
    assert "reason=max-messages" in worker.output()


def test_max_seconds_exits_cleanly(make_queue, start_worker):
    make_queue("wt-record")
    worker = start_worker("wt-record", "--max-seconds", "1")
    code, took = wait_exit(worker, timeout=15)
    assert code == 0 and took < 10
    assert "reason=max-seconds" in worker.output()


def test_burst_drains_then_exits(make_queue, handled, start_worker):
    make_queue("wt-record")
    make_queue("wt-a")
    queues.send_batch("wt-record", [{"n": i} for i in range(120)])
    queues.send_batch("wt-a", [{"n": i} for i in range(30)])
    worker = start_worker("wt-record", "wt-a", "--burst", wait=False)
    code, _ = wait_exit(worker, timeout=30)
    assert code == 0, worker.output()
    assert handled.count() == 150
    assert queues.queue_stats("wt-record").depth == queues.queue_stats("wt-a").depth == 0


def test_leases_of_a_dead_worker_are_released_by_another(make_queue, handled, start_worker):
    # Leases of 120 s: only the dead worker's release (WORKER_DEAD_AFTER = 3 s) explains a quick retry.
    make_queue("wt-record", visibility_timeout=120)
    ids = queues.send_batch("wt-record", [{"sleep_first": 120} for _ in range(4)])
    doomed = start_worker("wt-record", "--concurrency", "2", "--prefetch", "4")
    wait_for(lambda: (r := worker_row(doomed.pid)) and len(r.held_receipts) == 4, timeout=20)
    doomed.kill()
    # A message redelivered meanwhile has a new receipt: the dead worker's stale one must not touch it.
    with connection.cursor() as cur:
        cur.execute("UPDATE queues_message SET leased_until = now() WHERE id = %s", [ids[0]])
    [taken] = queues.receive("wt-record", visibility_timeout=120)
    assert taken.id == ids[0]
    rescuer = start_worker("wt-record")
    wait_for(lambda: all(handled.times(i) == 1 for i in ids[1:]), timeout=30)
    # The handler records before the worker acks: wait for the acks to commit too.
    wait_for(lambda: states("wt-record") == {ids[0]: ("in_flight", 2)}, timeout=10)
    assert all(handled.times(i) == 1 for i in ids[1:])
    assert worker_row(doomed.pid).state == "dead"
    assert "released=3" in rescuer.wait_for_log("event=worker_dead", timeout=10)
    queues.ack(taken.receipt)
