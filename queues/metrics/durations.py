"""Handler durations as a histogram that reaches ``/metrics`` through the database, not a scrape per worker.

Each worker process counts its handlers' durations into fixed buckets (:class:`DurationHistogram`, in
memory, a bisect and three additions per delivery) and writes the cumulative counts with every heartbeat
into its own row's ``handler_durations`` (jsonb). The write is idempotent (absolute totals, not deltas),
so a beat that is retried or lost never counts anything twice.

``/metrics`` adds up the rows of every worker, live or stopped, plus :class:`HandlerDurationTotal` (where
the pruner folds the rows it deletes, in the same transaction): the sums only grow, as a Prometheus
histogram must, across worker restarts. Every web process reads the same rows, so several of them never
double-count; a worker's last second of durations (since its last beat) is written by its final beat.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Upper bounds (seconds) of the buckets; ``+Inf`` is implied. Changing them starts new series: rows
written with other bounds are left out of the sums (and logged), never mixed in."""


@dataclass
class Series:
    """The cumulative histogram of one (queue, handler): per-bucket counts (not cumulative), sum, count."""

    queue: str
    handler: str
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    sum: float = 0.0
    count: int = 0

    def add(self, other: Series) -> None:
        """Add another series' totals to this one (same bounds)."""
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum
        self.count += other.count

    def as_json(self) -> dict[str, Any]:
        """The form stored in ``queues_worker.handler_durations`` and ``queues_handler_durations``."""
        return {"queue": self.queue, "handler": self.handler, "bounds": list(BUCKETS), "counts": self.counts,
                "sum": self.sum, "count": self.count}


class DurationHistogram:
    """One worker's handler durations, per (queue, handler). Thread-safe; :meth:`observe` is the hot path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], Series] = {}

    def observe(self, queue: str, handler: str, seconds: float) -> None:
        """Count one handler run of ``seconds``."""
        index = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            series = self._series.get((queue, handler))
            if series is None:
                series = self._series[(queue, handler)] = Series(queue, handler)
            series.counts[index] += 1
            series.sum += seconds
            series.count += 1

    def snapshot(self) -> list[dict[str, Any]]:
        """The cumulative totals so far, as stored in the heartbeat row."""
        with self._lock:
            return [s.as_json() for s in self._series.values()]


def parse(value: Any) -> list[Series]:
    """Series from a stored jsonb value (text or decoded); entries with other bounds or malformed are skipped."""
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    out = []
    for entry in value if isinstance(value, list) else []:
        try:
            if [float(b) for b in entry["bounds"]] != list(BUCKETS):
                continue
            counts = [int(n) for n in entry["counts"]]
            if len(counts) != len(BUCKETS) + 1:
                continue
            out.append(Series(str(entry["queue"]), str(entry["handler"]), counts, float(entry["sum"]),
                              int(entry["count"])))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def merge(values: Iterable[Any]) -> list[Series]:
    """Add up stored values (each a jsonb list of series) per (queue, handler), sorted by both."""
    total: dict[tuple[str, str], Series] = {}
    for value in values:
        for s in parse(value):
            key = (s.queue, s.handler)
            if key not in total:
                total[key] = Series(s.queue, s.handler)
            total[key].add(s)
    return [total[k] for k in sorted(total)]


def cumulative(counts: Sequence[int]) -> list[int]:
    """Per-bucket counts to Prometheus' cumulative ``le`` counts."""
    out, running = [], 0
    for n in counts:
        running += n
        out.append(running)
    return out


def fold_and_delete(worker_ids: Sequence[int]) -> int:
    """Delete these worker rows, folding their histograms into ``HandlerDurationTotal`` first, atomically.

    Returns the rows deleted. Rows are locked first, so two pruners never fold the same row twice.
    """
    # Deferred: this module is imported by the worker runtime before it touches any model.
    from queues import conf
    from queues.models import HandlerDurationTotal, Worker

    if not worker_ids:
        return 0
    with conf.atomic():
        rows = list(Worker.objects.select_for_update(skip_locked=True).filter(pk__in=list(worker_ids))
                    .values_list("pk", "handler_durations"))
        folded = merge(value for _, value in rows)
        for series in folded:
            total, _ = HandlerDurationTotal.objects.select_for_update().get_or_create(
                queue_name=series.queue[:80], handler=series.handler[:255],
                defaults={"series": Series(series.queue, series.handler).as_json()})
            merged = merge([[total.series], [series.as_json()]])
            total.series = merged[0].as_json() if merged else series.as_json()
            total.save(update_fields=["series"])
        deleted, _ = Worker.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
    return deleted


def totals() -> list[Series]:
    """Every worker's histograms plus the folded ones, per (queue, handler): what ``/metrics`` shows."""
    # deferred: as in fold_and_delete, the worker runtime imports this module before models are ready.
    from queues.models import HandlerDurationTotal, Worker

    values: list[Any] = list(Worker.objects.exclude(handler_durations=[]).values_list("handler_durations", flat=True))
    values += [[s] for s in HandlerDurationTotal.objects.values_list("series", flat=True)]
    return merge(values)
