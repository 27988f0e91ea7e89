"""Exceptions of the worker runtime that handlers and callers may see."""

from __future__ import annotations


class Reject(Exception):
    """Raise from a handler to dead-letter the message at once, with this reason on record.

    For a message that can never succeed (a body the handler cannot make sense of, a reference to
    something that no longer exists): retrying it would only use up receives and delay the queue.
    """


class WorkerConfigError(ValueError):
    """A worker cannot start as configured (unknown queue, no handler, bad option); the message says
    what to fix. ``mq_worker`` shows it as a one-line error."""
