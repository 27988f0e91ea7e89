"""The dashboard's read side: page context built from live counts, samples and plain SELECTs.

Live numbers come from the engine's :func:`queues.stats` (counter rows and index ranges, never a
``count(*)`` of the backlog); rates and the last hour's failures from ``QueueSample`` rows that the
sampler writes (``metrics/history.py``); workers from their heartbeat rows. Nothing here changes a
message's delivery state: the message browser is a plain SELECT, like :func:`queues.peek`.

Where the rest of the read side lives: the search language in ``queues.search``, rates and totals in
``queues.metrics.numbers``, how numbers read in ``queues.formatting``, message states on
``queues.models.MessageQuerySet``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import OperationalError
from django.db.models import F, TextField
from django.db.models.functions import Cast, Left
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from queues import conf, engine, health, queue_health, workload
from queues.audit import with_detail_json
from queues.deadletters import DistinctError, TimelineEntry, attempt_timeline, first_line
from queues.engine import MessageInfo, QueueStats
from queues.formatting import display_kind, duration_words, retry_note
from queues.metrics.history import get_failures_since, get_rates
from queues.metrics.numbers import Rates, Totals
from queues.models import (
    AuditEvent,
    Message,
    MessageState,
    Queue,
    Redrive,
    RedriveState,
    dead_letter_queue_ids,
)
from queues.search import MessageFilter, message_queryset

CHART_WINDOWS: dict[int, str] = {300: "5 min", 3600: "1 h", 86400: "24 h", 604800: "7 d"}
QUEUE_SORTS = (
    "health", "name", "kind", "state", "ready", "in_flight", "delayed", "dead", "oldest_ready_age", "rate_in",
    "rate_out", "workers",
)
BODY_PREVIEW_CHARS = 160
# A pretty-printed body longer than this is shown collapsed on the message page.
BODY_COLLAPSE_CHARS = 2000


# -- queues -----------------------------------------------------------------------------------------


@dataclass
class QueueRow:
    """One queue as the overview and the queue list show it."""

    name: str
    kind: str
    paused: bool
    is_dead_letter_queue: bool
    ready: int
    in_flight: int
    delayed: int
    dead: int
    depth: int
    oldest_ready_age: float | None
    rate_in: float | None
    rate_out: float | None
    workers: int
    failed_total: int = 0
    health: queue_health.Health = field(default_factory=queue_health.Health)
    """The queue's health (queues/queue_health.py): the badge state and its reasons."""

    @property
    def display_kind(self) -> str:
        """``dead-letter`` for a dead-letter queue, else its kind: the one word pages, ``mq_stats`` and
        metrics use (:func:`queues.formatting.display_kind`)."""
        return display_kind(self.kind, is_dead_letter_queue=self.is_dead_letter_queue)

    @property
    def state(self) -> str:
        """``paused`` or ``active``."""
        return "paused" if self.paused else "active"


def _live_workers_by_queue(now: datetime) -> tuple[int, dict[str, int]]:
    """How many workers beat on time, and how many of them serve each queue."""
    return queue_health.live_workers_by_queue(now)


def _with_health(rows: list[QueueRow], stats: Sequence[QueueStats], workers: dict[str, int],
                 now: datetime) -> list[QueueRow]:
    healths = queue_health.assess_all(stats, workers=workers, now=now)
    for row in rows:
        row.health = healths.get(row.name, row.health)
    return rows


def _attention_first(row: QueueRow) -> tuple[int, bool, int, int, str]:
    """Unhealthy queues first (worst first), then ordinary queues before dead-letter queues, by backlog."""
    return (-row.health.severity, row.is_dead_letter_queue, -row.ready, -row.depth, row.name)


def _rows(stats: Sequence[QueueStats], rates: dict[str, Rates], workers: dict[str, int]) -> list[QueueRow]:
    return [
        QueueRow(
            name=s.queue, kind=s.kind, paused=s.paused, is_dead_letter_queue=s.is_dead_letter_queue,
            ready=s.ready, in_flight=s.in_flight, delayed=s.delayed, dead=s.dead, depth=s.depth,
            oldest_ready_age=s.oldest_ready_age, rate_in=rates[s.queue].sent, rate_out=rates[s.queue].acked,
            workers=workers.get(s.queue, 0), failed_total=s.failed_total,
        )
        for s in stats
    ]


