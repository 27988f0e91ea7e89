"""Exceptions of the worker runtime that handlers and callers may see."""

from __future__ import annotations

from datetime import timedelta

from queues.engine.validation import check_delay


class Reject(Exception):
    """Raise from a handler to dead-letter the message at once, with this reason on record.

    For a message that can never succeed (a body the handler cannot make sense of, a reference to
    something that no longer exists): retrying it would only use up receives and delay the queue.
    """


class Retry(Exception):
    """Raise from a handler to try the message again after ``delay`` (seconds or a ``timedelta``, up to
    15 days), instead of the handler's backoff: a nack with that delay and ``reason`` on record.

    The attempt used one receive, as any attempt does, and nothing more: the message is delayed, not
    received again, until the delay passes. The handler's ``retries`` and the queue's max receives still
    count it, so a message that keeps asking for a retry ends in the dead-letter queue like any other.
    A bad ``delay`` raises ``ValueError`` here (the attempt then fails with that error and the usual backoff).
    """

    def __init__(self, delay: float | timedelta, reason: str = "") -> None:
        seconds = check_delay(delay)
        if seconds is None:
            raise ValueError("Retry needs a delay: seconds or a timedelta, for example Retry(delay=30)")
        self.delay = seconds
        self.reason = reason
        super().__init__(f"retry in {seconds:g}s" + (f": {reason}" if reason else ""))


class WorkerConfigError(ValueError):
    """A worker cannot start as configured (unknown queue, no handler, bad option); the message says
    what to fix. ``mq_worker`` shows it as a one-line error."""
