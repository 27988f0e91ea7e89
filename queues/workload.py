"""The workers as the pages show them: their heartbeat rows and state (``live``, ``stale``, ...), and
what each is busy with (Sidekiq's "Busy"): the messages it holds and how full its slots are.

A worker's heartbeat row lists the receipts of the leases it holds (``held_receipts``, ``id:token``),
so the messages are read from that list by primary key: one query for the whole page, never a scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from queues import conf
from queues.models import Message, Worker, WorkerState

# -- heartbeat rows ----------------------------------------------------------------------------------------


def _stale_after() -> timedelta:
    return timedelta(seconds=conf.worker_stale_after())


@dataclass
class WorkerRow:
    """A worker's heartbeat row and the state the dashboard shows (``stale``: live but silent)."""

    worker: Worker
    status: str
    beat_age: float
    """Seconds since the last heartbeat."""


def worker_status(worker: Worker, now: datetime) -> str:
    """``live``, ``stale`` (no beat for more than two heartbeat intervals), ``stopping``, ``stopped`` or ``dead``."""
    if worker.state in (WorkerState.LIVE, WorkerState.STOPPING) and now - worker.last_beat_at > _stale_after():
        return "stale"
    return worker.state


def list_workers(*, queue: str | None = None, active_only: bool = False, finished_limit: int = 100) -> list[WorkerRow]:
    """Workers: every running one (live, stale, stopping), then the latest stopped or dead ones."""
    now = timezone.now()
    base = Worker.objects.all()
    if queue is not None:
        base = base.filter(queues__contains=[queue])
    running = list(base.filter(state__in=[WorkerState.LIVE, WorkerState.STOPPING]).order_by("host", "pid"))
    finished: list[Worker] = []
    if not active_only:
        finished = list(
            base.filter(state__in=[WorkerState.STOPPED, WorkerState.DEAD]).order_by("-last_beat_at")[:finished_limit]
        )
    return [
        WorkerRow(worker=w, status=worker_status(w, now), beat_age=(now - w.last_beat_at).total_seconds())
        for w in running + finished
    ]



BUSY_SHOWN = 20
"""Most held messages listed per worker; the rest are counted."""


@dataclass(frozen=True)
class HeldMessage:
    """One message a worker holds: its id and queue."""

    id: int
    queue: str


@dataclass
class WorkerLoad:
    """A worker row with what it holds and its utilisation."""

    row: WorkerRow
    held: list[HeldMessage] = field(default_factory=list)
    """Up to ``BUSY_SHOWN`` of the messages it holds, by id."""
    held_count: int = 0
    """How many leases it holds (from its last beat)."""
    utilisation: float | None = None
    """Busy slots over concurrency, 0 to 1; None for a worker that is not running."""
    stop_requested: bool = False


def message_id_of(receipt: object) -> int | None:
    """The message id of a receipt ``id:token``, or None for anything else."""
    if not isinstance(receipt, str):
        return None
    head, sep, _ = receipt.partition(":")
    return int(head) if sep and head.isascii() and head.isdigit() else None


def with_load(rows: Sequence[WorkerRow]) -> list[WorkerLoad]:
    """The rows with the messages each running worker holds (read by id, in one query) and its utilisation."""
    running = {"live", "stale", "stopping"}
    wanted: dict[int, list[int]] = {}
    for r in rows:
        if r.status in running:
            ids = [i for i in map(message_id_of, r.worker.held_receipts or []) if i is not None]
            wanted[r.worker.pk] = sorted(ids)
    all_ids = [i for ids in wanted.values() for i in ids[:BUSY_SHOWN]]
    # A message acked since the last beat is simply not found: the list is as fresh as the beat.
    queue_of = dict(Message.objects.filter(id__in=all_ids).values_list("id", "queue__name")) if all_ids else {}
    out = []
    for r in rows:
        ids = wanted.get(r.worker.pk)
        if ids is None:
            out.append(WorkerLoad(row=r, stop_requested=r.worker.stop_requested_at is not None))
            continue
        held = [HeldMessage(id=i, queue=queue_of[i]) for i in ids[:BUSY_SHOWN] if i in queue_of]
        busy = max(len(ids), r.worker.in_flight)
        out.append(WorkerLoad(
            row=r, held=held, held_count=busy,
            utilisation=min(1.0, busy / r.worker.concurrency) if r.worker.concurrency else None,
            stop_requested=r.worker.stop_requested_at is not None,
        ))
    return out
