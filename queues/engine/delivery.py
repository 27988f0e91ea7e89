"""The hot path: send, receive, ack, nack, extend and release, and the receipts that tie them together.

Each call is one prepared statement on the connection's hot cursor (``connection.hot_cursor``); the
work around it is kept to what the statement needs (see ``docs/benchmarks.md`` before adding any).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from queues import conf, tracing
from queues.engine import flow_sql, limits, sql, text
from queues.engine.bounded import bounded_send
from queues.engine.connection import (
    QueueConfig,
    claim_floors,
    clear_cache,
    config,
    fifo_positions,
    hot_cursor,
    lease_sweeps,
    recovers_connection,
)
from queues.engine.errors import InvalidMessage, InvalidReceipt, LeaseExpired, MessageTooLarge
from queues.engine.notify import get_listener
from queues.engine.text import loads_column
from queues.engine.types import AckResult, Delivery, Outgoing, delivery_of
from queues.engine.validation import (
    FIFO_MAX_GROUPS,
    MAX_BATCH,
    MAX_ERROR_LENGTH,
    MAX_VISIBILITY_TIMEOUT,
    MIN_VISIBILITY_TIMEOUT,
    check_delay,
    check_key,
    check_priority,
    check_seconds,
    check_ttl,
    encode_body,
    encode_headers,
    receive_args,
)

# -- send -------------------------------------------------------------------------------------------
_Row = tuple[str, str, int, str | None, str | None, float | None, float | None]


def _prepare(cfg: QueueConfig, item: Outgoing) -> _Row:
    return _prepare_fields(cfg, item.body, item.headers, item.priority, item.group, item.dedup_id, item.delay,
                           item.ttl)


def _prepare_fields(
    cfg: QueueConfig, body: Any, headers: Any, priority: Any, group: Any, dedup_id: Any, delay: Any,
    ttl: Any = None,
) -> _Row:
    body = encode_body(body)
    headers = encode_headers(headers)
    _check_size(cfg, body, headers)
    return (body, headers, check_priority(priority), _group(cfg, group), check_key(dedup_id, "dedup_id"),
            check_delay(delay), check_ttl(ttl))


def _prepare_body(cfg: QueueConfig, body: Any) -> _Row:
    """``_prepare(cfg, Outgoing(body=body))`` without building the ``Outgoing`` or checking its defaults
    (4.6 of 11.9 µs a message in a ``send_batch`` of bare bodies, measured)."""
    body = encode_body(body)
    _check_size(cfg, body, "{}")
    return (body, "{}", 0, _group(cfg, None), None, None, None)


def _check_size(cfg: QueueConfig, body: str, headers: str) -> None:
    size = _utf8_length(body) + _utf8_length(headers)
    if size > cfg.max_message_size:
        raise MessageTooLarge(
            f"message of {size} bytes exceeds queue {cfg.name!r}'s max message size of {cfg.max_message_size} "
            "bytes: send a smaller body (store large payloads elsewhere and send a reference) "
            "or raise the queue's max_message_size"
        )


def _utf8_length(text: str) -> int:
    # An ASCII str is one byte a character, and knows it is ASCII (isascii() reads a flag): no encoding.
    return len(text) if text.isascii() else len(text.encode())


def _group(cfg: QueueConfig, group: Any) -> str | None:
    """The group key stored: a fifo queue puts ungrouped messages in the group ``""``."""
    group = check_key(group, "group")
    return "" if group is None and cfg.kind == "fifo" else group


@tracing.traced_send_batch
@recovers_connection
def send_batch(queue: str, messages: Iterable[Any]) -> list[int]:
    """Send many messages in one statement; return their ids in input order.

    Each item is an :class:`Outgoing` or a bare body. A dedup id already used inside the queue's dedup
    window (or twice in the batch) stores nothing and yields the first message's id.
    """
    cfg = config(queue)
    items = list(messages)
    if not items:
        return []
    if len(items) > MAX_BATCH:
        raise InvalidMessage(f"a batch holds at most {MAX_BATCH} messages, got {len(items)}: split it")
    rows = [_prepare(cfg, item) if isinstance(item, Outgoing) else _prepare_body(cfg, item) for item in items]
    if cfg.max_length is not None:
        return bounded_send(cfg, len(rows), lambda: _send_rows(queue, cfg, rows))
    return _send_rows(queue, cfg, rows)


def _send_rows(queue: str, cfg: QueueConfig, rows: list[_Row]) -> list[int]:
    """Send prepared rows: ``sql.SEND_FAST`` without dedup ids, else ``sql.SEND``."""
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
        "ttls": [r[6] for r in send_rows],
    }
    with hot_cursor() as cur:
        cur.execute(sql.SEND, params)
        result = cur.fetchall()
        if result and not result[0][4]:
            # The cached id is gone: the queue was deleted (and maybe made again) by another process.
            clear_cache(queue)
            params["queue_id"] = cfg.id = config(queue).id
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


def _send_fast(queue: str, cfg: QueueConfig, rows: list[tuple]) -> list[int]:
    """Send messages without dedup ids (``sql.SEND_FAST``): columns that only hold defaults go as NULL."""
    params = {
        "queue_id": cfg.id,
        "bodies": "[" + ",".join([r[0] for r in rows]) + "]",
        "headers": None if all(r[1] == "{}" for r in rows) else "[" + ",".join([r[1] for r in rows]) + "]",
        "priorities": None if all(r[2] == 0 for r in rows) else [r[2] for r in rows],
        "groups": None if all(r[3] is None for r in rows) else [r[3] for r in rows],
        "delays": None if all(r[5] is None for r in rows) else [r[5] for r in rows],
        "ttls": None if all(r[6] is None for r in rows) else [r[6] for r in rows],
    }
    with hot_cursor() as cur:
        cur.execute(sql.SEND_FAST, params)
        result = cur.fetchall()
        if not result:
            # The cached id is gone: the queue was deleted (and maybe made again) by another process.
            clear_cache(queue)
            params["queue_id"] = cfg.id = config(queue).id
            cur.execute(sql.SEND_FAST, params)
            result = cur.fetchall()
    return [r[0] for r in result]


@tracing.traced_send
@recovers_connection
def send(
    queue: str,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    delay: float | timedelta | None = None,
    priority: int = 0,
    group: str | None = None,
    dedup_id: str | None = None,
    ttl: float | timedelta | None = None,
) -> int:
    """Send one message to ``queue`` and return its id.

    ``delay`` (seconds) defaults to the queue's default delay; ``priority`` is -100..100, larger
    first; ``group`` orders fifo queues; ``dedup_id`` makes a repeat inside the dedup window a no-op
    that returns the first message's id; ``ttl`` (seconds, default the queue's ``message_ttl``) is how
    long it may wait once available before it expires. A queue at its ``max_length`` raises
    :class:`QueueFull` (``overflow="reject"``) or makes room (``"drop_oldest"``).
    """
    if dedup_id is None:
        # The common case, without the batch bookkeeping.
        cfg = config(queue)
        rows = [_prepare_fields(cfg, body, headers, priority, group, None, delay, ttl)]
        if cfg.max_length is not None:
            return bounded_send(cfg, 1, lambda: _send_fast(queue, cfg, rows))[0]
        return _send_fast(queue, cfg, rows)[0]
    return send_batch(
        queue, [Outgoing(body=body, headers=headers, delay=delay, priority=priority, group=group, dedup_id=dedup_id,
                         ttl=ttl)]
    )[0]


# -- commit mode -----------------------------------------------------------------------------------
def _async_commit(db: Any) -> bool:
    """Whether a lease-only change (receive, ack, nack, extend, release) may commit without waiting for
    the WAL flush (``sql._ASYNC_COMMIT``): lost in a server crash it only causes a redelivery.

    Never inside the caller's transaction (``atomic()``, or autocommit turned off): the setting would
    cover the caller's own writes too, and an atomic handler's writes and its ack must stay as durable
    as any other commit. Ask after ``hot_cursor()``: Django knows its autocommit mode once connected.
    """
    return db.autocommit and not db.in_atomic_block and bool(conf.get("ASYNC_COMMIT_LEASES"))


# -- receive --------------------------------------------------------------------------------------
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


# The claim floor of a standard queue (see docs/engine.md, "Claim floor"). A claim walks the queue's claim
# index from its lowest id; under a held snapshot (a long transaction, a replica's hot_standby_feedback)
# every acked or leased version stays behind in that index and each claim would visit all of them. So
# each process remembers, per queue, an id below which its last exhaustive claim found nothing ready
# (less FLOOR_SLACK ids: a producer's lower id may commit after a higher one), claims from there, and
# scans from the start at least every FULL_SCAN_EVERY seconds: a message that becomes ready again below
# the floor (nack backoff, an expired lease, a late commit, a redrive or move) waits at most that long.
FULL_SCAN_EVERY = 1.0
FLOOR_SLACK = 1000

# Each claim writes a queues_lease row (the in-flight count's, sql.STATS). prune() deletes those whose
# end has passed, but a process that only calls receive() may never run prune, so every process that
# claims also clears its queues' run-out batches, at most every LEASE_SWEEP_EVERY seconds a queue:
# the table then holds about a visibility timeout's claims whoever runs the upkeep.
LEASE_SWEEP_EVERY = 10.0


def _claim_standard(cur: Any, queue_id: int, params: dict[str, Any], limit: int) -> list[tuple]:
    now = time.monotonic()
    floor, full_at = claim_floors.get(queue_id, (0, -FULL_SCAN_EVERY))
    full = now - full_at >= FULL_SCAN_EVERY
    params["floor"] = 0 if full else floor
    cur.execute(sql.RECEIVE_STANDARD, params)
    rows = cur.fetchall()
    if rows:
        # Every ready, unlocked message at or above the scan's start, of the priorities the claim
        # reached, was taken: below the lowest one nothing of those priorities is ready (as of this
        # snapshot). A claim that filled its limit did not reach the lower priorities: until the next
        # full claim, their messages below the floor wait (at most FULL_SCAN_EVERY, docs/engine.md).
        seen = min(r[0] for r in rows) - FLOOR_SLACK
        floor = seen if full else max(floor, seen)
    claim_floors[queue_id] = (floor, now if full else full_at)
    return rows


def claim(cfg: QueueConfig, limit: int, visibility_timeout: float | None) -> list[Delivery]:
    """One claim of up to ``limit`` ready messages of the queue ``cfg`` (no waiting): what receive repeats."""
    params: dict[str, Any] = {"queue_id": cfg.id, "limit": limit, "vt": visibility_timeout}
    with hot_cursor() as cur:
        params["async_commit"] = _async_commit(cur.db)
        if cfg.kind == "fifo":
            after = fifo_positions.get(cfg.id)
            params.update(after=after, max_groups=FIFO_MAX_GROUPS)
            cur.execute(sql.RECEIVE_FIFO_FIRST if after is None else sql.RECEIVE_FIFO, params)
            rows = cur.fetchall()
            if len(rows) < limit and after is not None:
                # Wrap around: the walk started mid-way through the groups.
                params.update(after=None, limit=limit - len(rows))
                cur.execute(sql.RECEIVE_FIFO_FIRST, params)
                rows += cur.fetchall()
                # Two statements' rows: put them back in the order receive() promises.
                rows.sort(key=lambda r: (-r[3], r[0]))
            fifo_positions[cfg.id] = max((r[4] for r in rows), default=None)
        elif cfg.limited:
            rows = _claim_limited(cur, cfg, params)
        else:
            rows = _claim_standard(cur, cfg.id, params, limit)
        now = time.monotonic()
        if rows and now - lease_sweeps.get(cfg.id, -LEASE_SWEEP_EVERY) >= LEASE_SWEEP_EVERY:
            lease_sweeps[cfg.id] = now
            cur.execute(sql.SWEEP_LEASES, {"queue_id": cfg.id})
    name = cfg.name
    deliveries = [
        delivery_of(
            r[0], name, loads_column(r[1]), {} if r[2] == "{}" else loads_column(r[2]), r[3], r[4],
            r[5], r[6], r[7], _make_receipt(r[0], r[8]), r[9], r[1], r[10],
        )
        for r in rows
    ]
    if any(r[10] is not None for r in rows):
        return _without_expired(deliveries)
    return deliveries


def _without_expired(deliveries: list[Delivery]) -> list[Delivery]:
    """Drop (or dead-letter, or cancel) the deliveries whose expiry passed before they were handed out:
    an expired message is never returned by a receive. Compared with this process's clock."""
    now = datetime.now(UTC)
    expired = [d.receipt for d in deliveries if d.expires_at is not None and d.expires_at <= now]
    if not expired:
        return deliveries
    expire_held(expired)
    gone = set(expired)
    return [d for d in deliveries if d.receipt not in gone]