@dataclass
class Overview:
    """Context of the overview page."""

    totals: Totals
    queues: list[QueueRow]
    running_redrives: list[Redrive]

    @property
    def health_counts(self) -> dict[str, int]:
        """Unhealthy queues per badge state, worst first (``{"stalled": 2, "backing_up": 1}``)."""
        return queue_health.counts(r.health for r in self.queues)

    @property
    def failing_search(self) -> str:
        """The message browser's search behind the "Failures (1 h)" card: what failed and is still here
        (retries backing off, and dead letters)."""
        return "state:delayed state:dead"

    @property
    def health_summary(self) -> str:
        """``2 stalled, 1 backing up``, or ``all healthy``."""
        return queue_health.summary(r.health for r in self.queues)


def get_overview() -> Overview:
    """Cards, the backlog table (largest backlog first) and the redrives in progress."""
    now = timezone.now()
    stats = engine.stats()
    names = [s.queue for s in stats]
    rates = get_rates(names, now=now)
    online, per_queue = _live_workers_by_queue(now)
    totals = Totals(workers=online)
    for s in stats:
        totals.add(s, rates[s.queue])
    totals.failed_last_hour = get_failures_since(stats, now - timedelta(hours=1))
    rows = _with_health(_rows(stats, rates, per_queue), stats, per_queue, now)
    rows.sort(key=_attention_first)
    running = list(
        Redrive.objects.filter(state__in=[RedriveState.RUNNING, RedriveState.STOPPING]).select_related(
            "source", "destination"
        )[:20]
    )
    return Overview(totals=totals, queues=rows, running_redrives=running)


class SortError(ValueError):
    """An unknown sort key for the queue list."""


def list_queue_rows(*, name_filter: str = "", sort: str = "name") -> list[QueueRow]:
    """The queue list: every queue whose name contains ``name_filter``, sorted by ``sort`` (``-`` for descending)."""
    key = sort.removeprefix("-")
    if key not in QUEUE_SORTS:
        raise SortError(f"cannot sort queues by {sort!r}: use one of {', '.join(QUEUE_SORTS)} (prefix - to reverse)")
    now = timezone.now()
    stats = engine.stats()
    needle = name_filter.strip().lower()
    if needle:
        stats = [s for s in stats if needle in s.queue]
    rates = get_rates([s.queue for s in stats], now=now)
    _online, per_queue = _live_workers_by_queue(now)
    rows = _with_health(_rows(stats, rates, per_queue), stats, per_queue, now)
    if key == "health":
        # Worst first, then by name: the list's default, so trouble is on top and the rest stays findable.
        rows.sort(key=lambda r: (-r.health.severity, r.name), reverse=sort.startswith("-"))
        return rows

    def value(row: QueueRow) -> Any:
        v = getattr(row, key)
        # Unknowns (no rate, no ready message) sort below every number either way round.
        return (v is not None, v if v is not None else 0, row.name)

    rows.sort(key=value, reverse=sort.startswith("-"))
    return rows


@dataclass
class QueueDetail:
    """Context of one queue's page."""

    queue: Queue
    row: QueueRow
    dead_letter_queue: Queue | None
    dead_letters: list[MessageInfo]
    dead_letter_count: int
    sources: list[str]
    workers: list[workload.WorkerRow]
    redrives: list[Redrive]
    recent_audit: list[AuditEvent]
    redrives_running: int = 0
    """Running or stopping redrives of every queue: the live samples' ``redrives_running`` as rendered."""


def is_queue_name(name: object) -> bool:
    """Whether ``name`` follows the naming rule (so it may name a queue; a NUL or a space never does)."""
    try:
        engine.validate_name(name)
    except ValueError:
        return False
    return True


def get_queue(name: str) -> Queue | None:
    """The queue ``name`` with its dead-letter queue, or None."""
    return Queue.objects.select_related("dead_letter_queue").filter(name=name).first()


