"""Exceptions of the engine's Python API.

Every one but :class:`DatabaseUnavailable` and :class:`Cancelled` (a handler's signal to stop) is a
``ValueError`` (bad input) or a ``LookupError`` (unknown name) as well as an :class:`MQError`, and its
message names the offending value and how to fix it. Nothing has been written when one is raised.
"""

from __future__ import annotations

from django.db import OperationalError


class MQError(Exception):
    """Base class of mqadmin's errors."""


class InvalidQueueName(MQError, ValueError):
    """A queue or topic name breaks the naming rule (1–80 of ``a-z 0-9 . _ -``, starting alnum)."""


class InvalidQueueSettings(MQError, ValueError):
    """A queue setting is out of range or of the wrong type."""


class QueueNotFound(MQError, ValueError, LookupError):
    """No queue of that name exists."""


class QueueExists(MQError, ValueError):
    """A queue of that name exists already."""


class TopicNotFound(MQError, ValueError, LookupError):
    """No topic of that name exists."""


class InvalidMessage(MQError, ValueError):
    """A message's body, headers, priority, delay, group or dedup id is not acceptable."""


class MessageTooLarge(InvalidMessage):
    """The encoded body and headers exceed the queue's max message size."""


class InvalidReceipt(MQError, ValueError):
    """A receipt is malformed, or its lease has run out (the message may be with someone else now)."""


class LeaseExpired(InvalidReceipt):
    """The receipt's lease ran out or was replaced by a newer delivery; nothing was changed."""


class InvalidRedrive(MQError, ValueError):
    """A redrive cannot start as asked: its target, rate or limit is not acceptable."""


class RedriveRunning(InvalidRedrive):
    """A redrive of that dead-letter queue is running already (its id is ``redrive_id``): stop it or wait."""

    def __init__(self, message: str, *, redrive_id: int | None = None) -> None:
        super().__init__(message)
        self.redrive_id = redrive_id


class QueueFull(MQError, ValueError):
    """A send to a queue at its ``max_length`` with ``overflow="reject"`` (or one that no drop of the
    oldest waiting messages could make room for): nothing was written. Retry later, or raise the limit."""


class Cancelled(MQError):
    """Raised by :meth:`Delivery.check_cancelled` once an operator asked to cancel the message in flight.

    Not a ``ValueError``: a handler lets it propagate (or raises it itself) to stop; the worker then
    deletes the message as cancelled, never retried. See docs/flow-control.md, "Cancellation".
    """


class DatabaseUnavailable(MQError, OperationalError):
    """The connection to the database was lost and one reconnection failed too (the server is down or
    unreachable). Nothing was stored by the failed attempt unless it committed just as the connection
    broke: retry later, with the same ``dedup_id``, and a send that did get through is not stored twice."""


__all__ = [
    "Cancelled", "DatabaseUnavailable", "InvalidMessage", "InvalidQueueName", "InvalidQueueSettings", "InvalidReceipt",
    "InvalidRedrive", "LeaseExpired", "MQError", "MessageTooLarge", "QueueExists", "QueueFull", "QueueNotFound",
    "RedriveRunning",
    "TopicNotFound",
]
