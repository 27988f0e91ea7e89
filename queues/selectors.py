"""The dashboard's read side: page context built from live counts, samples and plain SELECTs.

Live numbers come from the engine's :func:`queues.stats` (counter rows and index ranges, never a
``count(*)`` of the backlog); rates and the last hour's failures from ``QueueSample`` rows that the
sampler writes; workers from their heartbeat rows. Nothing here changes a message's delivery state:
the message browser is a plain SELECT, like :func:`queues.peek`.

Totals (the ``_total`` row) count dead letters once: ``ready``, ``in_flight`` and ``delayed`` add up
ordinary queues, ``dead`` adds up the depth of dead-letter queues (several queues may share one).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, Max, Q, QuerySet, TextField
from django.db.models.functions import Cast, Left
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from queues import conf, engine, health, validation
from queues.engine.types import MessageInfo, QueueStats
from queues.models import AuditEvent, Message, Queue, Redrive, RedriveState, Worker, WorkerState

TOTAL = "_total"
STATES = ("ready", "delayed", "in_flight", "dead")
CHART_WINDOWS: dict[int, str] = {300: "5 min", 3600: "1 h", 86400: "24 h", 604800: "7 d"}
QUEUE_SORTS = (
    "name", "kind", "state", "ready", "in_flight", "delayed", "dead", "oldest_ready_age", "rate_in", "rate_out",
    "workers",
)
BODY_PREVIEW_CHARS = 160
# A pretty-printed body longer than this is shown collapsed on the message page.
BODY_COLLAPSE_CHARS = 2000


# -- formatting -------------------------------------------------------------------------------------
def format_age(seconds: float | None) -> str:
    """A duration for people: ``"—"``, ``"42s"``, ``"3m 05s"``, ``"2h 10m"``, ``"3d 4h"``."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def format_rate(rate: float | None) -> str:
    """Messages per second: ``"—"`` when unknown."""
    if rate is None:
        return "—"
    return f"{rate:,.1f}/s" if rate < 100 else f"{rate:,.0f}/s"


def format_count(n: int | None) -> str:
    """An integer with thousands separators."""
    return "—" if n is None else f"{n:,}"


# -- queues -----------------------------------------------------------------------------------------
@dataclass
class Rates:
    """Per-second rates from the last two samples of a queue (None when no fresh samples exist)."""

    sent: float | None = None
    acked: float | None = None
    failed: float | None = None


class _LiveText:
    """Age and rates of a queue row or of the totals, formatted for people."""

    oldest_ready_age: float | None
    rate_in: float | None
    rate_out: float | None

    @property
    def oldest_age_text(self) -> str:
        """The oldest ready age."""
        return format_age(self.oldest_ready_age)

    @property
    def rate_in_text(self) -> str:
        """Messages sent per second."""
        return format_rate(self.rate_in)

    @property
    def rate_out_text(self) -> str:
        """Messages acked per second."""
        return format_rate(self.rate_out)


@dataclass
class QueueRow(_LiveText):
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

    @property
    def state(self) -> str:
        """``paused`` or ``active``."""
        return "paused" if self.paused else "active"


@dataclass
class Totals(_LiveText):
    """Sums over all queues for the overview cards (see the module docstring for ``dead``)."""

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
        if dt <= 0:
            out[name] = Rates()
            continue
        # Counters restart from zero when a queue is deleted and made again: never show negative rates.
        out[name] = Rates(max(0.0, (s1 - s0) / dt), max(0.0, (a1 - a0) / dt), max(0.0, (f1 - f0) / dt))
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


def _live_workers_by_queue(now: datetime) -> tuple[int, dict[str, int]]:
    """How many workers beat on time, and how many of them serve each queue."""
    cutoff = now - _stale_after()
    online = 0
    per_queue: dict[str, int] = {}
    for queues in Worker.objects.filter(state=WorkerState.LIVE, last_beat_at__gte=cutoff).values_list(
        "queues", flat=True
    ):
        online += 1
        for name in queues or ():
            per_queue[name] = per_queue.get(name, 0) + 1
    return online, per_queue


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