@recovers_connection
def expire_held(receipts: Sequence[str], *, cancel: bool = False) -> list[tuple[int, int, bool, bool]]:
    """End held deliveries as expired (the queue's ``expiry_action``) or, with ``cancel`` or a cancel
    request on record, as cancelled (deleted); by receipt, while the lease holds, in one statement.

    Returns ``(message id, queue id, cancelled, dead-lettered)`` per message ended; stale receipts
    are left alone (their message is someone else's now).
    """
    receipts = list(receipts)
    if not receipts:
        return []
    _, params = _split(receipts)
    with hot_cursor() as cur:
        cur.execute(sql.EXPIRE_HELD, {**params, "cancel": bool(cancel)})
        return [tuple(r) for r in cur.fetchall()]


def _claim_limited(cur: Any, cfg: QueueConfig, params: dict[str, Any]) -> list[tuple]:
    """The claim of a queue with flow limits (``flow_sql.RECEIVE_LIMITED``). A claim that came back short
    while ready messages wait was held back by the limits: noted, so a worker tries again when a token or
    a slot may be free rather than backing off as from an empty queue (``limits.retry_hint``)."""
    if cfg.limits_per_group:
        params = {**params, "candidates": max(params["limit"] * 10, limits.PER_GROUP_CANDIDATES)}
        cur.execute(flow_sql.RECEIVE_LIMITED_PER_GROUP, params)
    else:
        cur.execute(flow_sql.RECEIVE_LIMITED, params)
    rows = cur.fetchall()
    throttled = False
    if len(rows) < params["limit"]:
        cur.execute(flow_sql.READY_WAITING, {"queue_id": cfg.id})
        throttled = bool(cur.fetchone()[0])
        if throttled and cfg.limits_per_group:
            # New groups got their rows in that statement but nothing from them: once more, now that they can
            # be locked (two statements only when a claim came back short).
            cur.execute(flow_sql.RECEIVE_LIMITED_PER_GROUP, {**params, "limit": params["limit"] - len(rows)})
            rows += cur.fetchall()
            rows.sort(key=lambda r: (-r[3], r[0]))
    if throttled:
        limits.note_throttled(cfg.id, cfg.rate, cfg.concurrency_limit)
    else:
        limits.note_not_throttled(cfg.id)
    return rows


