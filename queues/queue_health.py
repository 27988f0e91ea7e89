"""Queue health: one state per queue, computed from the numbers the pages already read.

Not the database's health (that is ``queues/health.py``). Every place that shows a queue's health (the
queue list, the queue page, the overview, the pushed samples, ``mq_stats`` and the Prometheus endpoint)
calls :func:`assess_all`, so the rule lives here only.

The states, worst first (several can hold at once: the worst is the badge, all are the reasons):

- ``retention_risk``: retention deletes the oldest ready message within ``health_retention_warning``
  (default 1 day, at most half the queue's retention), so unreceived work is about to be lost;
- ``stalled``: ready work has waited at least ``health_stalled_after`` (default 5 min), and either no
  live worker serves the queue, or nothing was acked or failed in that time;
- ``dead_letters_growing``: there are more dead letters now than ``health_dead_letter_window`` ago
  (default 15 min): for a queue, in its dead-letter queue; for a dead-letter queue, in itself;
- ``backing_up``: the oldest ready message has waited at least ``health_backing_up_after``
  (default 2 min);
- ``healthy``: none of these.

Paused queues and dead-letter queues are never ``stalled`` or ``backing_up``: nobody is meant to
consume them. Everything comes from :func:`queues.stats` (counter rows and index ranges), the live
workers' heartbeat rows, the queues' settings and, for "since when", one stored sample per queue and
window (an index probe on ``queues_sample_series``): no scan of the message table. Without stored
samples (the sampler not running) the "nothing acked" and "growing" rules cannot be judged and stay
quiet; the "no live worker" rule still holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.utils import timezone

from queues import conf
from queues.engine import QueueStats
from queues.formatting import format_age, format_count, format_duration
from queues.models import Queue, Worker, WorkerState


class HealthState(models.TextChoices):
    """A queue's health, as shown on its badge (values are stable: metrics and ``--json`` use them)."""

    HEALTHY = "healthy", "healthy"
    """Nothing below holds."""
    BACKING_UP = "backing_up", "backing up"
    """The oldest ready message has waited longer than the queue's backing-up threshold."""
    DEAD_LETTERS_GROWING = "dead_letters_growing", "dead letters growing"
    """More dead letters now than one dead-letter window ago."""
    STALLED = "stalled", "stalled"
    """Ready work waits, and no live worker serves the queue or nothing was acked or failed for a while."""
    RETENTION_RISK = "retention_risk", "retention risk"
    """Retention will delete the oldest ready message soon."""


SEVERITY: dict[str, int] = {
    HealthState.HEALTHY: 0,
    HealthState.BACKING_UP: 1,
    HealthState.DEAD_LETTERS_GROWING: 2,
    HealthState.STALLED: 3,
    HealthState.RETENTION_RISK: 4,
}
"""How bad each state is: the badge is the worst that holds; lists sort by it."""

# The pill colour of each state (the dashboard's existing pill classes).
PILL: dict[str, str] = {
    HealthState.HEALTHY: "live",
    HealthState.BACKING_UP: "stale",
    HealthState.DEAD_LETTERS_GROWING: "stale",
    HealthState.STALLED: "dead",
    HealthState.RETENTION_RISK: "dead",
}


@dataclass(frozen=True)
class Thresholds:
    """One queue's health thresholds in seconds (its settings, or these defaults where it has none)."""

    backing_up_after: float = 120.0
    stalled_after: float = 300.0
    dead_letter_window: float = 900.0
    retention_warning: float = 86400.0
    retention: float = 4 * 86400.0
    """The queue's retention itself (not a threshold): when its oldest message is deleted."""


DEFAULTS = Thresholds()
"""The documented defaults (docs/dashboard.md, "Health")."""


@dataclass(frozen=True)
class Baseline:
    """A queue's stored sample at or before some moment: what "since then" compares with."""

    at: datetime
    ready: int
    dead: int
    acked_total: int
    failed_total: int


@dataclass(frozen=True)
class Reason:
    """One state that holds, and why, in words."""

    state: str
    text: str


