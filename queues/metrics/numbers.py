"""The rules behind the dashboard's numbers: a rate from two counter readings, and the totals row.

One home for both, used by every place that computes them in Python: the sampler's pushed samples
(``sampler.py``), the server-rendered pages (``selectors.py``, from stored samples through
``history.py``) and ``mq_stats --watch`` (from two readings of :func:`queues.stats`). The charts'
history (``series.py``) computes the same in SQL (``greatest(0, …)``, ``FILTER (WHERE NOT is_dlq)``).

- **Rates** are counter deltas per second, never negative: counters restart from zero when a queue is
  deleted and made again, and a negative rate would be a lie about the new queue.
- **Totals** count dead letters once: ``ready``, ``in_flight`` and ``delayed`` add up ordinary queues
  (a queue's own ``dead`` is its dead-letter queue's depth, so summing it would count shared
  dead-letter queues twice); ``dead`` adds up the depth of dead-letter queues; ``oldest_ready_age`` is
  the worst ordinary queue's; rates add up every queue whose rate is known (None when none is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from queues.engine import QueueStats


def rate(now: float, before: float, seconds: float) -> float | None:
    """Per second between two readings of a counter ``seconds`` apart; None without a time between them."""
    if seconds <= 0:
        return None
    return max(0.0, (now - before) / seconds)


@dataclass
class Rates:
    """Per-second rates of one queue's counters (None when unknown: no two fresh readings)."""

    sent: float | None = None
    acked: float | None = None
    failed: float | None = None


@dataclass
class Totals:
    """Sums over all queues, for the overview's cards and the pushed sample's ``total`` (see the module)."""

    ready: int = 0
    in_flight: int = 0
    delayed: int = 0
    dead: int = 0
    depth: int = 0
    oldest_ready_age: float | None = None
    rate_in: float | None = None
    rate_out: float | None = None
    rate_failed: float | None = None
    workers: int = 0
    failed_last_hour: int | None = None
    """Nacks and dead-letterings of the last hour (pages only; the pushed sample leaves it out)."""

    def add(self, s: QueueStats, rates: Rates | None = None) -> None:
        """Count one queue's live numbers and (when known) its rates."""
        if rates is not None and rates.sent is not None:
            self.rate_in = (self.rate_in or 0.0) + rates.sent
            self.rate_out = (self.rate_out or 0.0) + (rates.acked or 0.0)
            self.rate_failed = (self.rate_failed or 0.0) + (rates.failed or 0.0)
        self.depth += s.depth
        if s.is_dead_letter_queue:
            self.dead += s.depth
            return
        self.ready += s.ready
        self.in_flight += s.in_flight
        self.delayed += s.delayed
        if s.oldest_ready_age is not None:
            self.oldest_ready_age = max(self.oldest_ready_age or 0.0, s.oldest_ready_age)

    def as_sample(self) -> dict[str, Any]:
        """The ``total`` of a pushed sample: the numbers live.js writes into ``_total.*`` cells."""
        return {
            "ready": self.ready,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "dead": self.dead,
            "depth": self.depth,
            "oldest_ready_age": self.oldest_ready_age,
            "rate_in": self.rate_in,
            "rate_out": self.rate_out,
            "rate_failed": self.rate_failed,
            "workers": self.workers,
        }
