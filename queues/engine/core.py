"""The queue engine's Python API (sync). ``queues.engine.aio`` has the async twins.

Every function runs on the Django connection of mqadmin's database (``MQADMIN["DATABASE"]``, by
default ``"default"``), so it joins the caller's ``transaction.atomic()`` on that database when there is
one: a send inside a rolled-back transaction never happened. Each state change of a message is one SQL
statement (see ``sql.py``), so it is atomic even outside a transaction.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import psycopg
from django.db import IntegrityError

from queues import conf, tracing
from queues.engine import sql
from queues.engine.errors import (
    InvalidMessage,
    InvalidQueueName,
    InvalidQueueSettings,
    InvalidReceipt,
    LeaseExpired,
    MessageTooLarge,
    QueueExists,
    QueueNotFound,
    TopicNotFound,
)
from queues.engine.types import (
    AckResult,
    Delivery,
    MessageInfo,
    Outgoing,
    PruneResult,
    QueueStats,
)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
PRIORITY_MIN, PRIORITY_MAX = -100, 100
MAX_BATCH = 10_000
MAX_KEY_LENGTH = 128
MAX_VISIBILITY_TIMEOUT = 12 * 3600.0
MAX_DELAY = 15 * 24 * 3600.0
DLQ_SUFFIX = ".dlq"
# Fifo claims walk at most this many groups per call; the walk resumes where it stopped next time.
FIFO_MAX_GROUPS = 1000

_UNSET: Any = object()


# -- validation -------------------------------------------------------------------------------------
def validate_name(name: object, what: str = "queue") -> str:
    """Return ``name`` if it is a valid queue or topic name, else raise :class:`InvalidQueueName`."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidQueueName(
            f"invalid {what} name {name!r}: use 1-80 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit (for example 'orders' or 'billing.invoices')"
        )
    return name