@dataclass(frozen=True)
class Health:
    """A queue's health: the badge state and every reason (worst first)."""

    state: str = HealthState.HEALTHY
    reasons: tuple[Reason, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        """The badge's words (``backing up``)."""
        return HealthState(self.state).label

    @property
    def severity(self) -> int:
        """0 when healthy, up to 4 (retention risk)."""
        return SEVERITY[self.state]

    @property
    def pill(self) -> str:
        """The pill colour class suffix (``live``, ``stale``, ``dead``)."""
        return PILL[self.state]

    @property
    def detail(self) -> str:
        """Every reason in one line, for a tooltip or a table cell."""
        return "; ".join(r.text for r in self.reasons) or "no threshold crossed"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"state", "label", "pill", "detail", "reasons": [{"state", "text"}]}``."""
        return {
            "state": self.state,
            "label": self.label,
            "pill": self.pill,
            "detail": self.detail,
            "reasons": [{"state": r.state, "text": r.text} for r in self.reasons],
        }


def _seconds(value: timedelta | None, default: float) -> float:
    return default if value is None else value.total_seconds()


def thresholds_of(queue: Queue) -> Thresholds:
    """The thresholds of ``queue``: its own settings, the defaults where it has none."""
    return Thresholds(
        backing_up_after=_seconds(queue.health_backing_up_after, DEFAULTS.backing_up_after),
        stalled_after=_seconds(queue.health_stalled_after, DEFAULTS.stalled_after),
        dead_letter_window=_seconds(queue.health_dead_letter_window, DEFAULTS.dead_letter_window),
        retention_warning=_seconds(queue.health_retention_warning, DEFAULTS.retention_warning),
        retention=queue.retention.total_seconds(),
    )


def assess(
    s: QueueStats,
    *,
    thresholds: Thresholds = DEFAULTS,
    workers: int = 0,
    progress: Baseline | None = None,
    dead_before: Baseline | None = None,
) -> Health:
    """The health of one queue from its live numbers (pure: no database).

    ``workers``: live workers serving it; ``progress``: its sample from ``stalled_after`` ago or
    earlier; ``dead_before``: its sample from ``dead_letter_window`` ago or earlier (None: unknown).
    """
    t = thresholds
    reasons: list[Reason] = []
    age = s.oldest_ready_age
    if s.ready > 0 and age is not None:
        warning = min(t.retention_warning, t.retention / 2)
        left = t.retention - age
        if left <= warning:
            reasons.append(
                Reason(
                    HealthState.RETENTION_RISK,
                    f"retention ({format_duration(t.retention)}) deletes the oldest ready message "
                    f"in {format_age(max(0.0, left))}",
                )
            )
    consumed = not s.paused and not s.is_dead_letter_queue
    if consumed and s.ready > 0 and age is not None and age >= t.stalled_after:
        if workers == 0:
            reasons.append(
                Reason(
                    HealthState.STALLED,
                    f"{format_count(s.ready)} ready, waiting {format_age(age)}, and no live worker serves it",
                )
            )
        elif progress is not None and s.acked_total == progress.acked_total and s.failed_total == progress.failed_total:
            since = (timezone.now() - progress.at).total_seconds()
            reasons.append(
                Reason(
                    HealthState.STALLED,
                    f"{format_count(s.ready)} ready and nothing acked or failed for {format_age(since)}",
                )
            )
    if dead_before is not None:
        now_dead, then_dead = (s.ready, dead_before.ready) if s.is_dead_letter_queue else (s.dead, dead_before.dead)
        if now_dead > then_dead:
            reasons.append(
                Reason(
                    HealthState.DEAD_LETTERS_GROWING,
                    f"{format_count(now_dead - then_dead)} more dead letters than "
                    f"{format_duration(t.dead_letter_window)} ago ({format_count(now_dead)} now)",
                )
            )
    if consumed and s.ready > 0 and age is not None and age >= t.backing_up_after:
        reasons.append(
            Reason(
                HealthState.BACKING_UP,
                f"the oldest ready message has waited {format_age(age)} "
                f"(threshold {format_duration(t.backing_up_after)})",
            )
        )
    if not reasons:
        return Health()
    reasons.sort(key=lambda r: -SEVERITY[r.state])
    return Health(state=reasons[0].state, reasons=tuple(reasons))


# -- reading what assess() needs --------------------------------------------------------------------
def live_workers_by_queue(now: datetime | None = None) -> tuple[int, dict[str, int]]:
    """How many workers beat on time (``conf.worker_stale_after``), and how many of them serve each queue."""
    cutoff = (now or timezone.now()) - timedelta(seconds=conf.worker_stale_after())
    online = 0
    per_queue: dict[str, int] = {}
    for names in Worker.objects.filter(state=WorkerState.LIVE, last_beat_at__gte=cutoff).values_list(
        "queues", flat=True
    ):
        online += 1
        for name in set(names or ()):
            per_queue[name] = per_queue.get(name, 0) + 1
    return online, per_queue


def _sample_at_or_before(since: str) -> str:
    """The newest stored sample of ``q.name`` at or before ``q.<since>``: 1 s samples, else 60 s ones."""
    return f"""(
    SELECT * FROM (
        (SELECT at, ready, dead, acked_total, failed_total FROM queues_sample
         WHERE queue_name = q.name AND resolution = 1
           AND at <= q.{since} AND at >= q.{since} - interval '1 hour'
         ORDER BY at DESC LIMIT 1)
        UNION ALL
        (SELECT at, ready, dead, acked_total, failed_total FROM queues_sample
         WHERE queue_name = q.name AND resolution = 60
           AND at <= q.{since} AND at >= q.{since} - interval '1 day'
         ORDER BY at DESC LIMIT 1)
    ) u ORDER BY at DESC LIMIT 1
)"""


# One statement for everything assess() needs beyond the live counts: each queue's thresholds and
# retention, and its newest stored sample at or before the start of each window (from the 1 s samples
# or, past their retention, the 60 s ones): two index probes per window on queues_sample_series. The
# lower bounds on `at` keep the planner on that index (without them it may walk (resolution, at)
# backwards for a queue with no samples at all).
INPUTS = f"""
WITH q AS (
    SELECT name, retention, health_backing_up_after, health_stalled_after, health_dead_letter_window,
           health_retention_warning,
           %(now)s::timestamptz - coalesce(health_stalled_after, %(stalled)s::interval) AS progress_since,
           %(now)s::timestamptz - coalesce(health_dead_letter_window, %(window)s::interval) AS dead_since
    FROM queues_queue WHERE name = ANY(%(names)s::text[])
)
SELECT q.name, q.retention, q.health_backing_up_after, q.health_stalled_after, q.health_dead_letter_window,
       q.health_retention_warning,
       p.at, p.ready, p.dead, p.acked_total, p.failed_total,
       d.at, d.ready, d.dead, d.acked_total, d.failed_total
