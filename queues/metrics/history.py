"""Reading the stored history (``QueueSample`` rows) for the server-rendered pages.

The charts' series are ``series.py``; this module answers the pages' two questions of the history:
each queue's rates now (its last two 1 s samples) and the failures of the last hour (live counters
minus the earliest sample in the window). Both are index range scans of a few rows per queue,
whatever the backlog: the pages never ``count(*)`` the message table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.utils import timezone

from queues import conf
from queues.engine import QueueStats
from queues.metrics.numbers import Rates, rate


def _fresh_after() -> timedelta:
    """Samples older than this are stale: the sampler is not running, so rates are unknown."""
    return timedelta(seconds=max(10.0, 5 * float(conf.get("SAMPLE_INTERVAL"))))


def get_rates(names: Sequence[str], *, now: datetime | None = None) -> dict[str, Rates]:
    """Rates per queue from its last two 1-second samples (index range scan per queue, two rows)."""
    if not names:
        return {}
    now = now or timezone.now()
    stale_before = now - _fresh_after()
    with conf.db().cursor() as cur:
        # The lower bound on `at` matters beyond staleness: with all three columns bounded the planner
        # takes the (queue_name, resolution, at) index; without it, it may walk (resolution, at)
        # backwards through every sample for a queue that has none (a dead-letter queue).
        cur.execute(
            """
            SELECT n.name, s.at, s.sent_total, s.acked_total, s.failed_total
            FROM unnest(%(names)s::text[]) AS n(name)
            CROSS JOIN LATERAL (
                SELECT at, sent_total, acked_total, failed_total FROM queues_sample
                WHERE queue_name = n.name AND resolution = 1 AND at >= %(since)s ORDER BY at DESC LIMIT 2
            ) s
            ORDER BY n.name, s.at DESC
            """,
            {"names": list(names), "since": stale_before},
        )
        rows = cur.fetchall()
    by_name: dict[str, list[tuple]] = {}
    for row in rows:
        by_name.setdefault(row[0], []).append(row[1:])
    out: dict[str, Rates] = {}
    for name in names:
        pair = by_name.get(name, [])
        if len(pair) < 2:
            out[name] = Rates()
            continue
        (t1, s1, a1, f1), (t0, s0, a0, f0) = pair[0], pair[1]
        dt = (t1 - t0).total_seconds()
        out[name] = Rates(rate(s1, s0, dt), rate(a1, a0, dt), rate(f1, f0, dt))
    return out


def get_failures_since(stats: Iterable[QueueStats], since: datetime) -> int | None:
    """Failures (nacks and dead-letterings) since ``since``: live counters minus the earliest sample after it.

    None when no queue has a sample in the window (the sampler has not run).
    """
    current = {s.queue: s.failed_total for s in stats}
    if not current:
        return None
    with conf.db().cursor() as cur:
        cur.execute(
            """
            SELECT n.name, (
                SELECT u.failed_total FROM (
                    (SELECT at, failed_total FROM queues_sample
                     WHERE queue_name = n.name AND resolution = 1 AND at >= %(since)s ORDER BY at LIMIT 1)
                    UNION ALL
                    (SELECT at, failed_total FROM queues_sample
                     WHERE queue_name = n.name AND resolution = 60 AND at >= %(since)s ORDER BY at LIMIT 1)
                ) u ORDER BY u.at LIMIT 1)
            FROM unnest(%(names)s::text[]) AS n(name)
            """,
            {"names": list(current), "since": since},
        )
        baselines = {name: base for name, base in cur.fetchall() if base is not None}
    if not baselines:
        return None
    return sum(max(0, current[name] - base) for name, base in baselines.items())
