"""Test support for projects that use mqadmin: run a queue's handlers in the test until it is empty.

    from queues.testing import drain

    @pytest.mark.django_db(transaction=True)
    def test_order_is_paid(client):
        client.post("/orders/", {...})          # the view sends to "orders"
        result = drain("orders")                 # the real worker, in this process, until nothing is ready
        assert result.processed == 1 and result.failed == 0

``drain`` runs the same worker as ``manage.py mq_worker --burst`` (handler threads with their own
database connections), so the messages must be committed: use ``TransactionTestCase`` or
``django_db(transaction=True)``. When it returns, every connection it opened is closed, so the test
database can be dropped at the end of the run. See docs/testing.md.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass

from queues import conf
from queues.worker.config import WorkerConfig
from queues.worker.runtime import WorkerProcess


class DrainError(RuntimeError):
    """``drain`` cannot run here; the message says why and what to do instead."""


@dataclass(frozen=True)
class DrainResult:
    """What a :func:`drain` did."""

    processed: int
    failed: int
    dead_lettered: int


def drain(*queues: str | Iterable[str], concurrency: int = 1, max_seconds: float = 60.0) -> DrainResult:
    """Run the registered handlers of ``queues`` in this process until none of them has ready work.

    Messages whose handler fails are retried after their backoff, so they are still delayed, not ready,
    when ``drain`` returns: ``failed`` counts them. ``max_seconds`` bounds a queue that never empties.
    """
    names = [q for item in queues for q in ([item] if isinstance(item, str) else item)]
    if not names:
        raise DrainError("drain() needs at least one queue name")
    if conf.db().in_atomic_block:
        raise DrainError(
            "drain() runs handlers on worker threads with their own database connections, which cannot see "
            "this test's uncommitted transaction: use TransactionTestCase or @pytest.mark.django_db(transaction=True)"
        )
    worker = WorkerProcess(WorkerConfig(
        queues=[(name, 1) for name in names], concurrency=concurrency, burst=True, max_seconds=max_seconds,
        grace=max_seconds, log_interval=0, prune_interval=0,
    ))
    # The worker installs its SIGTERM/SIGINT handlers in the main thread: give the test runner its own back.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.run()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return DrainResult(processed=worker.processed, failed=worker.failed, dead_lettered=worker.dead_lettered)
