"""The fleet of worker processes as the database sees it: one heartbeat row per process.

A worker registers its row (:func:`register`), beats it every ``HEARTBEAT_INTERVAL`` with its counts and
the receipts of the leases it holds (:func:`beat`), and marks it stopped on the way out. Upkeep
(:mod:`queues.upkeep`) runs the two jobs kept here: :func:`reap_dead_workers` marks workers silent for
``WORKER_DEAD_AFTER`` dead and releases the leases they still held, and :func:`delete_old_rows` removes
stopped and dead rows after a day, folding their handler-duration histograms into the totals first.

Time is the database's: beats are written with ``now()`` and compared with it, so workers on several
machines never disagree about who went silent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models.functions import Now
from django.utils import timezone

from queues import conf, engine
from queues.metrics.durations import fold_and_delete
from queues.models import Worker as WorkerRow
from queues.models import WorkerState

log = logging.getLogger("queues.worker")

WORKER_ROW_RETENTION = timedelta(days=1)
"""Stopped and dead heartbeat rows are deleted after this long (the dashboard shows recent ones)."""


def register(name: str, *, queues: Sequence[str], concurrency: int) -> int:
    """Create the heartbeat row of a starting worker; return its id."""
    row = WorkerRow.objects.create(
        name=name[:200],
        host=socket.gethostname()[:255],
        pid=os.getpid(),
        queues=list(queues),
        concurrency=concurrency,
        started_at=timezone.now(),
        last_beat_at=timezone.now(),
    )
    # The database's clock is the only one all workers share: beats are compared with it.
    WorkerRow.objects.filter(pk=row.pk).update(started_at=Now(), last_beat_at=Now())
    return row.pk


def beat(
    row_id: int,
    *,
    state: WorkerState,
    processed: int,
    failed: int,
    held_receipts: Sequence[str],
    handler_durations: Any,
) -> bool:
    """Write one heartbeat: the counts, the receipts of the leases held (released by whoever finds this
    worker dead), and the handler-duration histograms. A ``STOPPED`` beat is the last: it holds nothing.

    Returns True when an operator has asked this worker to stop (:func:`request_stop`)."""
    fields: dict[str, Any] = {
        "last_beat_at": Now(),
        "processed": processed,
        "failed": failed,
        "state": state,
        "in_flight": len(held_receipts),
        "held_receipts": list(held_receipts),
        "handler_durations": handler_durations,
    }
    if state == WorkerState.STOPPED:
        fields.update(stopped_at=Now(), in_flight=0, held_receipts=[])
    WorkerRow.objects.filter(pk=row_id).update(**fields)
    return WorkerRow.objects.filter(pk=row_id, stop_requested_at__isnull=False).exists()


def request_stop(row_id: int) -> bool:
    """Ask the worker of heartbeat row ``row_id`` to stop: it reads the flag on its next beat, stops claiming,
    finishes the messages it holds and exits. False when the worker is not running (stopped, dead, unknown)."""
    running = WorkerRow.objects.filter(pk=row_id, state__in=[WorkerState.LIVE, WorkerState.STOPPING])
    running.filter(stop_requested_at__isnull=True).update(stop_requested_at=Now())  # the first request's time stays
    return running.exists()


@dataclass(frozen=True)
class Reaped:
    """What :func:`reap_dead_workers` did."""

    workers: int
    """Workers marked dead."""
    released: int
    """Leases of theirs given back (those not redelivered to someone else meanwhile)."""


def reap_dead_workers(*, dead_after: float | None = None) -> Reaped:
    """Mark workers silent for ``dead_after`` seconds (default ``WORKER_DEAD_AFTER``) dead and release the
    leases they still held, so their messages come back now rather than when each lease runs out.

    Their heartbeat stored receipts, not ids, so only leases the dead worker still holds are released:
    a message that was redelivered since has a new receipt and is left alone. Rows are locked with
    ``SKIP LOCKED``, so two reapers never release the same worker's leases.
    """
    seconds = float(conf.get("WORKER_DEAD_AFTER") if dead_after is None else dead_after)
    cutoff = Now() - timedelta(seconds=seconds)
    workers = released = 0
    with conf.atomic():
        dead = list(
            WorkerRow.objects.select_for_update(skip_locked=True).filter(
                state__in=[WorkerState.LIVE, WorkerState.STOPPING], last_beat_at__lt=cutoff
            )
        )
        for row in dead:
            receipts = [r for r in row.held_receipts if isinstance(r, str) and ":" in r]
            stale = engine.release_batch(receipts) if receipts else []
            WorkerRow.objects.filter(pk=row.pk).update(state=WorkerState.DEAD, stopped_at=Now(), in_flight=0)
            workers += 1
            released += len(receipts) - len(stale)
            log.warning(
                "event=worker_dead worker=%s released=%d note=silent for over %gs",
                row.name,
                len(receipts) - len(stale),
                seconds,
            )
    return Reaped(workers=workers, released=released)


def delete_old_rows(*, older_than: timedelta = WORKER_ROW_RETENTION) -> int:
    """Delete stopped and dead rows whose last beat is older than ``older_than``; return how many went.

    Their duration histograms are folded into the totals first, so ``/metrics``' sums never shrink.
    """
    return fold_and_delete(
        list(
            WorkerRow.objects.filter(
                state__in=[WorkerState.STOPPED, WorkerState.DEAD],
                last_beat_at__lt=Now() - older_than,
            ).values_list("pk", flat=True)
        )
    )