def get_queue_detail(queue: Queue) -> QueueDetail:
    """Everything the queue page shows about ``queue``: live row, workers, dead letters, redrives, audit."""
    now = timezone.now()
    stats = engine.stats([queue.name])
    mine = [s for s in stats if s.queue == queue.name]
    if not mine:
        raise engine.QueueNotFound(f"queue {queue.name!r} does not exist")
    rates = get_rates([queue.name], now=now)
    _online, per_queue = _live_workers_by_queue(now)
    row = _with_health(_rows(mine, rates, per_queue), mine, per_queue, now)[0]
    dlq = queue.dead_letter_queue
    dead_letters: list[MessageInfo] = []
    dead_count = 0
    if dlq is not None:
        dead_letters = engine.peek(dlq.name, limit=10)
        dead_count = row.dead
    sources = list(Queue.objects.filter(dead_letter_queue=queue).values_list("name", flat=True))
    redrive_sources = [queue.id] + ([dlq.id] if dlq is not None else [])
    redrives = list(
        Redrive.objects.filter(source_id__in=redrive_sources).select_related("source", "destination")[:5]
    )
    return QueueDetail(
        queue=queue, row=row, dead_letter_queue=dlq, dead_letters=dead_letters, dead_letter_count=dead_count,
        sources=sources, workers=workload.list_workers(queue=queue.name, active_only=True), redrives=redrives,
        redrives_running=Redrive.objects.filter(state__in=[RedriveState.RUNNING, RedriveState.STOPPING]).count(),
        recent_audit=with_detail_json(
            AuditEvent.objects.filter(queue_name__in=[queue.name] + ([dlq.name] if dlq is not None else []))[:10]
        ),
    )


def get_queue_stats(name: str) -> QueueStats:
    """Live counts of one queue (``dead``: its dead-letter queue's depth)."""
    return engine.queue_stats(name)


@dataclass(frozen=True)
class SettingsImpact:
    """What a settings change would do to the messages a queue holds.

    Only a shorter ``retention`` destroys messages: the next prune deletes every message that became
    available longer ago than the new retention, and from then on messages live shorter. The other
    settings keep what is stored: a smaller ``max_message_size`` refuses future sends (the producer
    is told), a lower ``max_receives`` or another dead-letter queue moves failing messages to a
    dead-letter queue where they can be redriven, removing the dead-letter queue makes failures
    redeliver forever, ``kind`` changes only while the queue is empty.
    """

    destructive: bool = False
    #: Messages the next prune deletes under the new retention (counted now; more may age meanwhile).
    would_delete: int = 0
    old_retention: float = 0.0
    new_retention: float = 0.0

    def consequence(self) -> str:
        """The consequence in one sentence, for confirmations and the audit log; empty if none."""
        if not self.destructive:
            return ""
        n = self.would_delete
        new, old = duration_words(self.new_retention), duration_words(self.old_retention)
        return (
            f"This will delete the {n:,} message{'' if n == 1 else 's'} older than {new} "
            f"at the next prune, and from then on every message not received within "
            f"{new} (retention {old} \u2192 {new})."
        )


def get_settings_impact(queue: Queue, settings: dict[str, Any]) -> SettingsImpact:
    """The :class:`SettingsImpact` of applying ``settings`` (keywords of ``update_queue``) to ``queue``."""
    raw = settings.get("retention")
    if raw is None:
        return SettingsImpact()
    new = raw.total_seconds() if isinstance(raw, timedelta) else raw
    old = queue.retention.total_seconds()
    if isinstance(new, bool) or not isinstance(new, int | float) or not new < old:
        return SettingsImpact()  # not shorter (bad values are the engine's to refuse)
    # The same rule as the prune statement (engine/sql.py PRUNE_EXPIRED): old by both clocks.
    now = timezone.now()
    cutoff = now - timedelta(seconds=max(float(new), 0.0))
    old_enough = Message.objects.filter(queue=queue, enqueued_at__lt=cutoff, available_at__lt=cutoff)
    doomed = old_enough.unleased(now=now).count()
    return SettingsImpact(destructive=True, would_delete=doomed, old_retention=old, new_retention=float(new))


