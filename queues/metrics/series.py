"""History series for the charts: ``QueueSample`` rows at the resolution that suits the window.

One query per series, on the ``(queue_name, resolution, at)`` index for a queue and on
``(resolution, at)`` for the totals. Rates are computed in SQL from consecutive counter readings of the
same queue (``lag()``), so they mean the same at every resolution; a gap longer than a few samples (the
sampler was down) gives no rate rather than an average over the gap.

Totals follow the pushed samples (see ``sampler.py``): ready / in flight / delayed / age over ordinary
queues, dead as the depth of the dead-letter queues (those some queue names as its dead-letter queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from queues import conf
from queues.metrics.sampler import retention

SERIES_FIELDS = (
    "ready", "in_flight", "delayed", "dead", "depth", "oldest_ready_age", "rate_in", "rate_out", "rate_failed",
)

MIN_WINDOW = 10
MAX_POINTS = 4000
"""A series never has more points than this: the resolution is coarsened until it fits."""
MAX_ROWS = 250_000
"""The totals read at most about this many sample rows: with many queues, a coarser resolution."""

_GAP_FACTOR = 2.5

_RATES = """
    greatest(0, s.sent_total - lag(s.sent_total) OVER w)
        / nullif(extract(epoch FROM s.at - lag(s.at) OVER w), 0)::float8 AS rate_in,
    greatest(0, s.acked_total - lag(s.acked_total) OVER w)
        / nullif(extract(epoch FROM s.at - lag(s.at) OVER w), 0)::float8 AS rate_out,
    greatest(0, s.failed_total - lag(s.failed_total) OVER w)
        / nullif(extract(epoch FROM s.at - lag(s.at) OVER w), 0)::float8 AS rate_failed,
    extract(epoch FROM s.at - lag(s.at) OVER w)::float8 AS gap
"""

ONE_QUEUE = f"""
SELECT extract(epoch FROM x.at)::float8, x.ready, x.in_flight, x.delayed, x.dead,
       x.ready + x.in_flight + x.delayed, x.oldest_ready_age,
       CASE WHEN x.gap <= %(max_gap)s THEN x.rate_in END,
       CASE WHEN x.gap <= %(max_gap)s THEN x.rate_out END,
       CASE WHEN x.gap <= %(max_gap)s THEN x.rate_failed END
FROM (
    SELECT s.at, s.ready, s.in_flight, s.delayed, s.dead, s.oldest_ready_age, {_RATES}
    FROM queues_sample s
    WHERE s.queue_name = %(queue)s AND s.resolution = %(res)s AND s.at >= %(lookback)s
    WINDOW w AS (ORDER BY s.at)
) x
WHERE x.at >= %(start)s
ORDER BY x.at
"""

TOTALS = f"""
WITH dlq AS (
    SELECT DISTINCT d.name FROM queues_queue q JOIN queues_queue d ON d.id = q.dead_letter_queue_id
)
SELECT extract(epoch FROM x.at)::float8,
       coalesce(sum(x.ready) FILTER (WHERE NOT x.is_dlq), 0),
       coalesce(sum(x.in_flight) FILTER (WHERE NOT x.is_dlq), 0),
       coalesce(sum(x.delayed) FILTER (WHERE NOT x.is_dlq), 0),
       coalesce(sum(x.ready + x.in_flight + x.delayed) FILTER (WHERE x.is_dlq), 0),
       sum(x.ready + x.in_flight + x.delayed),
       max(x.oldest_ready_age) FILTER (WHERE NOT x.is_dlq),
       sum(x.rate_in) FILTER (WHERE x.gap <= %(max_gap)s),
       sum(x.rate_out) FILTER (WHERE x.gap <= %(max_gap)s),
       sum(x.rate_failed) FILTER (WHERE x.gap <= %(max_gap)s)
FROM (
    SELECT s.at, s.ready, s.in_flight, s.delayed, s.oldest_ready_age,
           s.queue_name IN (SELECT name FROM dlq) AS is_dlq, {_RATES}
    FROM queues_sample s
    WHERE s.resolution = %(res)s AND s.at >= %(lookback)s
    WINDOW w AS (PARTITION BY s.queue_name ORDER BY s.at)
) x
WHERE x.at >= %(start)s
GROUP BY x.at
ORDER BY x.at
"""


class SeriesError(ValueError):
    """A window the history cannot answer (the message says which windows it can)."""


def max_window() -> int:
    """The longest window any resolution keeps (seconds)."""
    return int(max(retention().values()))


def check_window(value: object) -> int:
    """A window in whole seconds from ``value`` (``"300"`` or ``300``), or :class:`SeriesError`."""
    try:
        window = int(str(value).strip())
    except (TypeError, ValueError):
        raise SeriesError(f"window must be a whole number of seconds, got {value!r}")
    longest = max_window()
    if not MIN_WINDOW <= window <= longest:
        raise SeriesError(f"window must be from {MIN_WINDOW} to {longest} seconds (the history kept), got {window}")
    return window


def _queue_count() -> int:
    with conf.db().cursor() as cur:
        cur.execute("SELECT count(*) FROM queues_queue")
        return int(cur.fetchone()[0])


def pick_resolution(window: int, *, queues: int = 1) -> int:
    """The finest kept resolution that covers ``window`` within :data:`MAX_POINTS` (and :data:`MAX_ROWS`).

    With the default retention: 5 min and 1 h -> 1 s, 24 h -> 60 s, 7 d -> 3600 s.
    """
    keep = retention()
    for res, seconds in keep.items():
        points = window / res
        if seconds >= window and points <= MAX_POINTS and points * max(1, queues) <= MAX_ROWS:
            return res
    return max(keep)


@dataclass
class Series:
    """A chart's data: ``t`` (epoch seconds) and one list per field, all the same length."""

    queue: str
    window: int
    resolution: int
    t: list[float]
    values: dict[str, list[Any]]

    def as_json(self) -> dict[str, Any]:
        """The JSON body of ``/api/series/``."""
        return {"queue": self.queue, "window": self.window, "resolution": self.resolution, "t": self.t,
                "series": self.values}


def get_series(*, queue: str, window: int) -> Series:
    """The history of ``queue`` (``""``: all queues together) over the last ``window`` seconds."""
    window = check_window(window)
    res = pick_resolution(window, queues=1 if queue else _queue_count())
    now = timezone.now()
    start = now - timedelta(seconds=window)
    params = {
        "queue": queue, "res": res, "start": start, "lookback": start - timedelta(seconds=3 * res),
        "max_gap": _GAP_FACTOR * res,
    }
    with conf.db().cursor() as cur:
        cur.execute(ONE_QUEUE if queue else TOTALS, params)
        rows = cur.fetchall()
    t = [float(r[0]) for r in rows]
    values: dict[str, list[Any]] = {}
    for i, field in enumerate(SERIES_FIELDS, start=1):
        column = [r[i] for r in rows]
        if field == "oldest_ready_age" or field.startswith("rate_"):
            values[field] = [None if v is None else round(float(v), 3) for v in column]
        else:
            values[field] = [None if v is None else int(v) for v in column]
    return Series(queue=queue, window=window, resolution=res, t=t, values=values)
