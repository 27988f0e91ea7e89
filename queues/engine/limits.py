"""A queue's flow limits: a rate limit (``100/s``, ``5000/min``, ``10/h``, with an optional burst) and a
concurrency limit (most messages in flight at once), across every worker and machine.

The settings are queue settings like any other (``queues.create_queue(..., rate_limit="100/s",
rate_burst=20, concurrency_limit=3)``, ``update_queue``, ``mq_queue``, the dashboard's form); the claims
that enforce them are in :mod:`queues.engine.flow_sql`. This module turns the settings' text into
values (:func:`parse_rate`, :func:`clean_limit_settings`), keeps the queue's flow row in step with them
(:func:`apply_limits`), reads the limits' live state for the dashboard (:func:`flow_status`), and tells a
worker when a throttled queue is worth claiming again (:func:`retry_hint`).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from queues import conf
from queues.engine import flow_sql
from queues.engine.errors import InvalidQueueSettings

# Units of a rate's period: the spellings accepted, and their length in seconds.
PERIODS: dict[str, float] = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
MAX_RATE_COUNT = 1_000_000
"""Largest N of a rate limit ``N/period``, and largest burst."""
MAX_CONCURRENCY = 10_000
"""Largest concurrency limit (the most a claim can lease at once, ``MAX_BATCH``)."""
# Digits are ASCII only: int() would also take "٥" or "５", which nobody means in a rate.
_RATE_RE = re.compile(r"([0-9]{1,9})\s*/\s*([a-z]+)", re.ASCII)
# The settings this module owns, as callers spell them.
LIMIT_SETTINGS = ("rate_limit", "rate_burst", "concurrency_limit", "limits_per_group")
PER_GROUP_CANDIDATES = 1000
"""Ready messages a per-group claim looks at (at least): a group held back by its limit must not hide the
groups behind it, and each look costs an index scan this long."""


@dataclass(frozen=True)
class Rate:
    """A rate limit: at most ``count`` deliveries per ``period`` seconds."""

    count: int
    period: float

    @property
    def per_second(self) -> float:
        """Tokens added to the bucket each second."""
        return self.count / self.period

    @property
    def default_burst(self) -> int:
        """The bucket's size when no burst is given: one second's worth, at least 1."""
        return max(1, math.ceil(self.per_second))

    def __str__(self) -> str:
        unit = {1: "s", 60: "min", 3600: "h", 86400: "d"}.get(int(self.period))
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.period:g}s"


def parse_rate(value: object) -> Rate:
    """A rate limit from its text, ``N/unit`` (``100/s``, ``5000/min``, ``10/h``, ``1/day``), or from a
    :class:`Rate`; :class:`InvalidQueueSettings` naming the value otherwise."""
    if isinstance(value, Rate):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidQueueSettings(f"rate_limit must be text like '100/s' or '5000/min', got {value!r}")
    match = _RATE_RE.fullmatch(value.strip().lower())
    if match is None:
        raise InvalidQueueSettings(
            f"rate_limit must be a whole number of deliveries per unit, like '100/s', '5000/min' or '10/h' "
            f"(units: s, min, h, day), got {value!r}"
        )
    count, unit = int(match[1]), match[2]
    if unit not in PERIODS:
        raise InvalidQueueSettings(
            f"rate_limit {value!r} has an unknown unit {unit!r}: use s, min, h or day (for example '10/h')"
        )
    if not 1 <= count <= MAX_RATE_COUNT:
        raise InvalidQueueSettings(
            f"rate_limit must allow 1 to {MAX_RATE_COUNT} deliveries per period, got {value!r} "
            "(to stop deliveries, pause the queue; to remove the limit, set it to none)"
        )
    return Rate(count, PERIODS[unit])


def _positive(value: object, setting: str, maximum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidQueueSettings(
            f"{setting} must be an integer from 1 to {maximum} or None (no limit), got {value!r}"
        )
    return value


def clean_limit_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The model fields for the limit settings among ``values`` (``rate_limit``: text or None,
    ``rate_burst``, ``concurrency_limit``: integers or None; ``limits_per_group``: a bool);
    :class:`InvalidQueueSettings` for a bad one."""
    out: dict[str, Any] = {}
    if "rate_limit" in values:
        raw = values["rate_limit"]
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none")):
            out.update(rate_limit=None, rate_period=None)
        else:
            rate = parse_rate(raw)
            out.update(rate_limit=rate.count, rate_period=timedelta(seconds=rate.period))
    if "rate_burst" in values:
        out["rate_burst"] = _positive(values["rate_burst"], "rate_burst", MAX_RATE_COUNT)
    if "concurrency_limit" in values:
        out["concurrency_limit"] = _positive(values["concurrency_limit"], "concurrency_limit", MAX_CONCURRENCY)
    if "limits_per_group" in values:
        if not isinstance(values["limits_per_group"], bool):
            raise InvalidQueueSettings(f"limits_per_group must be True or False, got {values['limits_per_group']!r}")
        out["limits_per_group"] = values["limits_per_group"]
    return out


