"""What each worker is busy with, for the workers page (Sidekiq's "Busy"): the messages it holds and
how full its slots are.

A worker's heartbeat row lists the receipts of the leases it holds (``held_receipts``, ``id:token``),
so the messages are read from that list by primary key: one query for the whole page, never a scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from queues.models import Message
from queues.selectors import WorkerRow

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
