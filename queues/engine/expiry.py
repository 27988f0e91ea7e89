"""Message expiry (time to live): the sweep that ends expired messages, and the flow counters.

A message's ``expires_at`` is set at send (its ``ttl``, else its queue's ``message_ttl``, counted from
when it becomes available). After it, the message is never handed out: a receive that claims it ends
it instead (``delivery.expire_held``), and the upkeep job ``expiry`` (:func:`expire_due`, every few
seconds) ends those nobody receives. Ending means the queue's ``expiry_action``: dropped, or moved to
its dead-letter queue (dropped when it has none), counted in ``expired``. A message in flight when
its expiry passes is its holder's: the handler finishes, and only if it comes back (nack, lease run
out) is it ended.
"""

from __future__ import annotations

from dataclasses import dataclass

from queues import conf
from queues.engine import sql
from queues.engine.connection import recovers_connection


@dataclass(frozen=True, slots=True)
class FlowTotals:
    """Messages a queue ended by flow control, since it was made."""

    expired: int = 0
    """Dropped or dead-lettered because their time to live ran out."""
    cancelled: int = 0
    """Cancelled by an operator (waiting, or in flight and stopped by its handler)."""
    overflowed: int = 0
    """Dropped or dead-lettered to make room in a full ``drop_oldest`` queue."""


@recovers_connection
def expire_due(*, batch: int = 5000) -> int:
    """End up to ``batch`` messages whose expiry passed and that nobody holds; return how many.

    The upkeep job ``expiry`` calls it; safe from any number of processes at once (``SKIP LOCKED``).
    """
    with conf.db().cursor() as cur:
        cur.execute(sql.EXPIRE_DUE, {"limit": batch, "cancel": False})
        return len(cur.fetchall())


@recovers_connection
def flow_totals(names: list[str] | None = None) -> dict[str, FlowTotals]:
    """The :class:`FlowTotals` of the queues ``names`` (every queue when None), by queue name."""
    with conf.db().cursor() as cur:
        cur.execute(sql.FLOW_TOTALS, {"names": names})
        return {name: FlowTotals(int(e), int(c), int(o)) for name, e, c, o in cur.fetchall()}


__all__ = ["FlowTotals", "expire_due", "flow_totals"]
