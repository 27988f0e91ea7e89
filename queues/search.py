"""The message browser's search language: ``state:``, ``queue:``, ``id:``, ``group:``, ``header.K:``, ``body.P:``,
``error:`` and ``died:``.

:func:`parse_search` turns the search box into a :class:`MessageFilter` (or a :class:`SearchError` that
names the term and the fix); :func:`message_queryset` turns a filter into a plain SELECT on
``Message`` (no locks), its states through :class:`queues.models.MessageQuerySet`. The browser's pages
(``selectors.search_messages``) and the bulk actions (``services``, through :func:`iter_matching_ids`
and :func:`matching_bounds`) both run a search through here, so a bulk action acts on exactly what the
browser showed.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from queues import validation
from queues.engine import validate_name
from queues.models import Message, MessageQuerySet, MessageState, Queue

STATES: tuple[str, ...] = tuple(MessageState.values)
"""The values of ``state:``, in the order the browser's picker lists them."""

QUALIFIER_HELP = (
    "state:ready|delayed|in_flight|dead, queue:NAME, id:123, group:KEY, header.KEY:VALUE, body.PATH:VALUE, "
    "error:TEXT, died:1h|2026-12-03|FROM..TO "
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
    errors: tuple[str, ...] = ()
    """``error:`` texts: each must appear in the message's last error (case-insensitive)."""
    died: tuple[DiedRange, ...] = ()
    """``died:`` ranges: each must hold the message's time of death (so only dead letters match)."""

    def text(self) -> str:
        """The canonical search text: parsing it gives this filter back."""
        terms = [f"queue:{q}" for q in self.queues] + [f"state:{s}" for s in self.states]
        terms += [f"id:{i}" for i in self.ids] + [f"group:{g}" for g in self.groups]
        terms += [f"header.{k}:{v}" for k, v in self.headers]
        terms += [f"body.{'.'.join(p)}:{v}" for p, v in self.body]
        terms += [f"error:{e}" for e in self.errors] + [f"died:{d}" for d in self.died]
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


@dataclass(frozen=True)
class DiedRange:
    """A ``died:`` term: from ``start`` (inclusive) to ``end`` (exclusive); None is open."""

    start: datetime | None
    end: datetime | None

    def __str__(self) -> str:
        # Absolute times, so a bulk action that re-reads the search acts on the range the page showed.
        def iso(t: datetime | None) -> str:
            return t.astimezone(UTC).isoformat().replace("+00:00", "Z") if t is not None else ""

        return f"{iso(self.start)}..{iso(self.end)}"


_AGO_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _died_point(text: str, token: str, now: datetime, *, end: bool) -> datetime:
    """One side of a ``died:`` range: an age (``15m``: that long ago), a date (midnight UTC; as the end
    of a range the day is included) or an ISO date-time (UTC unless it names its offset)."""
    if len(text) >= 2 and text[-1] in _AGO_UNITS and text[:-1].isascii() and text[:-1].isdigit():
        amount = int(text[:-1])
        if amount > 10**6:
            raise SearchError(f"{text!r} in {token!r} is too long ago: use at most 1000000{text[-1]}")
        return now - timedelta(seconds=amount * _AGO_UNITS[text[-1]])
    try:
        moment = parse_datetime(text.replace("Z", "+00:00")) if "T" in text or " " in text else None
        day = parse_date(text) if moment is None else None
    except ValueError:
        moment = day = None
    if moment is not None:
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    if day is not None:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    raise SearchError(
        f"cannot read {text!r} in {token!r} as a time: write an age (30s, 15m, 2h, 7d), a date (2026-12-03) "
        "or a date and time (2026-12-03T14:05:00Z)"
    )


def parse_died(value: str, token: str, *, now: datetime | None = None) -> DiedRange:
    """A ``died:`` value: ``1h`` (died in the last hour), ``2026-12-03`` (that day, UTC),
    ``2026-12-03T14:00..2026-12-03T15:00``, ``..2026-12-01`` (before), ``2h..1h``."""
    now = now or timezone.now()
    if ".." in value:
        left, _, right = value.partition("..")
        if not left and not right:
            raise SearchError(f"{token!r} has an empty range: write died:FROM..TO with at least one side")
        start = _died_point(left, token, now, end=False) if left else None
        end = _died_point(right, token, now, end=True) if right else None
        if start is not None and end is not None and start >= end:
            raise SearchError(f"{token!r} ends before it starts: write the earlier time first")
        return DiedRange(start, end)
    if len(value) >= 2 and value[-1] in _AGO_UNITS and value[:-1].isdigit():
        return DiedRange(_died_point(value, token, now, end=False), None)
    start = _died_point(value, token, now, end=False)
    day = parse_date(value) if "T" not in value else None
    return DiedRange(start, start + timedelta(days=1) if day is not None else None)


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
    errors: list[str] = []
    died: list[DiedRange] = []
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
                validate_name(value)
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
        elif key == "error":
            errors.append(value)
        elif key == "died":
            died.append(parse_died(value, token))
        else:
            raise SearchError(f"unknown qualifier {key!r} in {token!r}: use {QUALIFIER_HELP}")
    if state and state not in STATES:
        raise SearchError(f"unknown state {state!r}: use one of {', '.join(STATES)}")

    def unique(values: list) -> tuple:
        return tuple(dict.fromkeys(values))

    return MessageFilter(
        queues=unique(queues), states=unique(states), ids=unique(ids), groups=unique(groups),
        headers=unique(headers), body=unique(body), errors=unique(errors), died=unique(died),
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


def message_queryset(f: MessageFilter, *, now: datetime | None = None) -> MessageQuerySet:
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
        qs = qs.in_states(*f.states, now=now)
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
    for text in f.errors:
        qs = qs.filter(last_error__icontains=text)
    for span in f.died:
        qs = qs.filter(dead_at__isnull=False)
        if span.start is not None:
            qs = qs.filter(dead_at__gte=span.start)
        if span.end is not None:
            qs = qs.filter(dead_at__lt=span.end)
    return qs


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


def count_existing(ids: Sequence[int]) -> int:
    """How many of the message ids still exist (a selection may have been acked meanwhile)."""
    return Message.objects.filter(id__in=list(ids)).count()
