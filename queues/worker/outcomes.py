"""What a handler's outcome means for its message: pure functions, no database, no threads.

A failed attempt is nacked with a :class:`Nack`: the error on record (:func:`describe_error`), the
backoff before the next attempt (:func:`retry_delay`), or the dead-letter queue at once
(:func:`decide_nack`), or after the handler's own delay (:class:`~queues.worker.errors.Retry`). A
delivery that came back more often than its handler allows is dead-lettered
without running (:func:`past_retries`); a handler past its timeout fails with :func:`timeout_error`.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass

from queues.engine.text import safe_text

# The engine's public limit; it moves to queues.engine.validation with the engine's split.
from queues.engine.validation import MAX_DELAY
from queues.worker.errors import Reject, Retry
from queues.worker.registry import HandlerSpec

# Stored errors keep the summary line and the last frames of the traceback.
ERROR_TRACEBACK_FRAMES = 8
ERROR_MAX_CHARS = 4000


class RetriesUsedUp(Exception):
    """Recorded on a message dead-lettered because it came back after its handler's last retry."""


@dataclass(frozen=True)
class Nack:
    """How one failed attempt is recorded: the error text, the delay before the next attempt, or the
    dead-letter queue now (then ``delay`` is 0)."""

    error: str
    delay: float
    dead_letter: bool


def describe_error(exc: BaseException) -> str:
    """What a nack records: ``ExceptionClass: message`` then the last frames of the traceback."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    text = str(exc)
    head = f"{name}: {text}" if text else name
    frames = "".join(traceback.format_exception(exc, limit=-ERROR_TRACEBACK_FRAMES)).rstrip()
    out = f"{head}\n{frames}" if frames else head
    if len(out) > ERROR_MAX_CHARS:
        keep = ERROR_MAX_CHARS - 200
        out = f"{out[:150]}\n[... traceback trimmed ...]\n{out[-keep:]}"
    # A NUL or a lone surrogate in an exception's text must not cost the message its record.
    return safe_text(out)


def retry_delay(spec: HandlerSpec, receive_count: int) -> float:
    """Exponential backoff with jitter: ``backoff * 2**(attempt-1)``, capped, then a random 50-100% of it.

    The jitter spreads retries of messages that failed together (a dependency down), so they do
    not all come back in the same instant.
    """
    exponent = min(max(receive_count - 1, 0), 40)
    ceiling = min(spec.max_backoff, spec.backoff * (2**exponent))
    return min(random.uniform(ceiling / 2, ceiling), MAX_DELAY)


def decide_nack(
    spec: HandlerSpec,
    receive_count: int,
    exc: BaseException,
    *,
    reason: str | None = None,
    dead_letter: bool = False,
) -> Nack:
    """The nack of a failed attempt: dead-lettered now for a :class:`Reject`, when the caller says so (a
    body that cannot be decoded), or when the handler's ``retries`` are used up; else retried after
    :func:`retry_delay`. ``reason`` goes in front of the error text."""
    error = describe_error(exc)
    if reason:
        error = f"{reason}: {error}"
    if isinstance(exc, Reject):
        dead_letter = True
    if spec.retries is not None and receive_count >= spec.retries:
        dead_letter = True
    if dead_letter:
        return Nack(error, 0.0, True)
    # The handler chose its next attempt (Retry): its delay, not the backoff.
    delay = exc.delay if isinstance(exc, Retry) else retry_delay(spec, receive_count)
    return Nack(error, delay, False)


def past_retries(spec: HandlerSpec, receive_count: int) -> RetriesUsedUp | None:
    """The error to dead-letter with, without running the handler, when a delivery was received more
    often than its handler's ``retries`` allow (an earlier attempt's outcome was never recorded: its
    nack failed, its lease or its worker was lost; running it again would silently ignore the limit);
    None when it may run."""
    if spec.retries is None or receive_count <= spec.retries:
        return None
    return RetriesUsedUp(
        f"received {receive_count} times, more than the handler's retries ({spec.retries}): an "
        "earlier attempt's outcome was not recorded (a failed nack, a lost lease or worker); not run again"
    )


def timeout_error(spec: HandlerSpec) -> TimeoutError:
    """The error a handler that ran past its ``timeout`` is nacked with."""
    return TimeoutError(f"handler {spec.name} ran longer than its timeout of {spec.timeout:g}s and was abandoned")
