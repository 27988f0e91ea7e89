"""How the worker's threads live with their database connections and with outages.

Each thread of a worker has its own Django connection. :class:`ConnectionCare` drops a stale or broken
one before the next statement; :class:`Outage` tells "the database cannot be reached" (wait, retry with
backoff, log once when it starts and once when it ends) from "the database refused this statement"
(:func:`is_outage`). The schedules' scheduler (``queues.schedules.run_scheduler``), which web processes run
too, logs its outages with the same :class:`Outage` under its own logger.
"""

from __future__ import annotations

import logging
import time

from django.db import InterfaceError, OperationalError, close_old_connections

log = logging.getLogger("queues.worker")

# Backoff while the database is unreachable: it doubles from the first to the last value.
DB_RETRY_MIN, DB_RETRY_MAX = 0.25, 5.0


class ConnectionCare:
    """Per-thread: ``close_old_connections()`` at most once a second, and at once after an error.

    Calling it more often would cost a health-check round trip per call (CONN_HEALTH_CHECKS); after
    a database error it is what drops a broken connection, so the next query reconnects.
    """

    def __init__(self) -> None:
        self._next = 0.0

    def __call__(self, *, after_error: bool = False) -> None:
        now = time.monotonic()
        if after_error or now >= self._next:
            close_old_connections()
            self._next = now + 1.0


def is_outage(exc: BaseException) -> bool:
    """Whether a database error means "the database cannot be reached" (wait and retry with backoff)
    rather than "the database refused this statement" (bad data, a constraint: the same statement would
    fail the same way, so the worker records what it can and keeps going)."""
    return isinstance(exc, (OperationalError, InterfaceError))


def one_line(exc: BaseException) -> str:
    """``ExceptionClass: first line of its text``, for a log line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Outage:
    """Logs a database outage once when it starts and once when it ends, per place, not per attempt.

    A refused statement is not an outage: it is logged as ``event=db_refused`` every time and does not
    start the reconnect backoff.
    """

    def __init__(self, where: str, *, logger: logging.Logger = log) -> None:
        self.where = where
        self.log = logger
        self.down_since: float | None = None
        self.delay = DB_RETRY_MIN

    def failed(self, exc: BaseException) -> float:
        """Record a failure; return how long to wait before the next attempt."""
        if not is_outage(exc):
            self.log.error(
                "event=db_refused where=%s error=%s note=the database refused a statement; not an outage",
                self.where,
                one_line(exc),
            )
            return DB_RETRY_MAX
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.log.warning("event=db_unavailable where=%s error=%s", self.where, one_line(exc))
            self.delay = DB_RETRY_MIN
        else:
            self.delay = min(self.delay * 2, DB_RETRY_MAX)
        return self.delay

    def ok(self) -> None:
        """Record a success (logs the recovery if there was an outage)."""
        if self.down_since is not None:
            down_for = time.monotonic() - self.down_since
            self.log.warning("event=db_available where=%s down_for=%.1fs", self.where, down_for)
            self.down_since = None