# How often a waiting receive polls even without a notification (delayed messages becoming ready,
# leases running out, or a lost LISTEN connection).
POLL_INTERVAL = 1.0


@recovers_connection
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
    limit, vt, w = receive_args(max_messages, visibility_timeout, wait)
    cfg = config(queue)
    if w <= 0 or conf.db().in_atomic_block:
        # Waiting inside a transaction would hold it open; a caller's transaction gets one try.
        return claim(cfg, limit, vt)
    listener = get_listener()
    deadline = time.monotonic() + w
    while True:
        seen = listener.seq(cfg.id)
        got = claim(cfg, limit, vt)
        left = deadline - time.monotonic()
        if got or left <= 0:
            return got
        # A queue held back by its limits has no NOTIFY to wait for: try again when a token or slot may be free.
        hint = limits.retry_hint(cfg.id) if cfg.limited else None
        listener.wait(cfg.id, seen, min(left, POLL_INTERVAL, hint or POLL_INTERVAL))


# -- ack / nack / extend ----------------------------------------------------------------------------
def _split(receipts: Sequence[str]) -> tuple[list[int], dict[str, str]]:
    """The receipts' message ids, and the ``ids`` and ``held`` parameters of the statements
    (``sql._HELD_BY_RECEIPT``).

    Both are literals built here: digits and hex digits need no quoting, and psycopg's list dumper costs
    more per element (a quoting check each) than the statement's share of the server's work per message.
    """
    ids, tokens = [], []
    for receipt in receipts:
        match = _CANONICAL_RECEIPT.fullmatch(receipt) if isinstance(receipt, str) else None
        if match is not None:
            ids.append(int(match[1]))
            tokens.append(match[2])
        else:
            message_id, token = parse_receipt(receipt)
            ids.append(message_id)
            tokens.append(token.hex)
    if len(set(ids)) == len(ids):
        held = ",".join([f'"{i}":["{t}"]' for i, t in zip(ids, tokens, strict=True)])
    else:
        # The same message twice (a receipt of an earlier lease beside the current one): one key, every
        # token (a JSON object keeps only the last of a repeated key).
        by_id: dict[int, list[str]] = {}
        for i, t in zip(ids, tokens, strict=True):
            by_id.setdefault(i, []).append(t)
        held = ",".join([f'"{i}":["' + '","'.join(ts) + '"]' for i, ts in by_id.items()])
    return ids, {"ids": "{" + ",".join(map(str, ids)) + "}", "held": "{" + held + "}"}


