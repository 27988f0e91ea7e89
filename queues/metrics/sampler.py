"""The sampler: one tick turns the engine's live counts into history rows and a pushed message.

A tick costs three statements whatever the number of dashboards open: :func:`queues.stats` (counter rows
and index ranges, never a ``count(*)`` of the backlog), :data:`RECORD`, which stores one 1 s
``QueueSample`` per queue and reads the live workers and the running redrives back in the same round
trip, and the queues' health inputs (``queue_health.INPUTS``: thresholds and two index probes per queue
on the samples); every :data:`FAILURES_EVERY` seconds a fourth reads the last hour's failures. So every
number a page shows as live (workers, redrive progress, the failures card, health) moves with the
pushes. Rates come from the
previous tick kept in memory, not from the database. Once a minute (on the first tick of each minute,
and at once after an election) the tick runs an upkeep sweep (:func:`queues.upkeep.sweep`), whose
``samples`` job is :func:`maintain_samples`: downsample, then prune by retention.

Time is the database's: samples carry ``statement_timestamp()`` of the statement that stored them, so
several web processes on several machines (one leading at a time) never disagree about the clock.

The meaning of the numbers (rates, the ``total`` row) is ``queues.metrics.numbers``, shared with the
dashboard's pages and ``mq_stats``: a queue's ``dead`` is the depth of its dead-letter queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from queues import conf, engine, queue_health, upkeep
from queues.engine.types import QueueStats
from queues.metrics.history import get_failures_since
from queues.metrics.numbers import Rates, Totals, rate

logger = logging.getLogger("queues.metrics")

# A rate needs two readings close together: after a gap (sampler restarted, leader changed, process
# stalled) the delta spans an unknown stretch, so the rate is unknown rather than an average.
_RATE_GAP_FACTOR = 3.0

RECORD = """
WITH input AS (
    SELECT * FROM unnest(
        %(names)s::text[], %(ready)s::bigint[], %(delayed)s::bigint[], %(in_flight)s::bigint[],
        %(dead)s::bigint[], %(age)s::float8[], %(sent)s::bigint[], %(acked)s::bigint[], %(failed)s::bigint[]
    ) AS t(queue_name, ready, delayed, in_flight, dead, oldest_ready_age, sent_total, acked_total, failed_total)
),
saved AS (
    INSERT INTO queues_sample (queue_name, at, resolution, ready, delayed, in_flight, dead, oldest_ready_age,
                               sent_total, acked_total, failed_total)
    SELECT queue_name, statement_timestamp(), 1, ready, delayed, in_flight, dead, oldest_ready_age,
           sent_total, acked_total, failed_total
    FROM input
)
SELECT statement_timestamp(), w.queues, w.name, w.processed, w.failed, w.in_flight, w.last_beat_at,
       (SELECT json_agg(json_build_array(r.id, r.state, r.moved, r.total, r.error) ORDER BY r.id)
        FROM queues_redrive r
        WHERE r.state IN ('running', 'stopping')
           OR r.finished_at >= statement_timestamp() - make_interval(secs => %(redrives_after)s))
FROM (SELECT 1) AS one
LEFT JOIN queues_worker w
    ON w.state = 'live' AND w.last_beat_at >= statement_timestamp() - make_interval(secs => %(stale)s)
"""
"""Store the tick's 1 s samples; return the statement's time, the live workers (one row each: queues and
numbers) and the redrives running or just ended (the same JSON on every row: an uncorrelated subquery,
run once; the running ones by the partial unique index, the ended ones a few rows)."""

REDRIVES_KEPT_AFTER = 60.0
"""Seconds an ended redrive stays in the pushed samples, so pages that showed it running see how it ended."""

FAILURES_EVERY = 10.0
"""Seconds between two readings of the last hour's failures (index probes per queue: not every tick)."""

# Gauges average over the bucket, the age keeps its worst, the counters keep their last value so that
# rates stay (difference of totals) / (difference of times) at every resolution. A bucket is made only
# once it is complete (its end is before `now`) and only after the last one made: idempotent, and a new
# leader catches up on whatever its predecessor left.
DOWNSAMPLE = """
WITH bounds AS (
    SELECT coalesce(
               (SELECT max(at) FROM queues_sample WHERE resolution = %(res)s) + %(step)s::interval,
               (SELECT min(at) FROM queues_sample WHERE resolution = %(src)s)
           ) AS lo,
           date_bin(%(step)s::interval, %(now)s::timestamptz, timestamptz 'epoch') AS hi
)
INSERT INTO queues_sample (queue_name, at, resolution, ready, delayed, in_flight, dead, oldest_ready_age,
                           sent_total, acked_total, failed_total)
SELECT s.queue_name, date_bin(%(step)s::interval, s.at, timestamptz 'epoch') AS bucket, %(res)s,
       round(avg(s.ready)), round(avg(s.delayed)), round(avg(s.in_flight)), round(avg(s.dead)),
       max(s.oldest_ready_age),
       (array_agg(s.sent_total ORDER BY s.at DESC))[1],
       (array_agg(s.acked_total ORDER BY s.at DESC))[1],
       (array_agg(s.failed_total ORDER BY s.at DESC))[1]
FROM queues_sample s, bounds b
WHERE s.resolution = %(src)s AND s.at >= b.lo AND s.at < b.hi
GROUP BY s.queue_name, bucket
"""