def queue_names() -> list[str]:
    """All queue names, for pickers."""
    return list(Queue.objects.order_by("name").values_list("name", flat=True))


@dataclass
class MessageRow:
    """One line of the message browser (the body only as a short preview)."""

    id: int
    queue: str
    state: str
    priority: int
    group_key: str | None
    receive_count: int
    enqueued_at: datetime
    available_at: datetime
    body_preview: str
    has_error: bool
    state_note: str = ""
    """``retrying (attempt 5 of 6, next in 12 s)`` for a delayed message backing off after a failure."""
    error_line: str = ""
    """The first line of the last error (the browser's tooltip on ``err``)."""


@dataclass
class MessagePage:
    """One page of the browser, keyset-paged by id."""

    rows: list[MessageRow] = field(default_factory=list)
    next_after: int | None = None
    prev_before: int | None = None


def search_messages(
    f: MessageFilter, *, after: int | None = None, before: int | None = None, limit: int | None = None,
    newest_first: bool = False,
) -> MessagePage:
    """A page of messages matching ``f`` in id order: after the id ``after``, or the page before ``before``.

    Keyset pagination (``id > cursor ORDER BY id LIMIT n+1``): page 10,000 costs what page 1 does.
    ``newest_first`` walks the ids downwards; "after" and "before" then mean after and before in that order.
    """
    limit = limit or int(conf.get("PAGE_SIZE"))
    now = timezone.now()
    qs = message_queryset(f, now=now)
    # Walking backwards (the page before ``before``) reverses the display order; the rows are turned back below.
    order = "-id" if (before is not None) != newest_first else "id"
    if after is not None:
        qs = qs.filter(id__lt=after) if newest_first else qs.filter(id__gt=after)
    elif before is not None:
        qs = qs.filter(id__gt=before) if newest_first else qs.filter(id__lt=before)
    columns = qs.annotate(
        queue_name=F("queue__name"),
        preview=Left(Cast("body", TextField()), BODY_PREVIEW_CHARS + 1),
        queue_max_receives=F("queue__max_receives"),
        queue_dlq=F("queue__dead_letter_queue_id"),
    ).values(
        "id", "queue_id", "queue_name", "priority", "group_key", "receive_count", "enqueued_at", "available_at",
        "leased_until", "last_error", "preview", "queue_max_receives", "queue_dlq",
    )
    slices = _priority_slices(f) if f.queues else None
    if slices is not None and len(slices) <= MAX_SLICES:
        # No (queue_id, id) index exists, and walking the primary key for one queue's messages can pass
        # over every other queue's first. The claim index (queue_id, priority DESC, id) gives each
        # (queue, priority) slice in id order; a page is the first n of their merge.
        parts = [columns.filter(queue_id=q, priority=p).order_by(order)[: limit + 1] for q, p in slices]
        if not parts:
            values: list[dict[str, Any]] = []
        elif len(parts) == 1:
            values = list(parts[0])
        else:
            values = list(parts[0].union(*parts[1:], all=True).order_by(order)[: limit + 1])
    else:
        values = list(columns.order_by(order)[: limit + 1])
    more = len(values) > limit
    values = values[:limit]
    if before is not None:
        values.reverse()
    dlq_ids = set(dead_letter_queue_ids())
    rows = []
    for v in values:
        preview = v["preview"] or ""
        if len(preview) > BODY_PREVIEW_CHARS:
            preview = preview[:BODY_PREVIEW_CHARS] + "…"
        state = MessageState.of(leased_until=v["leased_until"], available_at=v["available_at"],
                                in_dead_letter_queue=v["queue_id"] in dlq_ids, now=now)
        # what the browser shows as "available at": when the lease ends, for one in flight (as peek)
        due = v["leased_until"] if state == MessageState.IN_FLIGHT else v["available_at"]
        rows.append(
            MessageRow(
                id=v["id"], queue=v["queue_name"], state=state,
                priority=v["priority"], group_key=v["group_key"], receive_count=v["receive_count"],
                enqueued_at=v["enqueued_at"], available_at=due, body_preview=preview,
                has_error=bool(v["last_error"]), error_line=first_line(v["last_error"] or ""),
                state_note=retry_note(
                    state=state, receive_count=v["receive_count"],
                    max_receives=dead_lettering_limit(v["queue_max_receives"], v["queue_dlq"]),
                    next_in=(due - now).total_seconds(),
                ),
            )
        )
    page = MessagePage(rows=rows)
    if rows:
        if before is not None:
            page.next_after = rows[-1].id  # the page we came back from is still there
            page.prev_before = rows[0].id if more else None
        else:
            page.next_after = rows[-1].id if more else None
            page.prev_before = rows[0].id if after is not None else None
    return page