def _totals(stats: Sequence[QueueStats], rates: dict[str, Rates], online: int) -> Totals:
    t = Totals(workers=online)
    for s in stats:
        t.depth += s.depth
        if s.is_dead_letter_queue:
            t.dead += s.depth
            continue
        t.ready += s.ready
        t.in_flight += s.in_flight
        t.delayed += s.delayed
        if s.oldest_ready_age is not None:
            t.oldest_ready_age = max(t.oldest_ready_age or 0.0, s.oldest_ready_age)
    known = [r for r in rates.values() if r.sent is not None]
    if known:
        t.rate_in = sum(r.sent or 0.0 for r in known)
        t.rate_out = sum(r.acked or 0.0 for r in known)
        t.rate_failed = sum(r.failed or 0.0 for r in known)
    return t


@dataclass
class Overview:
    """Context of the overview page."""

    totals: Totals
    queues: list[QueueRow]
    running_redrives: list[Redrive]


def get_overview() -> Overview:
    """Cards, the backlog table (largest backlog first) and the redrives in progress."""
    now = timezone.now()
    stats = engine.stats()
    names = [s.queue for s in stats]
    rates = get_rates(names, now=now)
    online, per_queue = _live_workers_by_queue(now)
    totals = _totals(stats, rates, online)
    totals.failed_last_hour = get_failures_since(stats, now - timedelta(hours=1))
    rows = _rows(stats, rates, per_queue)
    rows.sort(key=lambda r: (-r.ready, -r.depth, r.name))
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
    rows = _rows(stats, rates, per_queue)

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
    workers: list[WorkerRow]
    redrives: list[Redrive]
    recent_audit: list[AuditEvent]


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
    row = _rows(mine, rates, per_queue)[0]
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
        sources=sources, workers=list_workers(queue=queue.name, active_only=True), redrives=redrives,
        recent_audit=_with_detail_json(
            AuditEvent.objects.filter(queue_name__in=[queue.name] + ([dlq.name] if dlq is not None else []))[:10]
        ),
    )


def get_queue_stats(name: str) -> QueueStats:
    """Live counts of one queue (``dead``: its dead-letter queue's depth)."""
    return engine.queue_stats(name)