PRUNE = "DELETE FROM queues_sample WHERE resolution = %(res)s AND at < %(now)s::timestamptz - %(keep)s::interval"


def retention() -> dict[int, float]:
    """``MQADMIN["SAMPLE_RETENTION"]`` checked: ``{resolution seconds: seconds kept}``, finest first.

    The finest resolution must be 1 (what the sampler writes); each coarser one must be a multiple of
    the one before, since it is built from it.
    """
    value = conf.get("SAMPLE_RETENTION")
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"MQADMIN['SAMPLE_RETENTION'] must be a dict like {{1: 7200, 60: 172800}}, got {value!r}")
    out: dict[int, float] = {}
    for res, keep in value.items():
        if isinstance(res, bool) or not isinstance(res, int) or res < 1:
            raise ValueError(f"MQADMIN['SAMPLE_RETENTION'] has the resolution {res!r}: use whole seconds >= 1")
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not keep > 0:
            raise ValueError(f"MQADMIN['SAMPLE_RETENTION'][{res}] = {keep!r}: use a number of seconds > 0")
        out[res] = float(keep)
    out = dict(sorted(out.items()))
    resolutions = list(out)
    if resolutions[0] != 1:
        raise ValueError(f"MQADMIN['SAMPLE_RETENTION'] must keep the 1 s samples (key 1); got {resolutions}")
    for finer, coarser in pairwise(resolutions):
        if coarser % finer:
            raise ValueError(
                f"MQADMIN['SAMPLE_RETENTION']: resolution {coarser} is not a multiple of {finer}, "
                "so it cannot be built from it"
            )
    return out


def sample_interval() -> float:
    """``MQADMIN["SAMPLE_INTERVAL"]`` checked: seconds between ticks (0.1 to 60)."""
    value = conf.get("SAMPLE_INTERVAL")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.1 <= value <= 60:
        raise ValueError(f"MQADMIN['SAMPLE_INTERVAL'] = {value!r}: use a number of seconds from 0.1 to 60")
    return float(value)


@dataclass(frozen=True, slots=True)
class _Reading:
    at: float
    sent: int
    acked: int
    failed: int


@dataclass(frozen=True, slots=True)
class LiveWorker:
    """A live worker as a tick reads it: its queues and the numbers the workers page shows."""

    queues: list[str]
    name: str
    processed: int
    failed: int
    in_flight: int
    last_beat_at: datetime

    def as_sample(self) -> dict[str, Any]:
        """One entry of a pushed sample's ``workers`` list."""
        return {"name": self.name, "processed": self.processed, "failed": self.failed, "in_flight": self.in_flight,
                "last_beat_at": self.last_beat_at.timestamp()}


def _as_list(value: Any) -> list[str]:
    # Django's psycopg setup hands jsonb back as text; other setups decode it.
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    return [str(v) for v in value] if isinstance(value, list) else []


