"""Cancellation under a real worker: a cancelled waiting message is never handled; a cancel request
reaches the running handler, which stops, and the message ends as cancelled (not retried)."""

from __future__ import annotations

import pytest

import queues
from queues.engine.cancel import cancel
from queues.engine.expiry import flow_totals
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_waiting_messages_cancelled_never_run_and_a_running_one_stops(make_queue, handled, start_worker, wt_dir):
    make_queue("wt-cancel")
    running = queues.send("wt-cancel", {"wait_cancel": True})
    worker = start_worker("wt-cancel", "--concurrency", "1")
    worker.wait_until(lambda: (wt_dir / f"started-{running}").exists())
    # The only handler is busy: these wait (one ready, one delayed) until cancelled.
    ready = queues.send("wt-cancel", {"n": 1})
    delayed = queues.send("wt-cancel", {"n": 2}, delay=1)
    result = cancel("wt-cancel", [ready, delayed, running, 10**12])
    # The worker may hold the ready one already, waiting for its busy handler: in flight, asked too.
    assert delayed in result.cancelled and running in result.requested and result.missing == [10**12]
    assert sorted(result.cancelled + result.requested) == sorted([ready, delayed, running])
    # The request reaches the handler (the worker looks every second); it stops, and is not retried.
    worker.wait_until(lambda: (wt_dir / f"cancelled-{running}").exists(), timeout=10)
    worker.wait_until(lambda: queues.queue_stats("wt-cancel").depth == 0, timeout=10)
    assert "event=cancelled" in worker.wait_for_log("event=cancelled")
    # The worker goes on with the next message; the cancelled ones never ran.
    after = queues.send("wt-cancel", {"n": 3})
    wait_for(lambda: handled.times(after) == 1, timeout=10)
    assert (handled.times(ready), handled.times(delayed), handled.times(running)) == (0, 0, 1)
    assert flow_totals(["wt-cancel"])["wt-cancel"].cancelled == 3
    stats = queues.queue_stats("wt-cancel")
    assert (stats.failed_total, stats.dead) == (0, 0)