def _stale_message(receipt: str) -> str:
    return (
        f"receipt {receipt!r} is no longer valid: its lease ran out or the message was received again, "
        "acked or moved; the message may be with another consumer now (extend leases that need longer)"
    )


@recovers_connection
def ack_batch(receipts: Sequence[str]) -> AckResult:
    """Acknowledge many deliveries in one statement. Stale receipts are reported, not raised."""
    receipts = list(receipts)
    if not receipts:
        return AckResult()
    ids, params = _split(receipts)
    with hot_cursor() as cur:
        cur.execute(sql.ACK, {**params, "async_commit": _async_commit(cur.db)})
        done = {row[0] for row in cur.fetchall()}
    acked = [r for r, i in zip(receipts, ids, strict=True) if i in done]
    stale = [r for r, i in zip(receipts, ids, strict=True) if i not in done]
    return AckResult(acked=acked, stale=stale)


@recovers_connection
def ack(receipt: str) -> None:
    """Acknowledge one delivery: the message is done and leaves the queue.

    :class:`LeaseExpired` if the lease ran out (nothing changes; the message will be redelivered).
    """
    result = ack_batch([receipt])
    if result.stale:
        raise LeaseExpired(_stale_message(receipt))


@recovers_connection
def nack(receipt: str, *, delay: float | timedelta = 0.0, error: str = "", dead_letter: bool = False) -> bool:
    """Give a delivery back: ready again after ``delay`` seconds, with ``error`` on record.

    ``dead_letter=True`` sends it to the dead-letter queue now, whatever its receive count (a
    handler's own retry limit, or a message that can never succeed); a queue without a dead-letter
    queue takes it back as usual. Returns True if the message went to the dead-letter queue.
    :class:`LeaseExpired` if the lease ran out.
    """
    seconds = check_delay(delay) or 0.0
    if not isinstance(error, str):
        raise InvalidMessage(f"error must be a string, got {error!r}")
    if not isinstance(dead_letter, bool):
        raise InvalidMessage(f"dead_letter must be True or False, got {dead_letter!r}")
    _, params = _split([receipt])
    with hot_cursor() as cur:
        cur.execute(
            sql.NACK,
            {**params, "delay": seconds, "dead_letter": dead_letter,
             "error": text.safe_text(error, max_length=MAX_ERROR_LENGTH), "async_commit": _async_commit(cur.db)},
        )
        row = cur.fetchone()
    if row is None:
        raise LeaseExpired(_stale_message(receipt))
    return bool(row[1])


