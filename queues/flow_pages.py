"""What the pages show of flow control and schedules: the Schedules page's rows, a queue page's Limits
and Flow control panels.

Apart from ``queues.selectors`` (the pages' main read side) because these read the flow-control and
schedule modules' own state (``queues.schedules``, ``queues.engine.limits``, ``queues.engine.expiry``),
one small read each, and no other page needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

from queues import schedules
from queues.engine import limits as engine_limits
from queues.engine.expiry import FlowTotals, flow_totals
from queues.models import Message, Queue, Schedule


@dataclass(frozen=True)
class ScheduleRow:
    """One schedule as the Schedules page shows it."""

    schedule: Schedule
    words: str
    """The cron expression in words (cronsim's explanation)."""
    next_local: datetime | None
    """The next run in the schedule's own zone (the page shows it in the viewer's zone too)."""
    last_message_live: bool
    """Whether the last message sent is still in a queue (else it was handled, or deleted)."""


def list_schedule_rows() -> list[ScheduleRow]:
    """Every schedule, by name, with what the Schedules page shows."""
    rows = list(Schedule.objects.order_by("name"))
    live = set(Message.objects.filter(id__in=[r.last_message_id for r in rows if r.last_message_id])
               .values_list("id", flat=True))
    out = []
    for row in rows:
        try:
            zone: tzinfo | None = ZoneInfo(row.timezone)
        except (ValueError, ZoneInfoNotFoundError):
            zone = None
        next_local = row.next_run_at.astimezone(zone) if row.next_run_at and zone else None
        out.append(ScheduleRow(row, schedules.describe(row.cron), next_local, row.last_message_id in live))
    return out


@dataclass(frozen=True)
class FlowLimits:
    """The queue page's Limits panel: a queue's rate and concurrency limits and their state at page load
    (the panel's delivery rate, ready and in-flight numbers are live: the page's usual live fields)."""

    rate: str | None
    burst: int | None
    concurrency: int | None
    tokens: float | None
    held: int
    taken: int
    per_group: bool = False
    groups: int = 0
    as_of: datetime | None = None
    """When ``tokens``, ``held`` and ``taken`` were read; the panel says so beside them."""


def get_flow_limits(queue: Queue) -> FlowLimits | None:
    """The limits of ``queue`` and one small read of their state (its flow row), or None without limits."""
    rate = engine_limits.rate_of(queue)
    if rate is None and queue.concurrency_limit is None:
        return None
    status = engine_limits.flow_status(queue.id, per_group=queue.limits_per_group)
    return FlowLimits(
        rate=str(rate) if rate else None,
        burst=(queue.rate_burst or rate.default_burst) if rate else None,
        concurrency=queue.concurrency_limit,
        tokens=status.tokens if status else None,
        held=status.held if status else 0,
        taken=status.taken if status else 0,
        per_group=queue.limits_per_group,
        groups=status.groups if status else 0,
        as_of=timezone.now(),
    )


def get_flow_totals(queue: str) -> FlowTotals | None:
    """What flow control ended in ``queue`` (expired, cancelled, dropped for room); None if it is gone."""
    return flow_totals([queue]).get(queue)