def rate_of(queue: Any) -> Rate | None:
    """The rate limit of a ``Queue`` row, or None."""
    if queue.rate_limit is None or queue.rate_period is None:
        return None
    return Rate(queue.rate_limit, queue.rate_period.total_seconds())


def check_limits(queue: Any) -> None:
    """Refuse limits the queue cannot have (called with the queue's new values, before saving)."""
    if queue.rate_burst is not None and queue.rate_limit is None:
        raise InvalidQueueSettings(f"queue {queue.name!r}: rate_burst needs a rate_limit (set both, or neither)")
    if (queue.rate_limit is not None or queue.concurrency_limit is not None) and queue.kind == "fifo":
        raise InvalidQueueSettings(
            f"queue {queue.name!r} is a fifo queue: rate and concurrency limits apply to standard queues only "
            "(a fifo group already has one message in flight at a time)"
        )


def apply_limits(queue: Any, *, rate_changed: bool, per_group_changed: bool = False) -> None:
    """Bring the queue's flow row in step with its saved limits, in the caller's transaction: made on the
    first limit, the bucket filled for a new or changed rate, the leases in flight listed when a
    concurrency limit starts (so it counts them at once). A queue without limits keeps its row idle.
    Per group key, the claims make each group's row when they first see the group; switching between
    per queue and per group starts the rows afresh."""
    if per_group_changed:
        with conf.db().cursor() as cur:
            cur.execute(flow_sql.CLEAR_FLOW, {"queue_id": queue.pk})
    rate = rate_of(queue)
    if (rate is None and queue.concurrency_limit is None) or queue.limits_per_group:
        return
    burst = queue.rate_burst or (rate.default_burst if rate else 0)
    params = {
        "queue_id": queue.pk,
        "tokens": float(burst),
        "refill": rate_changed,
        "track": queue.concurrency_limit is not None,
    }
    with conf.db().cursor() as cur:
        cur.execute(flow_sql.SETUP_FLOW, params)


@dataclass(frozen=True)
class FlowStatus:
    """A limited queue's live state: tokens in the bucket now (None without a rate limit), leases held
    against the concurrency limit, and deliveries granted through the limits so far."""

    tokens: float | None
    held: int
    taken: int
    groups: int = 0


def flow_status(queue_id: int, *, per_group: bool = False) -> FlowStatus | None:
    """The live state of a queue's limits (one small read of its flow rows), None if it has none.
    ``per_group``: totals over the queue's group rows (``tokens`` is then None)."""
    with conf.db().cursor() as cur:
        cur.execute(flow_sql.FLOW_STATUS, {"queue_id": queue_id, "per_group": per_group})
        row = cur.fetchone()
    return None if row is None else FlowStatus(row[0], row[1], row[2], row[3])


def prune_idle_groups(batch: int = 5000) -> int:
    """Delete the rows of group keys idle long enough to be as new (upkeep job ``flow_groups``); how many."""
    with conf.db().cursor() as cur:
        cur.execute(flow_sql.PRUNE_IDLE_GROUPS, {"limit": batch})
        return cur.rowcount


# -- a throttled claim ------------------------------------------------------------------------------
# Shortest pause between claims of a throttled queue, so a fast limit does not become a busy loop.
MIN_RETRY_HINT = 0.02
# A concurrency limit frees a slot when another worker acks, which wakes nobody: look again this soon.
CONCURRENCY_RETRY_HINT = 0.05
# queue id -> (monotonic time of the claim, seconds until another claim is worth it), written by
# delivery.claim after a limited claim that came back short while ready messages waited.
_throttled: dict[int, tuple[float, float]] = {}


def note_throttled(queue_id: int, rate: float | None, concurrency_limit: int | None) -> None:
    """Record that a claim of the queue came back short because of its limits, not for want of messages."""
    hints = []
    if rate is not None:
        hints.append(max(1.0 / rate, MIN_RETRY_HINT))
    if concurrency_limit is not None:
        hints.append(CONCURRENCY_RETRY_HINT)
    _throttled[queue_id] = (time.monotonic(), min(hints))


def note_not_throttled(queue_id: int) -> None:
    """Forget a queue's throttled mark (its last claim was not held back by its limits)."""
    _throttled.pop(queue_id, None)


def retry_hint(queue_id: int) -> float | None:
    """Seconds after which a claim of the queue is worth trying again, when its last short claim (in this
    process, within the last second) was held back by its limits; None otherwise."""
    hit = _throttled.get(queue_id)
    if hit is None or time.monotonic() - hit[0] > 1.0:
        return None
    return hit[1]


__all__ = ["FlowStatus", "Rate", "flow_status", "parse_rate", "prune_idle_groups", "retry_hint"]