@recovers_connection
def release_batch(receipts: Sequence[str], *, refund: bool = False) -> list[str]:
    """Give leases back early: the messages are ready again at once, with no error and no failure counted.

    For a consumer that stops before handling what it holds, or for a dead consumer's leases (released
    by another process). ``refund=True`` also takes back the receive, for deliveries that never reached
    a handler. Wakes waiting receivers. Returns the stale receipts (their messages are left alone).
    """
    receipts = list(receipts)
    if not receipts:
        return []
    ids, params = _split(receipts)
    db = conf.db()
    with db.cursor() as cur:
        cur.execute(sql.RELEASE, {**params, "refund": bool(refund), "async_commit": _async_commit(db)})
        rows = cur.fetchall()
        for queue_id in sorted({row[1] for row in rows}):
            cur.execute(sql.NOTIFY, {"queue_id": queue_id})
    done = {row[0] for row in rows}
    return [r for r, i in zip(receipts, ids, strict=True) if i not in done]


@recovers_connection
def extend_batch(receipts: Sequence[str], *, visibility_timeout: float) -> list[str]:
    """Renew many leases to ``visibility_timeout`` seconds from now in one statement; return the stale ones."""
    seconds = check_seconds(
        visibility_timeout, "visibility_timeout", minimum=MIN_VISIBILITY_TIMEOUT, maximum=MAX_VISIBILITY_TIMEOUT
    )
    receipts = list(receipts)
    if not receipts:
        return []
    ids, params = _split(receipts)
    with hot_cursor() as cur:
        cur.execute(sql.EXTEND, {**params, "seconds": seconds, "async_commit": _async_commit(cur.db)})
        done = {row[0] for row in cur.fetchall()}
    return [r for r, i in zip(receipts, ids, strict=True) if i not in done]


@recovers_connection
def extend(receipt: str, *, visibility_timeout: float) -> None:
    """Renew a lease: it now ends ``visibility_timeout`` seconds from now. :class:`LeaseExpired` if it ran out."""
    if extend_batch([receipt], visibility_timeout=visibility_timeout):
        raise LeaseExpired(_stale_message(receipt))


__all__ = [
    "ack", "ack_batch", "extend", "extend_batch", "nack", "parse_receipt", "receive", "release_batch", "send",
    "send_batch",
]
