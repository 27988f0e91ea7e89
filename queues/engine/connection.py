"""The engine's way to the database: the reconnect guard, the prepared-statement cursor of the hot
path, and the per-queue config cache (with :func:`clear_cache` for whoever must drop it)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.db import InterfaceError, OperationalError
from psycopg.types.datetime import TimestamptzLoader

from queues import conf
from queues.engine import sql
from queues.engine.errors import DatabaseUnavailable, QueueNotFound
from queues.engine.validation import validate_name


def _connection_lost(db: Any) -> bool:
    """Whether Django's connection is gone (server restarted, network cut), rather than a statement
    having failed on a live one (which asks ``SELECT 1``: only on this error path)."""
    raw = db.connection
    if raw is None or raw.closed or getattr(raw, "broken", False):
        return True
    return not db.is_usable()


def recovers_connection(func: Callable[..., Any]) -> Callable[..., Any]:
    """Outside a transaction, an engine call that finds its connection dead reconnects and runs once
    more; if that fails too it raises :class:`DatabaseUnavailable`. Inside ``atomic()`` the error goes
    to the caller untouched: the transaction's earlier work is gone, and retrying only the last
    statement would commit half of it.

    A long-running producer otherwise keeps a dead connection after a database restart: Django drops
    it only between requests (``close_old_connections``), which a script or a consumer never reaches.
    A send that committed just as the connection broke may be stored again by the retry; one with a
    dedup id never is.
    """

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DatabaseUnavailable:
            raise  # a nested engine call already reconnected once
        except (OperationalError, InterfaceError) as exc:
            db = conf.db()
            if db.in_atomic_block or not _connection_lost(db):
                raise
            lost = exc
            # None: the call could not even connect (Django keeps a connection that broke in use).
            first = "the connection was lost" if db.connection is not None else "connecting failed"
        db.close()  # the next statement opens a new connection
        try:
            return func(*args, **kwargs)
        except DatabaseUnavailable:
            raise
        except (OperationalError, InterfaceError) as exc:
            if not _connection_lost(conf.db()):
                raise
            again = _first_line(exc)
            why = again if _first_line(lost) == again else f"{first} ({_first_line(lost)}), then: {again}"
            raise DatabaseUnavailable(
                f"the database is unavailable ({why}); tried twice; retry later (a send retried with the same "
                "dedup_id is not stored twice)"
            ) from exc

    return call


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message, for a one-line summary."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# -- prepared statements ----------------------------------------------------------------------------
class _PreparingCursor(psycopg.Cursor):
    """Server-side binding, each statement prepared once per connection: the engine's statements
    are CTEs whose parse and plan cost more than running them (about 0.4 ms of a 0.55 ms send)."""

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None):
        return super().execute(query, params, prepare=True, binary=binary)


# Django turns psycopg's automatic preparation off (prepare_threshold None), which also refuses an
# explicit prepare=True. A threshold never reached allows explicit preparation only; Django's own
# cursors bind client-side and never prepare either way.
_EXPLICIT_PREPARE_ONLY = 1 << 62


class _HotCursor:
    """The one preparing cursor of a connection, reused by every hot statement, with what Django's
    cursor wrapper does around each call (broken-transaction check, Django's exception classes).
    Django's wrapper costs more than a prepared send's whole client side (about 15 us a statement)."""

    __slots__ = ("cursor", "db")

    def __init__(self, db: Any, cursor: _PreparingCursor) -> None:
        self.db = db
        self.cursor = cursor

    def __enter__(self) -> _HotCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass  # kept open for the next statement

    def execute(self, query: str, params: Any = None) -> None:
        self.db.validate_no_broken_transaction()
        with self.db.wrap_database_errors:
            self.cursor.execute(query, params)

    def fetchall(self) -> list[tuple]:
        with self.db.wrap_database_errors:
            return self.cursor.fetchall()

    def fetchone(self) -> tuple | None:
        with self.db.wrap_database_errors:
            return self.cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount


def hot_cursor() -> Any:
    """A cursor for the hot statements (send, receive, ack, nack, extend) on Django's connection:
    same transaction and same exceptions as ``connection.cursor()``, but prepared.

    Query logging (``DEBUG``, ``assertNumQueries``) and ``connection.execute_wrapper()`` hooks get
    Django's own wrapper around it. Behind a transaction-mode pooler (the database's
    ``DISABLE_SERVER_SIDE_CURSORS`` is True, as Django asks for pgbouncer) a statement may land on
    another server connection, so there the engine uses plain Django cursors.
    """
    db = conf.db()
    if db.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
        return db.cursor()
    # What connection.cursor() does, minus building a client-side cursor first.
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    raw = db.connection
    if db.queries_logged or db.execute_wrappers:
        if raw.prepare_threshold is None:
            raw.prepare_threshold = _EXPLICIT_PREPARE_ONLY
        wrap = db.make_debug_cursor if db.queries_logged else db.make_cursor
        return wrap(_PreparingCursor(raw))
    # Kept on the connection itself, so it lives and dies with it (a map keyed by connection would
    # hold every closed connection alive through its cursor).
    cur = getattr(raw, "_mqadmin_hot_cursor", None)
    if cur is None:
        if raw.prepare_threshold is None:
            raw.prepare_threshold = _EXPLICIT_PREPARE_ONLY
        cur = raw._mqadmin_hot_cursor = _PreparingCursor(raw)
        if db.timezone is not None:
            # Django's timestamptz loader stamps each value's tzinfo again in Python: 1-2 us a value, two
            # values a delivery. psycopg's own (C) loader already returns aware datetimes in the session's
            # time zone, which Django set to db.timezone: the same instants, 0.24 us each.
            cur.adapters.register_loader("timestamptz", TimestamptzLoader)
    return _HotCursor(db, cur)


# -- queue config cache -----------------------------------------------------------------------------
class QueueConfig:
    """What the hot path needs of a queue, read once per :data:`CONFIG_TTL`."""

    __slots__ = (
        "concurrency_limit", "default_delay", "id", "kind", "limits_per_group", "loaded", "max_length",
        "max_message_size", "name", "overflow", "rate",
    )

    def __init__(
        self, id: int, name: str, kind: str, max_message_size: int, default_delay: float, *,
        rate: float | None = None, concurrency_limit: int | None = None, limits_per_group: bool = False,
        max_length: int | None = None, overflow: str = "reject",
    ) -> None:
        self.id = id
        self.name = name
        self.kind = kind
        self.max_message_size = max_message_size
        self.default_delay = default_delay
        # Flow limits (queues.engine.limits): deliveries per second and most in flight, None when unlimited.
        self.rate = rate
        self.concurrency_limit = concurrency_limit
        self.limits_per_group = limits_per_group
        # Bounded queues (queues/engine/bounded.py): None for the unbounded, which send as before.
        self.max_length = max_length
        self.overflow = overflow
        self.loaded = time.monotonic()

    @property
    def limited(self) -> bool:
        """Whether claims of this queue go through its flow limits (``queues.engine.flow_sql``)."""
        return self.rate is not None or self.concurrency_limit is not None


_cache: dict[str, QueueConfig] = {}
_names: dict[int, str] = {}
_cache_lock = threading.Lock()
# Other processes' changes to a queue's kind or max size are seen within this many seconds; the
# process that made the change sees it at once.
CONFIG_TTL = 2.0
# Where each fifo queue's claim walk over its groups resumes (by queue id); see delivery.claim.
fifo_positions: dict[int, str | None] = {}
# Each standard queue's claim floor and when its last full claim ran (by queue id); see delivery.claim.
claim_floors: dict[int, tuple[int, float]] = {}
# When this process last cleared each queue's run-out lease batches (by queue id); see delivery.claim.
lease_sweeps: dict[int, float] = {}


def config(name: str) -> QueueConfig:
    """The cached config of the queue ``name``; :class:`QueueNotFound` if there is none."""
    hit = _cache.get(name)
    if hit is not None and time.monotonic() - hit.loaded < CONFIG_TTL:
        return hit
    validate_name(name)
    with conf.db().cursor() as cur:
        cur.execute(sql.QUEUE_CONFIG, [name])
        row = cur.fetchone()
    if row is None:
        clear_cache(name)
        raise QueueNotFound(f"queue {name!r} does not exist: create it first (queues.create_queue or mq_queue create)")
    cfg = QueueConfig(
        row[0], name, row[1], row[2], float(row[3]), rate=row[4], concurrency_limit=row[5], limits_per_group=row[6],
        max_length=row[7], overflow=row[8],
    )
    with _cache_lock:
        _cache[name] = cfg
        _names[cfg.id] = name
    return cfg


def clear_cache(name: str | None = None, *, queue_id: int | None = None) -> None:
    """Forget the cached config of the queue ``name`` (or with id ``queue_id``), or of every queue (and
    where each fifo walk stands).

    The engine calls it for the queue it changed, and the process's listener for a queue another process
    changed (:mod:`queues.engine.notify`); call it with no argument after the tables were emptied behind
    the engine's back (tests flushing the database, a benchmark on a fresh one), where queue ids change
    without the engine knowing.
    """
    with _cache_lock:
        if queue_id is not None:
            for key in [key for key, cfg in _cache.items() if cfg.id == queue_id]:
                del _cache[key]
        elif name is None:
            _cache.clear()
            fifo_positions.clear()
            claim_floors.clear()
            lease_sweeps.clear()
        else:
            _cache.pop(name, None)


def queue_name(queue_id: int) -> str:
    """The name of the queue with id ``queue_id`` (cached; the id itself if the queue is gone)."""
    name = _names.get(queue_id)
    if name is None:
        with conf.db().cursor() as cur:
            cur.execute(sql.QUEUE_NAME, [queue_id])
            row = cur.fetchone()
        name = row[0] if row else str(queue_id)
        _names[queue_id] = name
    return name


__all__ = ["clear_cache"]