# A page of a queue-scoped search merges at most this many (queue, priority) slices; more: one plain scan.
MAX_SLICES = 64


def _priority_slices(f: MessageFilter) -> list[tuple[int, int]]:
    """The (queue id, priority) pairs present in the queues ``f`` names: a loose index scan per queue."""
    queue_ids = list(Queue.objects.filter(name__in=f.queues).values_list("id", flat=True))
    out: list[tuple[int, int]] = []
    with conf.db().cursor() as cur:
        for queue_id in queue_ids:
            cur.execute(
                """
                WITH RECURSIVE p(priority) AS (
                    (SELECT priority FROM queues_message WHERE queue_id = %(q)s ORDER BY priority DESC LIMIT 1)
                    UNION ALL
                    SELECT (SELECT m.priority FROM queues_message m
                            WHERE m.queue_id = %(q)s AND m.priority < p.priority ORDER BY m.priority DESC LIMIT 1)
                    FROM p WHERE p.priority IS NOT NULL
                )
                SELECT priority FROM p WHERE priority IS NOT NULL
                """,
                {"q": queue_id},
            )
            out += [(queue_id, priority) for (priority,) in cur.fetchall()]
            if len(out) > MAX_SLICES:
                break
    return out


COUNT_CAP = 10_000
"""The browser counts matching messages up to this many, then says "10,000+"."""
COUNT_BUDGET_MS = 150
"""Most milliseconds the browser's count may take; past it the total is left out (a filter on bodies that
matches almost nothing reads the whole table, and the page must not wait for that)."""


@dataclass(frozen=True)
class MessageTotal:
    """How many messages a search matches, for "50 of 1,500"."""

    count: int | None
    """The number, or None when counting took longer than ``COUNT_BUDGET_MS``."""
    at_least: bool = False
    """The count stopped at ``COUNT_CAP``: there are that many or more."""


def count_messages(f: MessageFilter, *, stats: QueueStats | None = None) -> MessageTotal:
    """How many messages ``f`` matches, cheaply: one queue's counters when ``f`` names only that queue
    (``stats``), else a count stopped at ``COUNT_CAP`` rows and ``COUNT_BUDGET_MS`` milliseconds."""
    only_queue = f.single_queue is not None and not (f.states or f.ids or f.groups or f.headers or f.body)
    if only_queue and stats is not None and stats.queue == f.single_queue:
        return MessageTotal(count=stats.depth)
    try:
        with conf.atomic(), conf.db().cursor() as cur:
            # SET LOCAL ends with the transaction; inside a caller's transaction it would outlive this
            # savepoint, so the previous value is put back after the count.
            cur.execute("SELECT current_setting('statement_timeout')")
            previous = cur.fetchone()[0]
            cur.execute(f"SET LOCAL statement_timeout = {int(COUNT_BUDGET_MS)}")
            n = message_queryset(f).values("id")[: COUNT_CAP + 1].count()
            cur.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
    except OperationalError:  # QueryCanceled: the budget ran out
        return MessageTotal(count=None)
    return MessageTotal(count=min(n, COUNT_CAP), at_least=n > COUNT_CAP)


@dataclass(frozen=True)
class Neighbours:
    """The messages just before and after one message in its queue, by id (None at either end)."""

    previous: int | None
    next: int | None