def _words(seconds: float) -> str:
    """A setting's duration as people write it: ``60 s``, ``5 min``, ``2 h``, ``4 days``."""
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return f"{seconds:g} s"


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
        return (
            f"This will delete the {n:,} message{'' if n == 1 else 's'} older than {_words(self.new_retention)} "
            f"at the next prune, and from then on every message not received within "
            f"{_words(self.new_retention)} (retention {_words(self.old_retention)} \u2192 "
            f"{_words(self.new_retention)})."
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
    cutoff = timezone.now() - timedelta(seconds=max(float(new), 0.0))
    doomed = Message.objects.filter(queue=queue, enqueued_at__lt=cutoff, available_at__lt=cutoff).count()
    return SettingsImpact(destructive=True, would_delete=doomed, old_retention=old, new_retention=float(new))


def queue_names() -> list[str]:
    """All queue names, for pickers."""
    return list(Queue.objects.order_by("name").values_list("name", flat=True))


# -- workers ----------------------------------------------------------------------------------------
def _stale_after() -> timedelta:
    return timedelta(seconds=conf.worker_stale_after())


@dataclass
class WorkerRow:
    """A worker's heartbeat row and the state the dashboard shows (``stale``: live but silent)."""

    worker: Worker
    status: str
    beat_age: float

    @property
    def beat_age_text(self) -> str:
        """Time since the last heartbeat, for people."""
        return format_age(self.beat_age)


def worker_status(worker: Worker, now: datetime) -> str:
    """``live``, ``stale`` (no beat for more than two heartbeat intervals), ``stopping``, ``stopped`` or ``dead``."""
    if worker.state in (WorkerState.LIVE, WorkerState.STOPPING) and now - worker.last_beat_at > _stale_after():
        return "stale"
    return worker.state


def list_workers(*, queue: str | None = None, active_only: bool = False, finished_limit: int = 100) -> list[WorkerRow]:
    """Workers: every running one (live, stale, stopping), then the latest stopped or dead ones."""
    now = timezone.now()
    base = Worker.objects.all()
    if queue is not None:
        base = base.filter(queues__contains=[queue])
    running = list(base.filter(state__in=[WorkerState.LIVE, WorkerState.STOPPING]).order_by("host", "pid"))
    finished: list[Worker] = []
    if not active_only:
        finished = list(
            base.filter(state__in=[WorkerState.STOPPED, WorkerState.DEAD]).order_by("-last_beat_at")[:finished_limit]
        )
    return [
        WorkerRow(worker=w, status=worker_status(w, now), beat_age=(now - w.last_beat_at).total_seconds())
        for w in running + finished
    ]


# -- message search ---------------------------------------------------------------------------------
QUALIFIER_HELP = (
    "state:ready|delayed|in_flight|dead, queue:NAME, id:123, group:KEY, header.KEY:VALUE, body.PATH:VALUE "
    "(quote values with spaces: header.subject:\"hello world\")"
)


class SearchError(ValueError):
    """A search box the browser cannot run; the message names the offending term and the fix."""


@dataclass(frozen=True)
class MessageFilter:
    """A parsed message search. Repeated ``state``/``queue``/``id``/``group`` terms are alternatives;
    every ``header.*`` and ``body.*`` term must match."""

    queues: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    ids: tuple[int, ...] = ()
    groups: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: tuple[tuple[tuple[str, ...], str], ...] = ()

    def text(self) -> str:
        """The canonical search text: parsing it gives this filter back."""
        terms = [f"queue:{q}" for q in self.queues] + [f"state:{s}" for s in self.states]
        terms += [f"id:{i}" for i in self.ids] + [f"group:{g}" for g in self.groups]
        terms += [f"header.{k}:{v}" for k, v in self.headers]
        terms += [f"body.{'.'.join(p)}:{v}" for p, v in self.body]
        return " ".join(shlex.quote(t) for t in terms)

    def __str__(self) -> str:
        return self.text() or "(all messages)"

    @property
    def reads_bodies(self) -> bool:
        """Does the filter test body values (so its results would reveal bodies that ``HIDE_BODIES`` hides)?"""
        return bool(self.body)

    @property
    def single_queue(self) -> str | None:
        """The queue this filter is limited to, if exactly one."""
        return self.queues[0] if len(self.queues) == 1 else None


def parse_search(text: str, *, queue: str | None = None, state: str | None = None) -> MessageFilter:
    """Parse the browser's search box (plus the page's queue and state pickers) into a filter.

    Raises :class:`SearchError` naming the term for unknown qualifiers, bad values or unbalanced quotes.
    """
    # Every term ends up in SQL (header, group and body values): refuse what PostgreSQL cannot store here,
    # once, rather than per qualifier.
    problem = validation.text_problem(text or "")
    if problem is not None:
        raise SearchError(f"the search {problem}: remove it")
    try:
        tokens = shlex.split(text or "")
    except ValueError as exc:
        raise SearchError(f"cannot read the search {text!r}: {exc} (close your quotes)")
    queues: list[str] = [queue] if queue else []
    states: list[str] = [state] if state else []
    ids: list[int] = []
    groups: list[str] = []
    headers: list[tuple[str, str]] = []
    body: list[tuple[tuple[str, ...], str]] = []
    for token in tokens:
        key, sep, value = token.partition(":")
        if not sep:
            if token.isascii() and token.isdigit():
                ids.append(_message_id(token, token))
                continue
            raise SearchError(f"search term {token!r} has no qualifier: use {QUALIFIER_HELP}")
        if value == "":
            raise SearchError(f"search term {token!r} has no value after the colon")
        if key == "state":
            if value not in STATES:
                raise SearchError(f"unknown state {value!r} in {token!r}: use one of {', '.join(STATES)}")
            states.append(value)
        elif key == "queue":
            try:
                engine.validate_name(value)
            except ValueError as exc:
                raise SearchError(str(exc))
            queues.append(value)
        elif key == "id":
            ids.append(_message_id(value, token))
        elif key == "group":
            groups.append(value)
        elif key.startswith("header."):
            name = key[len("header."):]
            if not name:
                raise SearchError(f"{token!r} names no header: write header.KEY:VALUE")
            headers.append((name, value))
        elif key.startswith("body."):
            path = tuple(key[len("body."):].split("."))
            if not all(path):
                raise SearchError(f"{token!r} has an empty step in its body path: write body.a.b:VALUE")
            body.append((path, value))
        else:
            raise SearchError(f"unknown qualifier {key!r} in {token!r}: use {QUALIFIER_HELP}")
    if state and state not in STATES:
        raise SearchError(f"unknown state {state!r}: use one of {', '.join(STATES)}")

    def unique(values: list) -> tuple:
        return tuple(dict.fromkeys(values))

    return MessageFilter(
        queues=unique(queues), states=unique(states), ids=unique(ids), groups=unique(groups),
        headers=unique(headers), body=unique(body),
    )


def _message_id(value: str, token: str) -> int:
    try:
        return validation.parse_int(value, "id", minimum=1, maximum=validation.BIGINT_MAX)
    except validation.InvalidInput as exc:
        raise SearchError(f"{exc} in {token[:80]!r}: a message id is a whole number") from None


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for step in reversed(path):
        out = {step: out}
    return out


def _typed_alternatives(value: str) -> list[Any]:
    """``"42"`` matches both the string and the number 42; ``"true"``/``"null"`` likewise."""
    alternatives: list[Any] = [value]
    try:
        # NaN, Infinity, 1e999, a 5,000-digit number or [[[…]]] 10,000 deep match as text only.
        parsed = validation.loads_json(value, "the search value")
    except validation.InvalidInput:
        return alternatives
    if parsed is None or isinstance(parsed, bool | int | float):
        alternatives.append(parsed)
    return alternatives


def dead_letter_queue_ids() -> list[int]:
    """Ids of queues that are some queue's dead-letter queue."""
    return list(
        Queue.objects.filter(dead_letter_queue__isnull=False).values_list("dead_letter_queue_id", flat=True).distinct()
    )


def message_queryset(f: MessageFilter, *, now: datetime | None = None) -> QuerySet[Message]:
    """The messages ``f`` matches, as a plain SELECT (no locks). Unknown ``queue:`` names raise SearchError."""
    now = now or timezone.now()
    qs = Message.objects.all()
    if f.queues:
        found = dict(Queue.objects.filter(name__in=f.queues).values_list("name", "id"))
        missing = [q for q in f.queues if q not in found]
        if missing:
            raise SearchError(f"no queue named {missing[0]!r}: check the queue: term")
        qs = qs.filter(queue_id__in=list(found.values()))
    if f.states:
        dlq_ids = dead_letter_queue_ids()
        conditions = {
            "in_flight": Q(available_at__gt=now, receipt__isnull=False),
            "delayed": Q(available_at__gt=now, receipt__isnull=True),
            "dead": Q(available_at__lte=now, queue_id__in=dlq_ids),
            "ready": Q(available_at__lte=now) & ~Q(queue_id__in=dlq_ids),
        }
        either = Q()
        for s in f.states:
            either |= conditions[s]
        qs = qs.filter(either)
    if f.ids:
        qs = qs.filter(id__in=f.ids)
    if f.groups:
        qs = qs.filter(group_key__in=f.groups)
    for key, value in f.headers:
        qs = qs.filter(headers__contains={key: value})
    for path, value in f.body:
        either = Q()
        for alternative in _typed_alternatives(value):
            either |= Q(body__contains=_nested(path, alternative))
        qs = qs.filter(either)
    return qs


def message_state(*, receipt: Any, available_at: datetime, in_dead_letter_queue: bool, now: datetime) -> str:
    """The state of a message from its columns (the same rule as :func:`queues.peek`)."""
    if available_at > now:
        return "in_flight" if receipt is not None else "delayed"
    return "dead" if in_dead_letter_queue else "ready"


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


@dataclass
class MessagePage:
    """One page of the browser, keyset-paged by id."""

    rows: list[MessageRow] = field(default_factory=list)
    next_after: int | None = None
    prev_before: int | None = None


def search_messages(
    f: MessageFilter, *, after: int | None = None, before: int | None = None, limit: int | None = None
) -> MessagePage:
    """A page of messages matching ``f`` in id order: after the id ``after``, or the page before ``before``.

    Keyset pagination (``id > cursor ORDER BY id LIMIT n+1``): page 10,000 costs what page 1 does.
    """
    limit = limit or int(conf.get("PAGE_SIZE"))
    now = timezone.now()
    qs = message_queryset(f, now=now)
    order = "-id" if before is not None else "id"
    if after is not None:
        qs = qs.filter(id__gt=after)
    elif before is not None:
        qs = qs.filter(id__lt=before)
    columns = qs.annotate(
        queue_name=F("queue__name"),
        preview=Left(Cast("body", TextField()), BODY_PREVIEW_CHARS + 1),
    ).values(
        "id", "queue_id", "queue_name", "priority", "group_key", "receive_count", "enqueued_at", "available_at",
        "receipt", "last_error", "preview",
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
        rows.append(
            MessageRow(
                id=v["id"], queue=v["queue_name"],
                state=message_state(receipt=v["receipt"], available_at=v["available_at"],
                                    in_dead_letter_queue=v["queue_id"] in dlq_ids, now=now),
                priority=v["priority"], group_key=v["group_key"], receive_count=v["receive_count"],
                enqueued_at=v["enqueued_at"], available_at=v["available_at"], body_preview=preview,
                has_error=bool(v["last_error"]),
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


def count_messages(f: MessageFilter) -> int:
    """How many messages ``f`` matches (for the confirm page of a bulk action; not for every request)."""
    return message_queryset(f).count()


def count_existing(ids: Sequence[int]) -> int:
    """How many of the message ids still exist (a selection may have been acked meanwhile)."""
    return Message.objects.filter(id__in=list(ids)).count()


def matching_bounds(f: MessageFilter) -> tuple[int, int]:
    """How many messages ``f`` matches and the highest id among them (0 if none), read in one statement.

    A bulk action's confirmation carries both, so the action never reaches past what was shown.
    """
    found = message_queryset(f).aggregate(n=Count("id"), top=Max("id"))
    return int(found["n"] or 0), int(found["top"] or 0)


def iter_matching_ids(
    f: MessageFilter, *, batch: int = 5000, max_id: int | None = None
) -> Iterator[list[tuple[int, int]]]:
    """``(message id, queue id)`` pairs matching ``f``, in id order, ``batch`` at a time (keyset, no OFFSET);
    only ids up to ``max_id`` when given."""
    last = 0
    qs = message_queryset(f)
    if max_id is not None:
        qs = qs.filter(id__lte=max_id)
    while True:
        chunk = list(qs.filter(id__gt=last).order_by("id").values_list("id", "queue_id")[:batch])
        if not chunk:
            return
        yield chunk
        last = chunk[-1][0]


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
    return MessageDetail(
        info=info, queue=queue, body_json=pretty, body_size=len(json.dumps(info.body).encode()),
        collapsed=len(pretty) > BODY_COLLAPSE_CHARS, headers=sorted((info.headers or {}).items()), history=history,
    )


# -- audit ------------------------------------------------------------------------------------------
def _with_detail_json(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """The events with ``detail_json``: their detail pretty-printed for the page."""
    out = list(events)
    for e in out:
        e.detail_json = json.dumps(e.detail, indent=1, ensure_ascii=False, default=str)  # type: ignore[attr-defined]
    return out


@dataclass
class AuditPage:
    """One page of the audit log, newest first, keyset-paged by id."""

    events: list[AuditEvent]
    next_before: int | None


def list_audit_events(
    *, actor: str = "", action: str = "", queue: str = "", outcome: str = "", before: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """Audit events filtered by actor name, action, queue and outcome (exact matches), newest first."""
    qs = AuditEvent.objects.select_related("actor").order_by("-id")
    if actor:
        qs = qs.filter(actor_name=actor)
    if action:
        qs = qs.filter(action=action)
    if queue:
        qs = qs.filter(queue_name=queue)
    if outcome:
        qs = qs.filter(outcome=outcome)
    if before is not None:
        qs = qs.filter(id__lt=before)
    events = _with_detail_json(qs[: limit + 1])
    more = len(events) > limit
    events = events[:limit]
    return AuditPage(events=events, next_before=events[-1].id if more and events else None)


def audit_actor_names() -> list[str]:
    """Names that appear in the audit log, for the filter picker."""
    return list(AuditEvent.objects.order_by("actor_name").values_list("actor_name", flat=True).distinct()[:500])


# -- database health --------------------------------------------------------------------------------
def get_database_health(*, holders: int = 5) -> health.DatabaseHealth:
    """Queue tables' vacuum state, the oldest snapshot holders, replication slots (catalog views only)."""
    return health.read(holders=holders)


def get_database_session(pid: int) -> health.SnapshotHolder | None:
    """One session of the queues' database by pid, for the confirm page of ending it."""
    return health.get_session(pid)