def _seconds(value: object, setting: str, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidQueueSettings(f"{setting} must be a number of seconds, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise InvalidQueueSettings(f"{setting} must be at least {minimum:g}{upper} seconds, got {value!r}")
    return float(value)


def _positive_int(value: object, setting: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidQueueSettings(f"{setting} must be an integer of at least {minimum}, got {value!r}")
    return value


# One encoder for every message: json.dumps with options builds a new encoder at each call.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _encode_body(body: Any) -> str:
    try:
        return _JSON.encode(body)
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(
            f"message body is not JSON-serialisable ({exc}): send dicts, lists, strings, numbers, "
            "booleans or None; convert other objects (dates, Decimals, models) first"
        ) from None


def _encode_headers(headers: Mapping[str, Any] | None) -> str:
    if headers is None:
        return "{}"
    if not isinstance(headers, Mapping):
        raise InvalidMessage(f"headers must be a dict of strings, got {headers!r}")
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidMessage(f"headers must map strings to strings, got {key!r}: {value!r}")
    return json.dumps(dict(headers), separators=(",", ":"), ensure_ascii=False)


def _check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidMessage(f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}, got {priority!r}")
    return priority


def _check_delay(delay: object) -> float | None:
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay != delay:
        raise InvalidMessage(f"delay must be a number of seconds, got {delay!r}")
    if delay < 0 or delay > MAX_DELAY:
        raise InvalidMessage(f"delay must be between 0 and {MAX_DELAY:g} seconds (15 days), got {delay!r}")
    return float(delay)


def _check_key(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise InvalidMessage(f"{what} must be a string of 1 to {MAX_KEY_LENGTH} characters, got {value!r}")
    return value


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


def _cursor():
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
    return _HotCursor(db, cur)


# -- queue config cache -----------------------------------------------------------------------------
class _QueueConfig:
    __slots__ = ("default_delay", "id", "kind", "loaded", "max_message_size", "name")

    def __init__(self, id: int, name: str, kind: str, max_message_size: int, default_delay: float) -> None:
        self.id = id
        self.name = name
        self.kind = kind
        self.max_message_size = max_message_size
        self.default_delay = default_delay
        self.loaded = time.monotonic()


_cache: dict[str, _QueueConfig] = {}
_names: dict[int, str] = {}
_cache_lock = threading.Lock()
# Other processes' changes to a queue's kind or max size are seen within this many seconds; the
# process that made the change sees it at once.
CONFIG_TTL = 2.0


def _config(name: str) -> _QueueConfig:
    hit = _cache.get(name)
    if hit is not None and time.monotonic() - hit.loaded < CONFIG_TTL:
        return hit
    validate_name(name)
    with conf.db().cursor() as cur:
        cur.execute(
            "SELECT id, kind, max_message_size, extract(epoch FROM default_delay) FROM queues_queue WHERE name = %s",
            [name],
        )
        row = cur.fetchone()
    if row is None:
        _forget(name)
        raise QueueNotFound(f"queue {name!r} does not exist: create it first (queues.create_queue or mq_queue create)")
    cfg = _QueueConfig(row[0], name, row[1], row[2], float(row[3]))
    with _cache_lock:
        _cache[name] = cfg
        _names[cfg.id] = name
    return cfg


def _forget(name: str | None = None) -> None:
    with _cache_lock:
        if name is None:
            _cache.clear()
        else:
            _cache.pop(name, None)


def _queue_name(queue_id: int) -> str:
    name = _names.get(queue_id)
    if name is None:
        with conf.db().cursor() as cur:
            cur.execute("SELECT name FROM queues_queue WHERE id = %s", [queue_id])
            row = cur.fetchone()
        name = row[0] if row else str(queue_id)
        _names[queue_id] = name
    return name


# -- queues -----------------------------------------------------------------------------------------
def _queue_model():
    from queues.models import Queue

    return Queue


def _clean_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Validate queue settings given as keyword arguments; return model field values."""
    from queues.models import QueueKind

    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "kind":
            if value not in QueueKind.values:
                raise InvalidQueueSettings(f"kind must be one of {', '.join(QueueKind.values)}, got {value!r}")
            out[key] = value
        elif key == "visibility_timeout":
            out[key] = timedelta(seconds=_seconds(value, key, minimum=0.1, maximum=MAX_VISIBILITY_TIMEOUT))
        elif key in ("default_delay",):
            out[key] = timedelta(seconds=_seconds(value, key, maximum=MAX_DELAY))
        elif key == "retention":
            out[key] = timedelta(seconds=_seconds(value, key, minimum=60, maximum=365 * 24 * 3600))
        elif key == "dedup_window":
            out[key] = timedelta(seconds=_seconds(value, key, maximum=7 * 24 * 3600))
        elif key == "max_receives":
            out[key] = _positive_int(value, key)
        elif key == "max_message_size":
            out[key] = _positive_int(value, key, minimum=16)
            if out[key] > 16 * 1024 * 1024:
                raise InvalidQueueSettings(f"max_message_size must be at most 16 MiB, got {value!r}")
        elif key == "paused":
            if not isinstance(value, bool):
                raise InvalidQueueSettings(f"paused must be True or False, got {value!r}")
            out[key] = value
        elif key == "dead_letter_queue":
            out[key] = value
        else:
            raise InvalidQueueSettings(f"unknown queue setting {key!r}")
    return out


def _resolve_dlq(name: str, dlq: Any, create: bool):
    """The Queue model for a dead-letter setting: a name, None (no DLQ) or the default ``<name>.dlq``."""
    Queue = _queue_model()
    if dlq is None:
        return None
    if dlq is _UNSET:
        dlq = name + DLQ_SUFFIX
        if len(dlq) > 80:
            raise InvalidQueueSettings(
                f"the default dead-letter queue name {dlq!r} is longer than 80 characters: "
                "pass dead_letter_queue='<shorter name>' or dead_letter_queue=None"
            )
    validate_name(dlq, "dead-letter queue")
    if dlq == name:
        raise InvalidQueueSettings(f"queue {name!r} cannot be its own dead-letter queue")
    target = Queue.objects.filter(name=dlq).first()
    if target is None:
        if not create:
            raise QueueNotFound(f"dead-letter queue {dlq!r} does not exist: create it first")
        target = Queue.objects.create(name=dlq, max_receives=0)
    return target


def create_queue(name: str, *, dead_letter_queue: str | None = _UNSET, **settings: Any):
    """Create a queue and return it (a ``queues.models.Queue``).

    Settings: ``kind`` ('standard' or 'fifo'), ``visibility_timeout``, ``max_receives`` (0: never
    dead-letter), ``default_delay``, ``retention``, ``max_message_size``, ``dedup_window`` (seconds or
    timedeltas), ``paused``. ``dead_letter_queue`` defaults to ``<name>.dlq``, created if missing;
    ``None`` means no dead-letter queue (messages are redelivered forever).
    """
    validate_name(name)
    fields = _clean_settings(settings)
    Queue = _queue_model()
    with conf.atomic():
        if Queue.objects.filter(name=name).exists():
            raise QueueExists(f"queue {name!r} exists already: use update_queue to change it")
        dlq = _resolve_dlq(name, dead_letter_queue, create=True)
        try:
            with conf.atomic():
                queue = Queue.objects.create(name=name, dead_letter_queue=dlq, **fields)
        except IntegrityError:
            raise QueueExists(f"queue {name!r} exists already: use update_queue to change it") from None
    _forget(name)
    return queue


def ensure_queue(name: str, **settings: Any):
    """Return the queue ``name``, creating it with ``settings`` if it does not exist."""
    Queue = _queue_model()
    queue = Queue.objects.filter(name=validate_name(name)).first()
    if queue is not None:
        return queue
    try:
        return create_queue(name, **settings)
    except QueueExists:
        return Queue.objects.get(name=name)


def get_queue(name: str):
    """The queue ``name`` (a ``queues.models.Queue``); :class:`QueueNotFound` if there is none."""
    Queue = _queue_model()
    queue = Queue.objects.filter(name=validate_name(name)).select_related("dead_letter_queue").first()
    if queue is None:
        raise QueueNotFound(f"queue {name!r} does not exist: create it first (queues.create_queue or mq_queue create)")
    return queue


def list_queues() -> list:
    """All queues, by name."""
    return list(_queue_model().objects.select_related("dead_letter_queue").order_by("name"))


def update_queue(name: str, **settings: Any):
    """Change settings of the queue ``name`` (same keywords as :func:`create_queue`); return it."""
    fields = _clean_settings(settings)
    Queue = _queue_model()
    with conf.atomic():
        queue = Queue.objects.select_for_update().filter(name=validate_name(name)).first()
        if queue is None:
            raise QueueNotFound(f"queue {name!r} does not exist: create it first")
        if "dead_letter_queue" in fields:
            fields["dead_letter_queue"] = _resolve_dlq(name, fields["dead_letter_queue"], create=False)
        if "kind" in fields and fields["kind"] != queue.kind and queue.messages.exists():
            raise InvalidQueueSettings(
                f"queue {name!r} has messages: its kind can change only when it is empty (purge it first)"
            )
        for key, value in fields.items():
            setattr(queue, key, value)
        queue.save()
    _forget(name)
    return queue


def delete_queue(name: str) -> int:
    """Delete the queue ``name`` and its messages; return how many messages went with it.

    Its dead-letter queue stays. A queue that is another queue's dead-letter queue is detached first.
    """
    Queue = _queue_model()
    with conf.atomic():
        queue = Queue.objects.select_for_update().filter(name=validate_name(name)).first()
        if queue is None:
            raise QueueNotFound(f"queue {name!r} does not exist")
        count = queue.messages.count()
        queue.delete()
    _forget(name)
    return count


def pause(name: str):
    """Stop deliveries from the queue ``name`` (sends are still accepted)."""
    return update_queue(name, paused=True)


def resume(name: str):
    """Resume deliveries from the queue ``name``."""
    return update_queue(name, paused=False)


# -- send -------------------------------------------------------------------------------------------
def _prepare(cfg: _QueueConfig, item: Outgoing) -> tuple[str, str, int, str | None, str | None, float | None]:
    return _prepare_fields(cfg, item.body, item.headers, item.priority, item.group, item.dedup_id, item.delay)


def _prepare_fields(
    cfg: _QueueConfig, body: Any, headers: Any, priority: Any, group: Any, dedup_id: Any, delay: Any
) -> tuple[str, str, int, str | None, str | None, float | None]:
    body = _encode_body(body)
    headers = _encode_headers(headers)
    size = len(body.encode()) + len(headers.encode())
    if size > cfg.max_message_size:
        raise MessageTooLarge(
            f"message of {size} bytes exceeds queue {cfg.name!r}'s max message size of {cfg.max_message_size} "
            "bytes: send a smaller body (store large payloads elsewhere and send a reference) "
            "or raise the queue's max_message_size"
        )
    group = _check_key(group, "group")
    if cfg.kind == "fifo" and group is None:
        group = ""
    return (body, headers, _check_priority(priority), group, _check_key(dedup_id, "dedup_id"), _check_delay(delay))


@tracing.traced_send_batch
def send_batch(queue: str, messages: Iterable[Any]) -> list[int]:
    """Send many messages in one statement; return their ids in input order.

    Each item is an :class:`Outgoing` or a bare body. A dedup id already used inside the queue's dedup
    window (or twice in the batch) stores nothing and yields the first message's id.
    """
    cfg = _config(queue)
    items = [m if isinstance(m, Outgoing) else Outgoing(body=m) for m in messages]
    if not items:
        return []
    if len(items) > MAX_BATCH:
        raise InvalidMessage(f"a batch holds at most {MAX_BATCH} messages, got {len(items)}: split it")
    rows = [_prepare(cfg, item) for item in items]
    if all(row[4] is None for row in rows):
        return _send_fast(queue, cfg, rows)
    # The same dedup id twice in one batch: only the first is sent, the rest get its id.
    first_of: dict[str, int] = {}
    repeats: dict[int, str] = {}
    send_rows = []
    for index, row in enumerate(rows):
        dedup = row[4]
        if dedup is not None:
            if dedup in first_of:
                repeats[index] = dedup
                continue
            first_of[dedup] = index
        send_rows.append(row)
    params = {
        "queue_id": cfg.id,
        "bodies": [r[0] for r in send_rows],
        "headers": [r[1] for r in send_rows],
        "priorities": [r[2] for r in send_rows],
        "groups": [r[3] for r in send_rows],
        "dedup_ids": [r[4] for r in send_rows],
        "delays": [r[5] for r in send_rows],
    }
    with _cursor() as cur:
        cur.execute(sql.SEND, params)
        result = cur.fetchall()
        if result and not result[0][4]:
            # The cached id is gone: the queue was deleted (and maybe made again) by another process.
            _forget(queue)
            params["queue_id"] = cfg.id = _config(queue).id
            cur.execute(sql.SEND, params)
            result = cur.fetchall()
        ids: dict[str, int] = {}
        by_dedup_missing = [r[2] for r in result if not r[3]]
        if by_dedup_missing:
            cur.execute(sql.DEDUP_LOOKUP, {"queue_id": cfg.id, "dedup_ids": by_dedup_missing})
            ids.update({d: m for d, m in cur.fetchall()})
    sent = iter([r[1] if r[3] else ids[r[2]] for r in result])
    out = [0 if index in repeats else next(sent) for index in range(len(rows))]
    return [out[first_of[repeats[i]]] if i in repeats else v for i, v in enumerate(out)]


def _send_fast(queue: str, cfg: _QueueConfig, rows: list[tuple]) -> list[int]:
    """Send messages without dedup ids (``sql.SEND_FAST``): columns that only hold defaults go as NULL."""
    params = {
        "queue_id": cfg.id,
        "bodies": "[" + ",".join([r[0] for r in rows]) + "]",
        "headers": None if all(r[1] == "{}" for r in rows) else "[" + ",".join([r[1] for r in rows]) + "]",
        "priorities": None if all(r[2] == 0 for r in rows) else [r[2] for r in rows],
        "groups": None if all(r[3] is None for r in rows) else [r[3] for r in rows],
        "delays": None if all(r[5] is None for r in rows) else [r[5] for r in rows],
    }
    with _cursor() as cur:
        cur.execute(sql.SEND_FAST, params)
        result = cur.fetchall()
        if not result:
            # The cached id is gone: the queue was deleted (and maybe made again) by another process.
            _forget(queue)
            params["queue_id"] = cfg.id = _config(queue).id
            cur.execute(sql.SEND_FAST, params)
            result = cur.fetchall()
    return [r[0] for r in result]


@tracing.traced_send
def send(
    queue: str,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    delay: float | timedelta | None = None,
    priority: int = 0,
    group: str | None = None,
    dedup_id: str | None = None,
) -> int:
    """Send one message to ``queue`` and return its id.

    ``delay`` (seconds) defaults to the queue's default delay; ``priority`` is -100..100, larger
    first; ``group`` orders fifo queues; ``dedup_id`` makes a repeat inside the dedup window a no-op
    that returns the first message's id.
    """
    if dedup_id is None:
        # The common case, without the batch bookkeeping.
        cfg = _config(queue)
        return _send_fast(queue, cfg, [_prepare_fields(cfg, body, headers, priority, group, None, delay)])[0]
    return send_batch(
        queue, [Outgoing(body=body, headers=headers, delay=delay, priority=priority, group=group, dedup_id=dedup_id)]
    )[0]


# -- receive ----------------------------------------------------------------------------------------
_fifo_cursor: dict[int, str | None] = {}


def _make_receipt(message_id: int, token_hex: str) -> str:
    return f"{message_id}:{token_hex}"


# The form receive() hands out: a positive bigint (18 digits always fit), a colon, 32 lowercase hex
# digits. Anything else goes through parse_receipt, which also takes the other spellings of a uuid.
_CANONICAL_RECEIPT = re.compile(r"([1-9][0-9]{0,17}):([0-9a-f]{32})")


def parse_receipt(receipt: object) -> tuple[int, uuid.UUID]:
    """Split a receipt into message id and lease token; :class:`InvalidReceipt` if malformed."""
    if isinstance(receipt, str):
        head, _, tail = receipt.partition(":")
        try:
            message_id, token = int(head), uuid.UUID(hex=tail)
        except ValueError:
            pass
        else:
            # Message ids are bigints: a larger number would fail in SQL as a DataError instead.
            if 0 < message_id < 2**63:
                return message_id, token
    raise InvalidReceipt(f"malformed receipt {receipt!r}: pass the receipt of a Delivery from receive()")


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _claim(cfg: _QueueConfig, limit: int, visibility_timeout: float | None) -> list[Delivery]:
    params = {"queue_id": cfg.id, "limit": limit, "vt": visibility_timeout}
    with _cursor() as cur:
        if cfg.kind == "fifo":
            after = _fifo_cursor.get(cfg.id)
            params.update(after=after, max_groups=FIFO_MAX_GROUPS)
            cur.execute(sql.RECEIVE_FIFO, params)
            rows = cur.fetchall()
            if len(rows) < limit and after is not None:
                # Wrap around: the walk started mid-way through the groups.
                params.update(after=None, limit=limit - len(rows))
                cur.execute(sql.RECEIVE_FIFO, params)
                rows += cur.fetchall()
            _fifo_cursor[cfg.id] = max((r[4] for r in rows), default=None)
        else:
            cur.execute(sql.RECEIVE_STANDARD, params)
            rows = cur.fetchall()
    return [
        Delivery(
            id=r[0], queue=cfg.name, body=_loads(r[1]), headers={} if r[2] == "{}" else _loads(r[2]),
            priority=r[3], group=r[4],
            receive_count=r[5], enqueued_at=r[6], lease_expires_at=r[7], receipt=_make_receipt(r[0], r[8]),
            last_error=r[9],
        )
        for r in rows
    ]


def _receive_args(max_messages: object, visibility_timeout: object, wait: object) -> tuple[int, float | None, float]:
    if isinstance(max_messages, bool) or not isinstance(max_messages, int) or not 1 <= max_messages <= MAX_BATCH:
        raise ValueError(f"max_messages must be an integer from 1 to {MAX_BATCH}, got {max_messages!r}")
    vt = None
    if visibility_timeout is not None:
        vt = _seconds(visibility_timeout, "visibility_timeout", minimum=0.1, maximum=MAX_VISIBILITY_TIMEOUT)
    w = _seconds(wait, "wait", maximum=3600.0)
    return max_messages, vt, w


# How often a waiting receive polls even without a notification (delayed messages becoming ready,
# leases running out, or a lost LISTEN connection).
POLL_INTERVAL = 1.0


def receive(
    queue: str,
    *,
    max_messages: int = 1,
    visibility_timeout: float | None = None,
    wait: float = 0.0,
) -> list[Delivery]:
    """Lease up to ``max_messages`` ready messages of ``queue``, highest priority then oldest first.

    Each :class:`Delivery` carries a receipt for :func:`ack`, :func:`nack` and :func:`extend`; the
    lease lasts ``visibility_timeout`` seconds (default: the queue's). With ``wait`` > 0 the call
    blocks up to that long until a message arrives (woken by NOTIFY, polling as a fallback).
    Messages past the queue's max receives go to its dead-letter queue instead of being returned.
    A paused queue returns nothing.
    """
    limit, vt, w = _receive_args(max_messages, visibility_timeout, wait)
    cfg = _config(queue)
    if w <= 0 or conf.db().in_atomic_block:
        # Waiting inside a transaction would hold it open; a caller's transaction gets one try.
        return _claim(cfg, limit, vt)
    from queues.engine.notify import get_listener

    listener = get_listener()
    deadline = time.monotonic() + w
    while True:
        seen = listener.seq(cfg.id)
        got = _claim(cfg, limit, vt)
        left = deadline - time.monotonic()
        if got or left <= 0:
            return got
        listener.wait(cfg.id, seen, min(left, POLL_INTERVAL))


# -- ack / nack / extend ----------------------------------------------------------------------------
def _split(receipts: Sequence[str]) -> tuple[list[int], list[str]]:
    ids, tokens = [], []
    for receipt in receipts:
        match = _CANONICAL_RECEIPT.fullmatch(receipt) if isinstance(receipt, str) else None
        if match is not None:
            ids.append(int(match[1]))
            tokens.append(match[2])  # PostgreSQL reads 32 hex digits as a uuid
        else:
            message_id, token = parse_receipt(receipt)
            ids.append(message_id)
            tokens.append(str(token))
    return ids, tokens


def _stale_message(receipt: str) -> str:
    return (
        f"receipt {receipt!r} is no longer valid: its lease ran out or the message was received again, "
        "acked or moved; the message may be with another consumer now (extend leases that need longer)"
    )


def ack_batch(receipts: Sequence[str]) -> AckResult:
    """Acknowledge many deliveries in one statement. Stale receipts are reported, not raised."""
    receipts = list(receipts)
    if not receipts:
        return AckResult()
    ids, tokens = _split(receipts)
    with _cursor() as cur:
        cur.execute(sql.ACK, {"ids": ids, "receipts": tokens})
        done = {row[0] for row in cur.fetchall()}
    acked = [r for r, i in zip(receipts, ids, strict=True) if i in done]
    stale = [r for r, i in zip(receipts, ids, strict=True) if i not in done]
    return AckResult(acked=acked, stale=stale)


def ack(receipt: str) -> None:
    """Acknowledge one delivery: the message is done and leaves the queue.

    :class:`LeaseExpired` if the lease ran out (nothing changes; the message will be redelivered).
    """
    result = ack_batch([receipt])
    if result.stale:
        raise LeaseExpired(_stale_message(receipt))


def nack(receipt: str, *, delay: float | timedelta = 0.0, error: str = "", dead_letter: bool = False) -> bool:
    """Give a delivery back: ready again after ``delay`` seconds, with ``error`` on record.

    ``dead_letter=True`` sends it to the dead-letter queue now, whatever its receive count (a
    handler's own retry limit, or a message that can never succeed); a queue without a dead-letter
    queue takes it back as usual. Returns True if the message went to the dead-letter queue.
    :class:`LeaseExpired` if the lease ran out.
    """
    seconds = _check_delay(delay) or 0.0
    if not isinstance(error, str):
        raise InvalidMessage(f"error must be a string, got {error!r}")
    if not isinstance(dead_letter, bool):
        raise InvalidMessage(f"dead_letter must be True or False, got {dead_letter!r}")
    ids, tokens = _split([receipt])
    with _cursor() as cur:
        cur.execute(
            sql.NACK,
            {"ids": ids, "receipts": tokens, "delay": seconds, "error": error[:8000], "dead_letter": dead_letter},
        )
        row = cur.fetchone()
    if row is None:
        raise LeaseExpired(_stale_message(receipt))
    return bool(row[1])


def release_batch(receipts: Sequence[str], *, refund: bool = False) -> list[str]:
    """Give leases back early: the messages are ready again at once, with no error and no failure counted.

    For a consumer that stops before handling what it holds, or for a dead consumer's leases (released
    by another process). ``refund=True`` also takes back the receive, for deliveries that never reached
    a handler. Wakes waiting receivers. Returns the stale receipts (their messages are left alone).
    """
    receipts = list(receipts)
    if not receipts:
        return []
    ids, tokens = _split(receipts)
    with conf.db().cursor() as cur:
        cur.execute(sql.RELEASE, {"ids": ids, "receipts": tokens, "refund": bool(refund)})
        rows = cur.fetchall()
        for queue_id in sorted({row[1] for row in rows}):
            cur.execute(sql.NOTIFY, {"queue_id": queue_id})
    done = {row[0] for row in rows}
    return [r for r, i in zip(receipts, ids, strict=True) if i not in done]


def extend_batch(receipts: Sequence[str], *, visibility_timeout: float) -> list[str]:
    """Renew many leases to ``visibility_timeout`` seconds from now in one statement; return the stale ones."""
    seconds = _seconds(visibility_timeout, "visibility_timeout", minimum=0.1, maximum=MAX_VISIBILITY_TIMEOUT)
    receipts = list(receipts)
    if not receipts:
        return []
    ids, tokens = _split(receipts)
    with _cursor() as cur:
        cur.execute(sql.EXTEND, {"ids": ids, "receipts": tokens, "seconds": seconds})
        done = {row[0] for row in cur.fetchall()}
    return [r for r, i in zip(receipts, ids, strict=True) if i not in done]


def extend(receipt: str, *, visibility_timeout: float) -> None:
    """Renew a lease: it now ends ``visibility_timeout`` seconds from now. :class:`LeaseExpired` if it ran out."""
    if extend_batch([receipt], visibility_timeout=visibility_timeout):
        raise LeaseExpired(_stale_message(receipt))


# -- operator actions -------------------------------------------------------------------------------
def _ids(ids: Iterable[object]) -> list[int]:
    out = []
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"message ids must be integers, got {value!r}")
        out.append(value)
    return out


def purge(queue: str) -> int:
    """Delete every message of ``queue`` (ready, delayed and in flight); return how many."""
    cfg = _config(queue)
    with conf.db().cursor() as cur:
        cur.execute(sql.PURGE, {"queue_id": cfg.id})
        return cur.fetchone()[0]


def delete_messages(queue: str, ids: Iterable[int]) -> int:
    """Delete the given messages of ``queue``; return how many existed."""
    cfg = _config(queue)
    with conf.db().cursor() as cur:
        cur.execute(sql.DELETE_MESSAGES, {"queue_id": cfg.id, "ids": _ids(ids)})
        return cur.fetchone()[0]


def move_messages(queue: str, ids: Iterable[int], *, to: str) -> int:
    """Move the given messages of ``queue`` to the queue ``to``, ready at once with a fresh receive count.

    Messages in flight are left where they are. Returns how many moved.
    """
    source = _config(queue)
    target = _config(to)
    if source.id == target.id:
        raise ValueError(f"cannot move messages from {queue!r} to itself")
    with conf.db().cursor() as cur:
        cur.execute(
            sql.MOVE_MESSAGES,
            {"queue_id": source.id, "ids": _ids(ids), "to_id": target.id, "to_fifo": target.kind == "fifo",
             "queue_name": queue},
        )
        moved = cur.fetchone()[0]
        if moved:
            cur.execute(sql.NOTIFY, {"queue_id": target.id})
    return moved


def retry_now(queue: str, ids: Iterable[int]) -> int:
    """Make the given delayed (or backing-off) messages ready now; return how many changed."""
    cfg = _config(queue)
    with conf.db().cursor() as cur:
        cur.execute(sql.RETRY_NOW, {"queue_id": cfg.id, "ids": _ids(ids)})
        changed = cur.rowcount
        if changed:
            cur.execute(sql.NOTIFY, {"queue_id": cfg.id})
    return changed


def redrive_batch(queue: str, *, to: str | None = None, limit: int = 100) -> dict[str, int]:
    """Move up to ``limit`` of the oldest messages of the dead-letter queue ``queue`` back.

    They go to ``to``, or each to the queue it died in. Returns counts per destination queue.
    """
    cfg = _config(queue)
    to_id = _config(to).id if to is not None else None
    with conf.db().cursor() as cur:
        cur.execute(
            sql.REDRIVE_BATCH,
            {"queue_id": cfg.id, "to_id": to_id, "limit": limit, "queue_name": queue},
        )
        rows = cur.fetchall()
        for dest, _count in rows:
            cur.execute(sql.NOTIFY, {"queue_id": dest})
    return {_queue_name(dest): count for dest, count in rows}


def redrive(
    queue: str,
    *,
    to: str | None = None,
    rate: float | None = None,
    limit: int | None = None,
    requested_by: str = "",
    progress: Callable[[Any], None] | None = None,
):
    """Redrive dead letters of ``queue`` back, ``rate`` messages per second at most, until empty.

    Runs in the calling thread and returns the finished ``queues.models.Redrive`` row. The row is
    the control channel: setting its state to ``stopping`` from any process (``stop_redrive``)
    stops it after the current batch. Each batch is its own transaction, so a stop or a crash
    never leaves a message half-moved.
    """

    from queues.models import Redrive

    if rate is not None:
        rate = _seconds(rate, "rate", minimum=0.1)
    if limit is not None:
        _positive_int(limit, "limit", minimum=1)
    source = get_queue(queue)
    dest = get_queue(to) if to is not None else None
    total = source.messages.count()
    job = Redrive.objects.create(
        source=source, destination=dest, rate=rate, limit=limit, total=min(total, limit or total),
        requested_by=requested_by,
    )
    return run_redrive(job, progress=progress)


REDRIVE_BEAT = 1.0
"""Seconds between a running redrive's signs of life (``heartbeat_at``), also while it paces itself."""


def run_redrive(job, *, progress: Callable[[Any], None] | None = None):
    """Carry out a ``Redrive`` row made by :func:`redrive` (or by the dashboard); return it finished.

    The row is beaten every :data:`REDRIVE_BEAT` seconds; if it leaves ``running`` meanwhile (a stop
    request, or :func:`reap_redrives` having given it up for dead) the redrive ends after the batch
    in hand. Each batch is one transaction, so wherever it ends no message is half-moved.
    """
    from django.db.models.functions import Now
    from django.utils import timezone

    from queues.models import Redrive, RedriveState

    source = job.source.name
    to = job.destination.name if job.destination_id else None
    batch = 100 if job.rate is None else max(1, min(100, int(job.rate)))
    started = time.monotonic()
    row = Redrive.objects.filter(pk=job.pk)

    def still_running() -> bool:
        job.refresh_from_db(fields=["state"])
        if job.state == RedriveState.STOPPING:
            job.state = RedriveState.STOPPED
        return job.state == RedriveState.RUNNING

    row.update(heartbeat_at=Now())
    try:
        while still_running():
            want = batch if job.limit is None else min(batch, job.limit - job.moved)
            if want <= 0:
                job.state = RedriveState.FINISHED
                break
            moved = sum(redrive_batch(source, to=to, limit=want).values())
            job.moved += moved
            row.update(moved=job.moved, heartbeat_at=Now())
            if progress is not None:
                progress(job)
            if moved == 0:
                job.state = RedriveState.FINISHED
                break
            if job.rate is not None:
                # Pace on an absolute schedule so the average rate holds whatever a batch costs; a
                # long pause (a slow rate) still beats and notices a stop request within a beat.
                due = started + job.moved / job.rate
                while (pause_for := due - time.monotonic()) > 0:
                    time.sleep(min(pause_for, REDRIVE_BEAT))
                    if time.monotonic() < due:
                        row.update(heartbeat_at=Now())
                        if not still_running():
                            break
    except Exception as exc:
        job.state = RedriveState.FAILED
        job.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        job.finished_at = timezone.now()
        # A redrive reaped as abandoned keeps the reaper's verdict; its progress is still recorded.
        ending = row.filter(state__in=[RedriveState.RUNNING, RedriveState.STOPPING])
        if not ending.update(state=job.state, moved=job.moved, error=job.error, finished_at=job.finished_at):
            row.update(moved=job.moved)
            job.refresh_from_db(fields=["state", "error", "finished_at"])
    return job


def reap_redrives(*, stale_after: float | None = None) -> int:
    """Mark failed the running redrives whose process went silent for ``stale_after`` seconds.

    A redrive runs in the process that started it (a web process's thread, or ``mq_redrive``); if
    that process dies, its row would say ``running`` forever and block a new redrive of the queue.
    The messages it did not move are still in the dead-letter queue: start a new redrive for them.
    Default ``stale_after``: the ``REDRIVE_STALE_AFTER`` setting. Returns how many were reaped.
    """
    from queues import conf
    from queues.models import RedriveState

    seconds = _seconds(conf.get("REDRIVE_STALE_AFTER") if stale_after is None else stale_after,
                       "stale_after", minimum=REDRIVE_BEAT * 2)
    with conf.db().cursor() as cur:
        cur.execute(
            "UPDATE queues_redrive SET state = %(failed)s, finished_at = statement_timestamp(), "
            "error = 'abandoned: the process running it stopped without finishing (no sign of life since ' "
            "  || to_char(coalesce(heartbeat_at, created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
            "  || ' UTC); the messages it did not move are still in the queue: start a new redrive' "
            "WHERE state IN (%(running)s, %(stopping)s) "
            "  AND coalesce(heartbeat_at, created_at) < statement_timestamp() - make_interval(secs => %(secs)s)",
            {"failed": RedriveState.FAILED, "running": RedriveState.RUNNING, "stopping": RedriveState.STOPPING,
             "secs": seconds},
        )
        return cur.rowcount


def stop_redrive(redrive_id: int) -> bool:
    """Ask a running redrive to stop after its current batch. Returns False if it was not running."""
    from queues.models import Redrive, RedriveState

    return bool(
        Redrive.objects.filter(pk=redrive_id, state=RedriveState.RUNNING).update(state=RedriveState.STOPPING)
    )


def peek(
    queue: str, *, limit: int = 20, after_id: int | None = None, ids: Iterable[int] | None = None
) -> list[MessageInfo]:
    """Browse messages of ``queue`` in id order without changing their delivery state."""
    cfg = _config(queue)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValueError(f"limit must be an integer from 1 to 1000, got {limit!r}")
    with conf.db().cursor() as cur:
        cur.execute(
            sql.PEEK,
            {"queue_id": cfg.id, "after": after_id, "limit": limit, "ids": None if ids is None else _ids(ids)},
        )
        rows = cur.fetchall()
        cur.execute("SELECT 1 FROM queues_queue WHERE dead_letter_queue_id = %s LIMIT 1", [cfg.id])
        is_dlq = cur.fetchone() is not None
    out = []
    for r in rows:
        if r[9]:
            state = "in_flight"
        elif r[14]:
            state = "delayed"
        elif is_dlq:
            state = "dead"
        else:
            state = "ready"
        out.append(
            MessageInfo(
                id=r[0], queue=queue, state=state, body=_loads(r[1]), headers=_loads(r[2]), priority=r[3],
                group=r[4], dedup_id=r[5], receive_count=r[6], enqueued_at=r[7], available_at=r[8],
                last_error=r[10], history=_loads(r[11]), origin_queue=r[12], dead_at=r[13],
            )
        )
    return out


def prune(*, batch: int = 5000) -> PruneResult:
    """Remove messages past their queue's retention (never ones in flight) and expired dedup ids.

    Works in batches of ``batch`` per queue so it never holds long locks; call it periodically
    (``mq_prune``; workers do it on their own).
    """
    expired = 0
    with conf.db().cursor() as cur:
        cur.execute("SELECT id FROM queues_queue")
        for (queue_id,) in cur.fetchall():
            while True:
                cur.execute(sql.PRUNE_EXPIRED, {"queue_id": queue_id, "limit": batch})
                n = cur.fetchone()[0]
                expired += n
                if n < batch:
                    break
        cur.execute(sql.PRUNE_DEDUP)
        dedup = cur.rowcount
        cur.execute(sql.COMPACT_COUNTERS, {"unused": 0})
    return PruneResult(expired_messages=expired, expired_dedup_ids=dedup)


# -- topics -----------------------------------------------------------------------------------------
def subscribe(topic: str, queue: str, *, filter: Mapping[str, str] | None = None):
    """Subscribe ``queue`` to ``topic`` (created if new); only messages whose headers contain all of
    ``filter`` are copied to it. Subscribing again replaces the filter. Returns the subscription."""
    from queues.models import Subscription, Topic

    validate_name(topic, "topic")
    if filter is not None:
        _encode_headers(filter)
        filter = dict(filter)
    target = get_queue(queue)
    with conf.atomic():
        t, _ = Topic.objects.get_or_create(name=topic)
        sub, _ = Subscription.objects.update_or_create(topic=t, queue=target, defaults={"filter": filter})
    return sub


def unsubscribe(topic: str, queue: str) -> bool:
    """Remove ``queue``'s subscription to ``topic``; False if there was none."""
    from queues.models import Subscription

    deleted, _ = Subscription.objects.filter(topic__name=topic, queue__name=queue).delete()
    return bool(deleted)


def publish(
    topic: str,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    delay: float | timedelta | None = None,
    priority: int = 0,
    group: str | None = None,
) -> dict[str, int]:
    """Copy one message into every queue subscribed to ``topic`` whose filter matches, in one statement.

    Returns ``{queue name: message id}``; empty if nobody is subscribed (or no filter matched).
    Each copy is checked against the smallest max message size of the subscribed queues.
    """
    from queues.models import Topic

    validate_name(topic, "topic")
    encoded = _encode_body(body)
    encoded_headers = _encode_headers(headers)
    topic_row = Topic.objects.filter(name=topic).first()
    if topic_row is None:
        raise TopicNotFound(f"topic {topic!r} does not exist: subscribe a queue to it first (queues.subscribe)")
    size = len(encoded.encode()) + len(encoded_headers.encode())
    smallest = min((s.queue.max_message_size for s in topic_row.subscriptions.select_related("queue")), default=None)
    if smallest is not None and size > smallest:
        raise MessageTooLarge(
            f"message of {size} bytes exceeds the max message size ({smallest} bytes) of a queue "
            f"subscribed to {topic!r}: send a smaller body"
        )
    params = {
        "topic": topic, "body": encoded, "headers": encoded_headers, "priority": _check_priority(priority),
        "group": _check_key(group, "group"), "delay": _check_delay(delay),
    }
    with conf.db().cursor() as cur:
        cur.execute(sql.PUBLISH, params)
        rows = cur.fetchall()
    return {_queue_name(queue_id): message_id for message_id, queue_id, _ in rows}


# -- reads ------------------------------------------------------------------------------------------
def stats(queues: str | Iterable[str] | None = None) -> list[QueueStats]:
    """Live counts of every queue (or of the named ones), exact as of one snapshot.

    Reads a few counter rows and index ranges per queue, never ``count(*)`` of the backlog: cheap
    enough to call every second with millions of messages queued.
    """
    if isinstance(queues, str):  # one name, not its characters
        queues = [queues]
    names = None if queues is None else [validate_name(q) for q in queues]
    with conf.db().cursor() as cur:
        cur.execute(sql.STATS, {"names": names})
        rows = cur.fetchall()
        if names is not None:
            # A queue's dead count lives on its dead-letter queue, which may not be in `names`.
            dlq_ids = [r[4] for r in rows if r[4] is not None and r[4] not in {x[0] for x in rows}]
            if dlq_ids:
                cur.execute(
                    "SELECT name FROM queues_queue WHERE id = ANY(%s::bigint[])", [dlq_ids]
                )
                extra = [n for (n,) in cur.fetchall()]
                cur.execute(sql.STATS, {"names": extra})
                rows += cur.fetchall()
    by_id = {r[0]: r for r in rows}
    dlq_ids = {r[4] for r in rows if r[4] is not None}
    out = []
    for r in rows:
        if names is not None and r[1] not in names:
            continue
        (qid, name, kind, paused, dlq_id, depth, sent, acked, failed, dead_total, in_flight, delayed, age) = r
        dlq = by_id.get(dlq_id)
        out.append(
            QueueStats(
                queue=name, kind=kind, paused=paused, ready=int(depth) - int(in_flight) - int(delayed),
                delayed=int(delayed), in_flight=int(in_flight), dead=int(dlq[5]) if dlq else 0, depth=int(depth),
                oldest_ready_age=float(age) if age is not None else None, sent_total=int(sent),
                acked_total=int(acked), failed_total=int(failed), dead_lettered_total=int(dead_total),
                is_dead_letter_queue=qid in dlq_ids,
            )
        )
    return out


def queue_stats(queue: str) -> QueueStats:
    """Live counts of one queue."""
    found = stats([queue])
    if not found:
        raise QueueNotFound(f"queue {queue!r} does not exist")
    return found[0]


def as_dict(value: Any) -> dict[str, Any]:
    """A dataclass result as a plain dict (for JSON output)."""
    from dataclasses import asdict

    return asdict(value)


__all__ = [
    "ack", "ack_batch", "as_dict", "create_queue", "delete_messages", "delete_queue", "ensure_queue", "extend",
    "extend_batch", "get_queue", "list_queues", "move_messages", "nack", "parse_receipt", "pause", "peek",
    "prune", "publish", "purge", "queue_stats", "reap_redrives", "receive", "redrive", "redrive_batch",
    "release_batch", "resume", "retry_now", "run_redrive", "send", "send_batch", "stats", "stop_redrive",
    "subscribe", "unsubscribe", "update_queue", "validate_name",
]
