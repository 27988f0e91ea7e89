"""Cancellation: a waiting message never runs; one in flight is asked to stop.

:func:`cancel` deletes the waiting ones (ready or delayed) in one statement, counted as cancelled.
For one in flight it records the request (``cancel_requested_at``) and sets its expiry to now: the
worker running it finds the request within a second (:func:`requested_among`) and the handler sees
it (``delivery.cancel_requested``, ``delivery.check_cancelled()``); if the handler stops by raising
:class:`~queues.engine.errors.Cancelled` the worker deletes the message as cancelled, and if it comes
back anyway (a nack, a lease that ran out) the next claim drops it as cancelled instead of handing
it out. A handler that finishes despite the request is acked: its work was done.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from queues import conf
from queues.engine import sql
from queues.engine.connection import config, recovers_connection
from queues.engine.delivery import expire_held
from queues.engine.validation import MAX_BATCH, check_ids


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What :func:`cancel` did."""

    cancelled: list[int] = field(default_factory=list)
    """Waiting messages deleted now: they never run."""
    requested: list[int] = field(default_factory=list)
    """Messages in flight whose handler is now asked to stop (newly asked)."""
    in_flight: list[int] = field(default_factory=list)
    """Every message found in flight (asked now or before)."""
    missing: list[int] = field(default_factory=list)
    """Ids not in the queue (done, moved, or never there)."""


@recovers_connection
def cancel(queue: str, ids: Iterable[int]) -> CancelResult:
    """Cancel messages of ``queue`` by id, in one transaction: the waiting ones are deleted (they never
    run), the ones in flight are asked to stop (see the module). At most ``MAX_BATCH`` ids a call."""
    wanted = sorted(set(check_ids(ids)))
    if len(wanted) > MAX_BATCH:
        raise ValueError(f"cancel takes at most {MAX_BATCH} ids a call, got {len(wanted)}: split them")
    if not wanted:
        return CancelResult()
    cfg = config(queue)
    with conf.db().cursor() as cur:
        cur.execute(sql.CANCEL, {"queue_id": cfg.id, "ids": wanted})
        removed, requested, in_flight = cur.fetchone()
    found = set(removed) | set(in_flight)
    return CancelResult(
        cancelled=list(removed),
        requested=list(requested),
        in_flight=list(in_flight),
        missing=[i for i in wanted if i not in found],
    )


@recovers_connection
def requested_among(ids: Iterable[int]) -> set[int]:
    """Which of the messages ``ids`` an operator asked to cancel (primary-key probes)."""
    ids = list(ids)
    if not ids:
        return set()
    with conf.db().cursor() as cur:
        cur.execute(sql.CANCEL_REQUESTED, {"ids": ids})
        return {row[0] for row in cur.fetchall()}


def settle_cancelled(receipt: str) -> bool:
    """End a held delivery as cancelled (deleted, counted, never retried); False if its lease was gone."""
    return bool(expire_held([receipt], cancel=True))


__all__ = ["CancelResult", "cancel", "requested_among", "settle_cancelled"]