FROM q
LEFT JOIN LATERAL {_sample_at_or_before('progress_since')} p ON true
LEFT JOIN LATERAL {_sample_at_or_before('dead_since')} d ON true
"""


@dataclass(frozen=True)
class Inputs:
    """What :func:`assess` needs of one queue beyond its live counts."""

    thresholds: Thresholds
    progress: Baseline | None
    dead_before: Baseline | None


def _baseline(row: Sequence[Any]) -> Baseline | None:
    at, ready, dead, acked, failed = row
    if at is None:
        return None
    return Baseline(at=at, ready=int(ready), dead=int(dead), acked_total=int(acked), failed_total=int(failed))


def read_inputs(names: Sequence[str], *, now: datetime) -> dict[str, Inputs]:
    """Thresholds and window-start samples of the queues ``names`` (:data:`INPUTS`, one statement)."""
    if not names:
        return {}
    with conf.db().cursor() as cur:
        cur.execute(
            INPUTS,
            {
                "names": list(names),
                "now": now,
                "stalled": timedelta(seconds=DEFAULTS.stalled_after),
                "window": timedelta(seconds=DEFAULTS.dead_letter_window),
            },
        )
        rows = cur.fetchall()
    out = {}
    for row in rows:
        name, retention, backing_up, stalled, window, warning = row[:6]
        out[name] = Inputs(
            thresholds=Thresholds(
                backing_up_after=_seconds(backing_up, DEFAULTS.backing_up_after),
                stalled_after=_seconds(stalled, DEFAULTS.stalled_after),
                dead_letter_window=_seconds(window, DEFAULTS.dead_letter_window),
                retention_warning=_seconds(warning, DEFAULTS.retention_warning),
                retention=retention.total_seconds(),
            ),
            progress=_baseline(row[6:11]),
            dead_before=_baseline(row[11:16]),
        )
    return out


def assess_all(
    stats: Sequence[QueueStats],
    *,
    workers: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> dict[str, Health]:
    """The health of every queue in ``stats``: one statement (:data:`INPUTS`) whatever the backlog, and
    one more for the live workers unless the caller has them (``workers``: live workers per queue)."""
    if not stats:
        return {}
    now = now or timezone.now()
    if workers is None:
        workers = live_workers_by_queue(now)[1]
    inputs = read_inputs([s.queue for s in stats], now=now)
    out: dict[str, Health] = {}
    for s in stats:
        got = inputs.get(s.queue)
        if got is None:  # deleted between the two reads
            out[s.queue] = Health()
            continue
        out[s.queue] = assess(
            s,
            thresholds=got.thresholds,
            workers=workers.get(s.queue, 0),
            progress=got.progress,
            dead_before=got.dead_before,
        )
    return out


def counts(healths: Iterable[Health]) -> dict[str, int]:
    """How many queues are in each unhealthy state (by badge), worst first; healthy ones are left out."""
    found: dict[str, int] = {}
    for h in healths:
        if h.state != HealthState.HEALTHY:
            found[h.state] = found.get(h.state, 0) + 1
    return dict(sorted(found.items(), key=lambda kv: -SEVERITY[kv[0]]))


def summary(healths: Iterable[Health]) -> str:
    """``2 stalled, 1 backing up`` (worst first), or ``all healthy``."""
    found = counts(healths)
    if not found:
        return "all healthy"
    return ", ".join(f"{n} {HealthState(state).label}" for state, n in found.items())
