"""Values that the engine's API takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from queues.engine.errors import Cancelled


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
    ttl: float | None = None
    """Seconds the message may wait once available before it expires (default: the queue's)."""


class LeaseStatus:
    """What the worker found out about a delivery's lease while its handler runs."""

    __slots__ = ("cancel_requested", "lost", "watched")

    def __init__(self) -> None:
        self.lost = False
        # Set by the worker's periodic look (queues.engine.cancel.requested_among) when an operator
        # asked to cancel the message; ``watched``: a worker looks, so on-demand checks need no query.
        self.cancel_requested = False
        self.watched = False


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
    expires_at: datetime | None = None
    """When the message's time to live runs out (None: never); a claim never hands out one past it."""
    lease: LeaseStatus = field(default_factory=LeaseStatus, repr=False, compare=False)

    @property
    def lease_lost(self) -> bool:
        """True once the worker found this delivery's lease gone (see the class docstring)."""
        return self.lease.lost

    @property
    def cancel_requested(self) -> bool:
        """True once an operator asked to cancel this message in flight (a worker looks every second;
        without a worker, :meth:`check_cancelled` asks the database)."""
        return self.lease.cancel_requested

    def check_cancelled(self) -> None:
        """Raise :class:`~queues.engine.errors.Cancelled` if cancelling this message was requested.

        Under ``mq_worker`` it reads what the worker's periodic look found (no query); a consumer of
        its own (``queues.receive``) gets one primary-key query per call. A handler that lets the
        exception propagate ends the message as cancelled (deleted, not retried).
        """
        if not self.lease.cancel_requested and not self.lease.watched:
            # deferred: engine.cancel imports this module (its statements return Delivery ids)
            from queues.engine.cancel import requested_among

            self.lease.cancel_requested = bool(requested_among([self.id]))
        if self.lease.cancel_requested:
            raise Cancelled(f"message {self.id} of queue {self.queue!r} was cancelled by an operator")


# A claim builds one Delivery per message. The frozen dataclass's __init__ sets each of its 14 fields
# through object.__setattr__ (2.6 µs a Delivery, measured); setting the slots through their own
# descriptors is 1.1 µs. The result is the same object: the class, its fields and its frozenness are
# Delivery's own. Only the engine's claim uses it; everyone else calls Delivery(...).
# What delivery_of sets, in order (a test keeps it in step with the class's fields):
DELIVERY_OF_FIELDS = (
    "id", "queue", "body", "headers", "priority", "group", "receive_count",
    "enqueued_at", "lease_expires_at", "receipt", "last_error", "body_text", "expires_at", "lease",
)
(
    _set_id, _set_queue, _set_body, _set_headers, _set_priority, _set_group, _set_receive_count,
    _set_enqueued_at, _set_lease_expires_at, _set_receipt, _set_last_error, _set_body_text, _set_expires_at, _set_lease,
) = (Delivery.__dict__[name].__set__ for name in DELIVERY_OF_FIELDS)
_new = object.__new__


def delivery_of(
    id: int, queue: str, body: Any, headers: dict[str, str], priority: int, group: str | None,
    receive_count: int, enqueued_at: datetime, lease_expires_at: datetime, receipt: str, last_error: str,
    body_text: str, expires_at: datetime | None,
) -> Delivery:
    """``Delivery(...)`` with every field given (a new :class:`LeaseStatus`), without its __init__."""
    d = _new(Delivery)
    _set_id(d, id)
    _set_queue(d, queue)
    _set_body(d, body)
    _set_headers(d, headers)
    _set_priority(d, priority)
    _set_group(d, group)
    _set_receive_count(d, receive_count)
    _set_enqueued_at(d, enqueued_at)
    _set_lease_expires_at(d, lease_expires_at)
    _set_receipt(d, receipt)
    _set_last_error(d, last_error)
    _set_body_text(d, body_text)
    _set_expires_at(d, expires_at)
    _set_lease(d, LeaseStatus())
    return d


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
