"""Values that the engine's API takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for :func:`queues.send_batch` when it needs more than a body."""

    body: Any
    headers: dict[str, str] | None = None
    delay: float | None = None
    priority: int = 0
    group: str | None = None
    dedup_id: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One lease of one message to one consumer. ``receipt`` is the only proof of the lease."""

    id: int
    queue: str
    body: Any
    headers: dict[str, str]
    priority: int
    group: str | None
    receive_count: int
    enqueued_at: datetime
    lease_expires_at: datetime
    receipt: str
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """A message as seen by :func:`queues.peek`, without touching its delivery state."""

    id: int
    queue: str
    state: str
    body: Any
    headers: dict[str, str]
    priority: int
    group: str | None
    dedup_id: str | None
    receive_count: int
    enqueued_at: datetime
    available_at: datetime
    last_error: str
    history: list[dict[str, Any]]
    origin_queue: str | None
    dead_at: datetime | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Live counts of one queue, exact at the moment of reading.

    ``dead`` is the number of messages waiting in this queue's dead-letter queue.
    ``oldest_ready_age`` is how long the longest-waiting ready message has been ready (seconds).
    """

    queue: str
    kind: str
    paused: bool
    ready: int
    delayed: int
    in_flight: int
    dead: int
    depth: int
    oldest_ready_age: float | None
    sent_total: int
    acked_total: int
    failed_total: int
    dead_lettered_total: int
    is_dead_letter_queue: bool = False


@dataclass(frozen=True, slots=True)
class AckResult:
    """What :func:`queues.ack_batch` did: receipts acked and receipts refused as stale."""

    acked: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What :func:`queues.prune` removed."""

    expired_messages: int
    expired_dedup_ids: int
