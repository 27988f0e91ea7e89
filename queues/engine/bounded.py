"""Bounded queues: a send to a queue with a ``max_length`` keeps it at or under that many live messages.

Race-free under concurrent producers: each such send takes a per-queue advisory lock
(``sql.LOCK_QUEUE_SENDS``, held until its transaction ends) before its send statement, then reads the
queue's depth (its counter slots, which the send statement bumped) after its own insert. Producers of
one bounded queue therefore run one after another, and each sees every message sent before it. What
is over the limit is refused (``overflow="reject"``: :class:`~queues.engine.errors.QueueFull`, the
savepoint rolls the send back, nothing written) or made room for (``"drop_oldest"``: the oldest
waiting messages go to the dead-letter queue, or are deleted without one, in the same transaction).
Unbounded queues never take the lock: their sends cost what they did.

What the limit counts: every live message (ready, delayed and in flight), as the ``depth`` counter
does. Only sends are held to it; publishes to topics, moves, redrives and dead letters arriving are
not refused (a queue can be over its limit after those, and sends then make room or are refused).
"""

from __future__ import annotations

from collections.abc import Callable

from queues import conf
from queues.engine import sql
from queues.engine.connection import QueueConfig, hot_cursor
from queues.engine.errors import QueueFull

LOCK_CLASS = int.from_bytes(b"mqbq", "big") & 0x7FFFFFFF
"""The first key of the per-queue send lock (the second is the queue id)."""


def bounded_send(cfg: QueueConfig, count: int, send: Callable[[], list[int]]) -> list[int]:
    """Run ``send`` (the statement that stores ``count`` messages in the bounded queue ``cfg``) under the
    queue's send lock, then hold the queue to its ``max_length``; return the ids ``send`` returned."""
    limit = cfg.max_length
    assert limit is not None
    if count > limit:
        raise QueueFull(
            f"a batch of {count} messages can never fit queue {cfg.name!r} (max_length {limit}): "
            "send fewer at a time or raise the queue's max_length"
        )
    # A savepoint inside the caller's transaction, so a refused send leaves the caller's work alone.
    with conf.atomic():
        with hot_cursor() as cur:
            cur.execute(sql.LOCK_QUEUE_SENDS, {"lock_class": LOCK_CLASS, "queue_id": cfg.id})
        ids = send()
        with hot_cursor() as cur:
            cur.execute(sql.QUEUE_DEPTH, {"queue_id": cfg.id})
            over = int(cur.fetchone()[0]) - limit
            if over > 0 and cfg.overflow == "drop_oldest":
                cur.execute(sql.DROP_OLDEST, {"queue_id": cfg.id, "keep": ids, "limit": over})
                over -= int(cur.fetchone()[0])
        if over > 0:
            how = (
                "no older waiting message could make room (they are all in flight)"
                if cfg.overflow == "drop_oldest"
                else "its overflow is 'reject'"
            )
            raise QueueFull(
                f"queue {cfg.name!r} is full (max_length {limit}) and {how}: nothing was sent; retry later, "
                "consume faster, or raise max_length"
            )
    return ids


__all__ = ["bounded_send"]
