"""Values that the engine's API takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JSONText(str):
    """A message body given as JSON text, stored and delivered exactly as written.

    ``queues.send("orders", JSONText('{"order_id": 42, "total": 9.50}'))``: the text is checked
    (valid JSON, no ``NaN``/``Infinity``, no NUL or lone surrogates) but not re-encoded, so key order,
    duplicate keys, spacing and number spelling reach the consumer as sent (``Delivery.body_text``),
    as a webhook signature over the bytes needs. ``Delivery.body`` is its parsed value.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for :func:`queues.send_batch` when it needs more than a body."""

    body: Any
    headers: dict[str, str] | None = None
    delay: float | None = None
    priority: int = 0
    group: str | None = None
    dedup_id: str | None = None


class LeaseStatus:
    """What the worker found out about a delivery's lease while its handler runs."""

    __slots__ = ("lost",)

    def __init__(self) -> None:
        self.lost = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """One lease of one message to one consumer. ``receipt`` is the only proof of the lease.

    ``lease_lost`` turns True when the worker running the handler found the lease gone (it ran out,
    or an operator moved or deleted the message): the message may be with another consumer now and
    this handler's outcome will not be recorded, so a long handler can check it and stop early.
    """

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
    body_text: str = field(default="", repr=False)
    """The body's JSON text exactly as stored: as sent for a ``JSONText``, else the engine's compact
    encoding of what was sent (key order kept)."""
    lease: LeaseStatus = field(default_factory=LeaseStatus, repr=False, compare=False)

    @property
    def lease_lost(self) -> bool:
        """True once the worker found this delivery's lease gone (see the class docstring)."""
        return self.lease.lost


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
    body_text: str = field(default="", repr=False)
    """The body's JSON text exactly as stored (see ``Delivery.body_text``)."""


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