class Sampler:
    """One tick at a time; keeps the previous tick in memory for rates. Not thread-safe: one owner.

    Runs on the Django connection of the calling thread (the elected one, see ``election.py``).
    """

    def __init__(self) -> None:
        self._previous: dict[str, _Reading] = {}
        self._maintained_minute: int | None = None
        self._failures: tuple[float, int | None] | None = None
        self.ticks = 0

    def reset(self) -> None:
        """Forget the previous tick (after losing the lead: the next tick's rates would span a gap)."""
        self._previous.clear()
        self._maintained_minute = None
        self._failures = None

    def tick(self) -> dict[str, Any]:
        """Read the live counts, store them as 1 s samples, sweep upkeep if due; return the message to push."""
        stats = engine.stats()
        at, workers, redrives = self._record(stats)
        message = self._message(stats, at, [w.queues for w in workers])
        message["workers"] = [w.as_sample() for w in workers]
        message["redrives"] = redrives
        message["total"]["redrives_running"] = sum(r["state"] in ("running", "stopping") for r in redrives)
        message["total"]["failed_last_hour"] = self._failed_last_hour(stats, at)
        minute = int(at.timestamp() // 60)
        if minute != self._maintained_minute:
            self._maintained_minute = minute
            try:
                upkeep.sweep()
            except Exception:
                # Upkeep must not stop the live numbers; it is retried next minute.
                logger.exception("the upkeep sweep failed; retrying next minute")
        self.ticks += 1
        return message

    def _failed_last_hour(self, stats: Sequence[QueueStats], at: datetime) -> int | None:
        # The overview's "Failures (1 h)" card, kept current: re-read every FAILURES_EVERY seconds,
        # the value in between is the last one read (the card is a one-hour count; 10 s is fresh enough).
        now = at.timestamp()
        if self._failures is None or now - self._failures[0] >= FAILURES_EVERY:
            self._failures = (now, get_failures_since(stats, at - timedelta(hours=1)))
        return self._failures[1]

    def _record(self, stats: Sequence[QueueStats]) -> tuple[datetime, list[LiveWorker], list[dict[str, Any]]]:
        params = {
            "names": [s.queue for s in stats],
            "ready": [s.ready for s in stats],
            "delayed": [s.delayed for s in stats],
            "in_flight": [s.in_flight for s in stats],
            "dead": [s.dead for s in stats],
            "age": [s.oldest_ready_age for s in stats],
            "sent": [s.sent_total for s in stats],
            "acked": [s.acked_total for s in stats],
            "failed": [s.failed_total for s in stats],
            "stale": conf.worker_stale_after(),
            "redrives_after": REDRIVES_KEPT_AFTER,
        }
        with conf.db().cursor() as cur:
            cur.execute(RECORD, params)
            rows = cur.fetchall()
        at = rows[0][0]
        workers = [LiveWorker(_as_list(q), name, processed, failed, in_flight, beat)
                   for _, q, name, processed, failed, in_flight, beat, _ in rows if name is not None]
        raw = rows[0][7]
        redrives = json.loads(raw) if isinstance(raw, str) else (raw or [])
        return at, workers, [{"id": r[0], "state": r[1], "moved": r[2], "total": r[3], "error": r[4]}
                             for r in redrives]

    def _message(self, stats: Sequence[QueueStats], at: datetime, worker_queues: list[list[str]]) -> dict[str, Any]:
        now = at.timestamp()
        max_gap = _RATE_GAP_FACTOR * max(1.0, sample_interval())
        per_queue_workers: dict[str, int] = {}
        for names in worker_queues:
            for name in set(names):
                per_queue_workers[name] = per_queue_workers.get(name, 0) + 1
        queues: dict[str, dict[str, Any]] = {}
        total = Totals(workers=len(worker_queues))
        current: dict[str, _Reading] = {}
        for s in stats:
            reading = _Reading(now, s.sent_total, s.acked_total, s.failed_total)
            current[s.queue] = reading
            before = self._previous.get(s.queue)
            rates = Rates()
            if before is not None and 0 < now - before.at <= max_gap:
                dt = now - before.at
                rates = Rates(rate(reading.sent, before.sent, dt), rate(reading.acked, before.acked, dt),
                              rate(reading.failed, before.failed, dt))
            queues[s.queue] = {
                "ready": s.ready, "in_flight": s.in_flight, "delayed": s.delayed, "dead": s.dead, "depth": s.depth,
                "oldest_ready_age": s.oldest_ready_age, "rate_in": rates.sent, "rate_out": rates.acked,
                "rate_failed": rates.failed, "workers": per_queue_workers.get(s.queue, 0),
                "state": "paused" if s.paused else "active", "dlq": s.is_dead_letter_queue,
            }
            total.add(s, rates)
        self._previous = current
        message = {"type": "sample", "at": now, "interval": sample_interval(), "queues": queues,
                   "total": total.as_sample()}
        # -- health (helper "health"): each queue's badge state, and the overview's summary ---------------
        try:
            healths = queue_health.assess_all(stats, workers=per_queue_workers)
        except Exception:
            # The live numbers must not stop for it; the badges keep their last state until the next tick.
            logger.exception("assessing queue health failed")
        else:
            for name, health in healths.items():
                queues[name]["health"] = health.as_dict()
            message["health"] = {"summary": queue_health.summary(healths.values()),
                                 "counts": queue_health.counts(healths.values())}
        return message

    def maintain(self, now: datetime) -> dict[str, int]:
        """:func:`maintain_samples` as of ``now``."""
        return maintain_samples(now)


def maintain_samples(now: datetime | None = None) -> dict[str, int]:
    """Downsample complete buckets into each coarser resolution, then prune by retention (the upkeep
    job ``samples``). Idempotent, so any process may run it; ``now`` defaults to the database's time.

    Returns the rows made and removed per step (``{"made_60": n, "pruned_1": m, ...}``).
    """
    keep = retention()
    resolutions = list(keep)
    done: dict[str, int] = {}
    with conf.atomic(), conf.db().cursor() as cur:
        if now is None:
            cur.execute("SELECT statement_timestamp()")
            now = cur.fetchone()[0]
        for src, res in pairwise(resolutions):
            cur.execute(DOWNSAMPLE, {"src": src, "res": res, "step": timedelta(seconds=res), "now": now})
            done[f"made_{res}"] = cur.rowcount
        for res, seconds in keep.items():
            cur.execute(PRUNE, {"res": res, "now": now, "keep": timedelta(seconds=seconds)})
            done[f"pruned_{res}"] = cur.rowcount
    return done
