"""What a worker holds: its queues' claim state and each message from claim to settlement.

Shared by the parts of :class:`~queues.worker.runtime.WorkerProcess` (claiming, handling, settling);
every change of a :class:`HeldItem`'s state happens under the process's lock.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Any

from queues.engine.types import Delivery
from queues.worker.outcomes import Nack
from queues.worker.registry import HandlerSpec

# First idle poll delay of an empty queue; it doubles up to the configured poll interval.
MIN_IDLE_POLL = 0.1


class ItemState(enum.Enum):
    """Where a held message is inside this process (not the message's state in the database)."""

    WAITING = "waiting"
    """Claimed, waiting for a free handler."""
    RUNNING = "running"
    """Its handler runs."""
    SETTLING = "settling"
    """Its ack or nack is queued for the settler."""
    ABANDONED = "abandoned"
    """Still running at the end of the shutdown grace: released, its outcome ignored."""
    RELEASED = "released"
    """Given back unstarted (shutdown, or it waited half a lease for a handler)."""
    FINISHED = "finished"
    """Settled, or its lease found lost: no longer held."""


WAITING, RUNNING, SETTLING, ABANDONED, RELEASED, FINISHED = ItemState


@dataclass(eq=False)
class QueueState:
    """What the main thread knows about one queue it claims from (``vt``: the lease length its claims
    use now; the queue's watcher thread updates it when the queue's settings change)."""

    name: str
    weight: int
    spec: HandlerSpec
    id: int
    vt: float
    empty: bool = False
    seen: int = -1  # the listener's wake-up count before the claim that came back short
    poll_at: float = 0.0
    idle_delay: float = MIN_IDLE_POLL
    credit: int = 0  # smooth weighted round robin between queues

    def claimable(self, now: float, seq: int) -> bool:
        """Whether a claim is due: the queue had work, its poll time came, or a NOTIFY arrived (``seq``)."""
        return not self.empty or now >= self.poll_at or seq != self.seen


class HeldItem:
    """One message held by this worker, from its claim until its settlement reached the database."""

    __slots__ = ("delivery", "expires_at", "queue", "renew_at", "started", "state", "task", "thread")

    def __init__(self, delivery: Delivery, queue: QueueState, claimed_at: float, vt: float) -> None:
        self.delivery = delivery
        # This worker looks for cancel requests (Settling._look_for_cancels): no query per check.
        delivery.lease.watched = True
        self.queue = queue
        self.state = WAITING
        # Measured from before the claim statement, so our idea of the lease never outlives the real one.
        self.expires_at = claimed_at + vt
        self.renew_at = claimed_at + vt / 2
        self.started = 0.0
        self.task: Any = None
        self.thread: threading.Thread | None = None


@dataclass
class Failure:
    """A failed attempt waiting for the settler to nack it."""

    item: HeldItem
    nack: Nack
    cancelled: bool = False
    """The handler stopped on a cancel request: the message is deleted as cancelled, not nacked."""