def get_message_neighbours(queue: Queue, message_id: int) -> Neighbours:
    """The previous and next message ids of ``queue`` around ``message_id``, for the message page's arrows.

    Read per (queue, priority) slice on the claim index, as the browser's pages are: walking the primary
    key for one queue could pass over every other queue's messages first.
    """
    f = MessageFilter(queues=(queue.name,))
    slices = _priority_slices(f)
    base = Message.objects.filter(queue_id=queue.pk)
    if len(slices) > MAX_SLICES:
        before = base.filter(id__lt=message_id).order_by("-id").values_list("id", flat=True).first()
        after = base.filter(id__gt=message_id).order_by("id").values_list("id", flat=True).first()
        return Neighbours(previous=before, next=after)
    earlier = [base.filter(priority=p, id__lt=message_id).order_by("-id").values_list("id", flat=True).first()
               for _, p in slices]
    later = [base.filter(priority=p, id__gt=message_id).order_by("id").values_list("id", flat=True).first()
             for _, p in slices]
    return Neighbours(previous=max((i for i in earlier if i is not None), default=None),
                      next=min((i for i in later if i is not None), default=None))


@dataclass
class MessageDetail:
    """Context of the message page."""

    info: MessageInfo
    queue: Queue
    body_json: str
    body_size: int
    collapsed: bool
    headers: list[tuple[str, str]]
    history: list[dict[str, Any]]
    timeline: list[TimelineEntry] = field(default_factory=list)
    """The history folded: runs of the same event and error as one entry with a count, newest first."""
    errors: list[DistinctError] = field(default_factory=list)
    """Each distinct error text once, with how many attempts ended on it."""
    state_note: str = ""
    """``retrying (attempt 5 of 6, next in 12 s)`` while it backs off after a failure."""
    expires_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    """When an operator asked to cancel it (``services.cancel_messages``) and it was held, so not yet gone."""


def dead_lettering_limit(max_receives: int, dead_letter_queue_id: int | None) -> int | None:
    """The receive count at which a queue's failing messages die, None when they never do."""
    return max_receives if max_receives and dead_letter_queue_id is not None else None


def get_message(message_id: int) -> MessageDetail | None:
    """One message by id via :func:`queues.peek` (a plain SELECT: its delivery state is untouched)."""
    queue = Queue.objects.filter(messages__id=message_id).first()
    if queue is None:
        return None
    found = engine.peek(queue.name, ids=[message_id], limit=1)
    if not found:
        return None  # acked or moved between the two reads
    info = found[0]
    pretty = json.dumps(info.body, indent=2, ensure_ascii=False, sort_keys=False)
    history = []
    for entry in reversed(info.history or []):  # newest first
        row = dict(entry) if isinstance(entry, dict) else {"event": str(entry)}
        row["at"] = parse_datetime(row["at"]) if isinstance(row.get("at"), str) else None
        history.append(row)
    timeline, errors = attempt_timeline(info.history or [], info.last_error or "")
    note = retry_note(
        state=info.state, receive_count=info.receive_count,
        max_receives=dead_lettering_limit(queue.max_receives, queue.dead_letter_queue_id),
        next_in=(info.available_at - timezone.now()).total_seconds(),
    )
    # peek's MessageInfo does not carry these two (engine SQL): one primary-key read.
    flow = Message.objects.filter(id=message_id).values("expires_at", "cancel_requested_at").first() or {}
    return MessageDetail(
        info=info, queue=queue, body_json=pretty, body_size=len(json.dumps(info.body).encode()),
        collapsed=len(pretty) > BODY_COLLAPSE_CHARS, headers=sorted((info.headers or {}).items()), history=history,
        timeline=timeline, errors=errors, state_note=note,
        **flow,
    )


# -- database health --------------------------------------------------------------------------------


def get_database_health(*, holders: int = 5) -> health.DatabaseHealth:
    """Queue tables' vacuum state, the oldest snapshot holders, replication slots (catalog views only)."""
    return health.read(holders=holders)


def get_database_session(pid: int) -> health.SnapshotHolder | None:
    """One session of the queues' database by pid, for the confirm page of ending it."""
    return health.get_session(pid)
