"""Operator actions and reads: purge, delete, move and retry messages, peek, stats and prune.

None of these is on the hot path; each is one statement of ``sql.py`` (prune: a few per queue).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from queues import conf
from queues.engine import sql
from queues.engine.connection import config, recovers_connection
from queues.engine.errors import QueueNotFound
from queues.engine.text import loads_column
from queues.engine.types import MessageInfo, PruneResult, QueueStats
from queues.engine.validation import BIGINT_MAX, INT_MAX, check_ids, validate_name


@recovers_connection
def purge(queue: str) -> int:
    """Delete every message of ``queue`` (ready, delayed and in flight); return how many."""
    cfg = config(queue)
    with conf.db().cursor() as cur:
        cur.execute(sql.PURGE, {"queue_id": cfg.id})
        return cur.fetchone()[0]


@recovers_connection
def delete_messages(queue: str, ids: Iterable[int]) -> int:
    """Delete the given messages of ``queue``; return how many existed."""
    cfg = config(queue)
    with conf.db().cursor() as cur:
        cur.execute(sql.DELETE_MESSAGES, {"queue_id": cfg.id, "ids": check_ids(ids)})
        return cur.fetchone()[0]


@recovers_connection
def move_messages(queue: str, ids: Iterable[int], *, to: str) -> int:
    """Move the given messages of ``queue`` to the queue ``to``, ready at once with a fresh receive count.

    Messages in flight are left where they are. Returns how many moved.
    """
    source = config(queue)
    target = config(to)
    if source.id == target.id:
        raise ValueError(f"cannot move messages from {queue!r} to itself")
    with conf.db().cursor() as cur:
        cur.execute(
            sql.MOVE_MESSAGES,
            {"queue_id": source.id, "ids": check_ids(ids), "to_id": target.id, "to_fifo": target.kind == "fifo",
             "queue_name": queue},
        )
        moved = cur.fetchone()[0]
        if moved:
            cur.execute(sql.NOTIFY, {"queue_id": target.id})
    return moved


@recovers_connection
def retry_now(queue: str, ids: Iterable[int]) -> int:
    """Make the given delayed (or backing-off) messages ready now; return how many changed."""
    cfg = config(queue)
    with conf.db().cursor() as cur:
        cur.execute(sql.RETRY_NOW, {"queue_id": cfg.id, "ids": check_ids(ids)})
        changed = cur.rowcount
        if changed:
            cur.execute(sql.NOTIFY, {"queue_id": cfg.id})
    return changed



@recovers_connection
def peek(
    queue: str, *, limit: int = 20, after_id: int | None = None, ids: Iterable[int] | None = None
) -> list[MessageInfo]:
    """Browse messages of ``queue`` in id order without changing their delivery state."""
    cfg = config(queue)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValueError(f"limit must be an integer from 1 to 1000, got {limit!r}")
    if after_id is not None and (isinstance(after_id, bool) or not isinstance(after_id, int)
                                 or not 0 <= after_id <= BIGINT_MAX):
        raise ValueError(f"after_id must be an integer from 0 to {BIGINT_MAX}, got {after_id!r}")
    with conf.db().cursor() as cur:
        cur.execute(
            sql.PEEK,
            {"queue_id": cfg.id, "after": after_id, "limit": limit, "ids": None if ids is None else check_ids(ids)},
        )
        rows = cur.fetchall()
        cur.execute(sql.IS_DEAD_LETTER_QUEUE, [cfg.id])
        is_dlq = cur.fetchone() is not None
    # deferred: models need the app registry, and the engine is importable before it is ready
    from queues.models import MessageState

    out = []
    for r in rows:
        # PEEK computed "leased" (r[9]) and "not available yet" (r[14]) at the statement's time: the same
        # rule as MessageState.of, with the database's clock.
        if r[9]:
            state = MessageState.IN_FLIGHT
        elif r[14]:
            state = MessageState.DELAYED
        elif is_dlq:
            state = MessageState.DEAD
        else:
            state = MessageState.READY
        out.append(
            MessageInfo(
                id=r[0], queue=queue, state=state, body=loads_column(r[1]), headers=loads_column(r[2]), priority=r[3],
                group=r[4], dedup_id=r[5], receive_count=r[6], enqueued_at=r[7], available_at=r[8],
                last_error=r[10], history=loads_column(r[11]), origin_queue=r[12], dead_at=r[13], body_text=r[1],
            )
        )
    return out


@recovers_connection
def prune(*, batch: int = 5000) -> PruneResult:
    """Remove messages past their queue's retention (never ones in flight) and expired dedup ids.

    Works in batches of ``batch`` per queue so it never holds long locks; call it periodically
    (``mq_prune``; workers do it on their own).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= INT_MAX:
        raise ValueError(f"batch must be an integer from 1 to {INT_MAX}, got {batch!r}")
    expired = 0
    with conf.db().cursor() as cur:
        cur.execute(sql.QUEUE_IDS)
        for (queue_id,) in cur.fetchall():
            while True:
                cur.execute(sql.PRUNE_EXPIRED, {"queue_id": queue_id, "limit": batch})
                n = cur.fetchone()[0]
                expired += n
                if n < batch:
                    break
        cur.execute(sql.PRUNE_DEDUP)
        dedup = cur.rowcount
        cur.execute(sql.PRUNE_GROUPS)
        cur.execute(sql.PRUNE_LEASES)
        cur.execute(sql.COMPACT_COUNTERS, {"unused": 0})
    return PruneResult(expired_messages=expired, expired_dedup_ids=dedup)



@recovers_connection
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
                cur.execute(sql.QUEUE_NAMES_BY_ID, [dlq_ids])
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


@recovers_connection
def queue_stats(queue: str) -> QueueStats:
    """Live counts of one queue."""
    found = stats([queue])
    if not found:
        raise QueueNotFound(f"queue {queue!r} does not exist")
    return found[0]


def as_dict(value: Any) -> dict[str, Any]:
    """A dataclass result as a plain dict (for JSON output)."""
    return asdict(value)


__all__ = [
    "as_dict", "delete_messages", "move_messages", "peek", "prune", "purge", "queue_stats", "retry_now", "stats",
]
