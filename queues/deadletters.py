"""Dead letters, read side: the error signature rule, groups by signature, the newest-first listing.

A **dead letter** here is a message that died and has not been moved since: ``dead_at`` is set (the
engine sets it with ``origin_queue_id`` when a message is dead-lettered, and clears it on redrive or
move). A message published or moved into a dead-letter queue by hand has no ``dead_at``: the message
browser shows it, this view does not.

**The signature rule** (the SQL function ``queues_error_signature``, migration ``0015_dlq``): the first
line of ``last_error`` (``KeyError: 'unknown SKU 42'``), with UUIDs written ``<uuid>``, ``0x…`` hex as
``<hex>`` and every run of digits as ``#``, cut to 200 characters. Ids, counts, addresses and ports so
fall into one group ("KeyError: 'unknown SKU #'"), while the exception class and the words of the
message keep different errors apart. The cost: HTTP status codes merge too (``503`` and ``502`` read
``#``); the example line of each group shows one real value.

**A group** is the dead letters of one dead-letter queue with the same origin queue and the same
signature. It is named by that key (:class:`GroupKey`), never by a page of ids, so "redrive this
group" acts on every message of the group, on every page.

**No full scan per page view.** The signature is stored (``Message.error_signature``) by a trigger
when a message dies, and two partial indexes hold dead letters only (``WHERE dead_at IS NOT NULL``):
``queues_msg_dead_sig (queue_id, origin_queue_id, error_signature, dead_at)`` answers the group counts
with an index-only scan of that one queue's dead letters, already in group order, and a group's
newest members; ``queues_msg_dead_at (queue_id, dead_at)`` the newest-first listing. A send, receive,
retrying nack or ack never writes them, nor runs the trigger's function. (An expression index was
tried first: PostgreSQL cannot scan an expression index alone, so every count re-ran the regular
expressions, 1 s per 100,000 dead letters.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from queues import conf
from queues.engine import validate_name
from queues.models import Message, Queue

SIGNATURE_CHARS = 200
"""A signature keeps at most this many characters of the first line (index entries stay small)."""

SIGNATURE_FUNCTION = "queues_error_signature"
"""The SQL function that computes a signature from an error text (``SELECT queues_error_signature(%s)``)."""

GROUP_LIMIT = 100
"""At most this many groups are listed per page (the largest first); the page says when there are more."""

LIST_LIMIT = 50
"""Dead letters listed per page, newest first."""

EXPORT_BATCH = 1000

_CLASS = re.compile(r"^[A-Za-z_][\w.]*$")


def error_class(first_line: str) -> str:
    """The exception class in an error's first line: ``KeyError`` of ``KeyError: 'x'``; a reason in front
    (``cannot decode body: ValueError: …``) is skipped; ``""`` when none is named."""
    for part in first_line.split(": "):
        part = part.strip()
        if _CLASS.match(part):
            return part
    return ""


def first_line(error: str) -> str:
    """The first line of an error text (its summary: ``Class: message``)."""
    return error.split("\n", 1)[0]


@dataclass(frozen=True)
class GroupKey:
    """What names a group: the dead-letter queue, the queue its messages died in (None: deleted since)
    and the signature. Stable: the same key selects the same group on every page and every process."""

    queue: str
    origin: str | None
    signature: str

    @classmethod
    def from_params(cls, queue: str, params: Any) -> GroupKey:
        """The key a page's ``origin`` and ``sig`` parameters name in ``queue``; ``ValueError`` naming the
        bad one (a signature is at most :data:`SIGNATURE_CHARS` characters, an origin a queue name or empty)."""
        origin = params.get("origin", "") or ""
        sig = params.get("sig")
        if sig is None:
            raise ValueError("no group chosen: the sig parameter (the error signature) is missing")
        if len(sig) > SIGNATURE_CHARS:
            raise ValueError(f"sig is {len(sig)} characters long: a signature has at most {SIGNATURE_CHARS}")
        if origin:
            validate_name(origin, "origin queue")
        return cls(queue=queue, origin=origin or None, signature=sig)

    def params(self) -> dict[str, str]:
        """The key as query or form parameters (``origin`` empty for a deleted origin queue)."""
        return {"origin": self.origin or "", "sig": self.signature}


@dataclass
class DeadLetterGroup:
    """One group: how many, when the newest died, an example first line, the error class."""

    key: GroupKey
    count: int
    newest: datetime | None
    example: str
    error_class: str

    @property
    def label(self) -> str:
        """``KeyError: 'unknown SKU #'``, or ``(no error recorded)`` for messages that died without one
        (received more than max receives without a failure on record: leases that ran out)."""
        return self.key.signature or "(no error recorded)"


@dataclass
class DeadLetterRow:
    """One dead letter in the listing."""

    id: int
    dead_at: datetime | None
    origin: str | None
    receive_count: int
    error_class: str
    error_line: str


@dataclass
class DeadLetterView:
    """Context of the dead-letter view of one queue (a dead-letter queue, or a source queue)."""

    queue: Queue
    dead_letter_queue: Queue | None
    """Where the dead letters sit: ``queue`` itself for a dead-letter queue, else its dead-letter queue."""
    origin: str | None
    """For a source queue's view: its name (only its own dead letters are shown)."""
    total: int = 0
    groups: list[DeadLetterGroup] = field(default_factory=list)
    more_groups: bool = False
    rows: list[DeadLetterRow] = field(default_factory=list)
    selected: DeadLetterGroup | None = None
    as_of: datetime | None = None


def signature_of(error: str) -> str:
    """The signature of an error text, by the database's own rule (for tests and tools)."""
    with conf.db().cursor() as cur:
        cur.execute(f"SELECT {SIGNATURE_FUNCTION}(%s)", [error])
        return cur.fetchone()[0]


def dead_letters(queue_id: int, *, origin_id: int | None = None, origin_known: bool = False) -> QuerySet[Message]:
    """The dead letters sitting in the queue ``queue_id``, of one origin queue when ``origin_known``
    (``origin_id`` None: the origin queue was deleted)."""
    qs = Message.objects.filter(queue_id=queue_id, dead_at__isnull=False)
    if origin_known:
        qs = qs.filter(origin_queue_id=origin_id) if origin_id is not None else qs.filter(origin_queue__isnull=True)
    return qs


def _group_filter(key: GroupKey) -> QuerySet[Message]:
    """The messages of the group ``key``; unknown queues raise ``LookupError`` naming them."""
    holder = Queue.objects.filter(name=key.queue).values_list("id", flat=True).first()
    if holder is None:
        raise LookupError(f"there is no queue named {key.queue!r}")
    origin_id = None
    if key.origin:
        origin_id = Queue.objects.filter(name=key.origin).values_list("id", flat=True).first()
        if origin_id is None:
            raise LookupError(f"there is no queue named {key.origin!r} (the group's origin)")
    return dead_letters(holder, origin_id=origin_id, origin_known=True).filter(error_signature=key.signature)


def group_messages(key: GroupKey, *, as_of: datetime | None = None) -> QuerySet[Message]:
    """The messages of a group, only those that died at or before ``as_of`` when given (what a
    confirmation showed: later deaths are left alone)."""
    qs = _group_filter(key)
    if as_of is not None:
        qs = qs.filter(dead_at__lte=as_of)
    return qs


def count_group(key: GroupKey, *, as_of: datetime | None = None) -> int:
    """How many messages the group holds (that died by ``as_of``)."""
    return group_messages(key, as_of=as_of).count()


def iter_group_ids(key: GroupKey, *, as_of: datetime | None = None, batch: int = 5000) -> Iterator[list[int]]:
    """The ids of a group's messages, ``batch`` at a time, in id order (keyset, no OFFSET)."""
    qs = group_messages(key, as_of=as_of)
    last = 0
    while True:
        chunk = list(qs.filter(id__gt=last).order_by("id").values_list("id", flat=True)[:batch])
        if not chunk:
            return
        yield chunk
        last = chunk[-1]


def _origin_names(ids: set[int | None]) -> dict[int, str]:
    known = [i for i in ids if i is not None]
    return dict(Queue.objects.filter(id__in=known).values_list("id", "name")) if known else {}


def list_groups(
    holder: Queue, *, origin: Queue | None = None, limit: int = GROUP_LIMIT
) -> tuple[list[DeadLetterGroup], bool]:
    """The groups of ``holder``'s dead letters (of ``origin`` only, when given), largest first, and whether
    more than ``limit`` exist. One index-only scan of ``queues_msg_dead_sig`` over this queue's dead
    letters, already in group order (no sort of the rows, no heap visit for visible pages)."""
    where = "queue_id = %s AND dead_at IS NOT NULL"
    params: list[Any] = [holder.id]
    if origin is not None:
        where += " AND origin_queue_id = %s"
        params.append(origin.id)
    with conf.db().cursor() as cur:
        cur.execute(
            f"""
            SELECT origin_queue_id, coalesce(error_signature, ''), count(*), max(dead_at)
            FROM queues_message WHERE {where}
            GROUP BY origin_queue_id, error_signature
            """,
            params,
        )
        found = cur.fetchall()
    found.sort(key=lambda r: (-r[2], r[1]))
    more = len(found) > limit
    found = found[:limit]
    names = _origin_names({r[0] for r in found})
    examples = _examples(holder.id, [(r[0], r[1]) for r in found])
    groups = []
    for origin_id, sig, n, newest in found:
        example = examples.get((origin_id, sig), sig)
        key = GroupKey(queue=holder.name, origin=names.get(origin_id) if origin_id is not None else None, signature=sig)
        groups.append(
            DeadLetterGroup(key=key, count=n, newest=newest, example=example, error_class=error_class(example))
        )
    return groups, more


def _examples(holder_id: int, keys: list[tuple[int | None, str]]) -> dict[tuple[int | None, str], str]:
    """The first line of the newest message of each group: one probe of ``queues_msg_dead_sig`` per group
    (a statement per group, because ``IS NOT DISTINCT FROM`` on the origin could not use the index)."""
    out: dict[tuple[int | None, str], str] = {}
    with conf.db().cursor() as cur:
        for origin_id, sig in keys:
            cur.execute(
                f"""
                SELECT split_part(last_error, E'\\n', 1) FROM queues_message
                WHERE queue_id = %s AND dead_at IS NOT NULL AND error_signature = %s
                  AND origin_queue_id {"= %s" if origin_id is not None else "IS NULL"}
                ORDER BY dead_at DESC LIMIT 1
                """,
                [holder_id, sig, *([origin_id] if origin_id is not None else [])],
            )
            found = cur.fetchone()
            if found is not None:
                out[(origin_id, sig)] = found[0]
    return out


def _rows(qs: QuerySet[Message], limit: int) -> list[DeadLetterRow]:
    if limit <= 0:
        return []
    values = list(
        qs.annotate(line=RawSQL("split_part(last_error, E'\\n', 1)", ()))
        .order_by("-dead_at", "-id")
        .values("id", "dead_at", "origin_queue_id", "receive_count", "line")[:limit]
    )
    names = _origin_names({v["origin_queue_id"] for v in values})
    return [
        DeadLetterRow(
            id=v["id"],
            dead_at=v["dead_at"],
            origin=names.get(v["origin_queue_id"]),
            receive_count=v["receive_count"],
            error_class=error_class(v["line"] or ""),
            error_line=v["line"] or "",
        )
        for v in values
    ]


def holder_of(queue: Queue) -> tuple[Queue | None, Queue | None]:
    """Where ``queue``'s dead-letter view looks: (the queue holding the dead letters, the origin to keep).

    A dead-letter queue (some queue names it) holds its own: every origin. Any other queue's view is
    its dead letters in its current dead-letter queue (None, None without one).
    """
    if Queue.objects.filter(dead_letter_queue=queue).exists():
        return queue, None
    if queue.dead_letter_queue_id is not None:
        return queue.dead_letter_queue, queue
    return None, None


def count_dead_letters(queue: Queue) -> int:
    """How many dead letters ``queue``'s view holds (index-only count over ``queues_msg_dead_sig``)."""
    holder, origin = holder_of(queue)
    if holder is None:
        return 0
    return dead_letters(holder.id, origin_id=origin.id if origin else None, origin_known=origin is not None).count()


def get_view(queue: Queue, *, selected: GroupKey | None = None, limit: int = LIST_LIMIT) -> DeadLetterView:
    """The dead-letter view of ``queue``: its groups, and the newest ``limit`` dead letters (of ``selected``
    only; ``limit=0``: the groups alone, as the queue page shows them)."""
    holder, origin = holder_of(queue)
    view = DeadLetterView(
        queue=queue, dead_letter_queue=holder, origin=origin.name if origin else None, as_of=timezone.now()
    )
    if holder is None:
        return view
    view.groups, view.more_groups = list_groups(holder, origin=origin)
    view.total = sum(g.count for g in view.groups) if not view.more_groups else count_dead_letters(queue)
    if selected is not None:
        if selected.queue != holder.name or (origin is not None and selected.origin != origin.name):
            raise LookupError(f"that group is not among the dead letters of {queue.name!r}")
        view.selected = next((g for g in view.groups if g.key == selected), None)
        if view.selected is None:
            n = count_group(selected)
            view.selected = DeadLetterGroup(
                key=selected,
                count=n,
                newest=None,
                example=selected.signature,
                error_class=error_class(selected.signature),
            )
        view.rows = _rows(group_messages(selected), limit)
    else:
        qs = dead_letters(holder.id, origin_id=origin.id if origin else None, origin_known=origin is not None)
        view.rows = _rows(qs, limit)
    return view


def export_lines(key: GroupKey, *, with_bodies: bool, as_of: datetime | None = None) -> Iterator[str]:
    """The group's messages as JSON lines (one object per message, in id order), read in batches so a
    group of 100,000 never sits in memory. ``with_bodies`` False leaves bodies out (``HIDE_BODIES``)."""
    origin = key.origin
    for ids in iter_group_ids(key, as_of=as_of, batch=EXPORT_BATCH):
        rows = (
            Message.objects.filter(id__in=ids)
            .order_by("id")
            .values(
                "id",
                "body",
                "headers",
                "priority",
                "group_key",
                "receive_count",
                "enqueued_at",
                "dead_at",
                "last_error",
                "history",
            )
        )
        for r in rows:
            item: dict[str, Any] = {
                "id": r["id"],
                "queue": key.queue,
                "origin": origin,
                "signature": key.signature,
                "dead_at": r["dead_at"].isoformat() if r["dead_at"] else None,
                "enqueued_at": r["enqueued_at"].isoformat(),
                "receive_count": r["receive_count"],
                "priority": r["priority"],
                "group": r["group_key"],
                "headers": r["headers"],
                "last_error": r["last_error"],
                "history": r["history"],
            }
            if with_bodies:
                item["body"] = r["body"]
            else:
                item["body_hidden"] = True
            yield json.dumps(item, ensure_ascii=False, default=str) + "\n"


# -- one message's attempts ----------------------------------------------------------------------------
@dataclass
class TimelineEntry:
    """Consecutive history entries with the same event and the same error, shown as one line (``× 5``)."""

    event: str
    first_at: datetime | None
    last_at: datetime | None
    count: int
    error_line: str = ""
    error_class: str = ""
    error_number: int = 0
    """Which of the message's distinct errors (1-based, as :func:`attempt_timeline` lists them); 0: none."""
    receives: str = ""
    detail: str = ""
    moved_from: str = ""


@dataclass
class DistinctError:
    """One error text as the message's history holds it, with how many attempts ended on it."""

    number: int
    text: str
    count: int
    first_line: str
    error_class: str


def _when(value: Any) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None


def attempt_timeline(history: list[Any], last_error: str = "") -> tuple[list[TimelineEntry], list[DistinctError]]:
    """A message's history as a timeline, newest first, and its distinct errors in order of first
    appearance. Runs of the same event with the same error fold into one entry with their count, and
    each error's full text is kept once (the page prints it once, not once per attempt)."""
    errors: dict[str, DistinctError] = {}
    entries: list[TimelineEntry] = []
    for raw in history or []:
        row = raw if isinstance(raw, dict) else {"event": str(raw)}
        event = str(row.get("event") or "—")
        text = str(row.get("error") or "")
        number = 0
        if text:
            if text not in errors:
                line = first_line(text)
                errors[text] = DistinctError(
                    number=len(errors) + 1, text=text, count=0, first_line=line, error_class=error_class(line)
                )
            errors[text].count += 1
            number = errors[text].number
        at = _when(row.get("at"))
        receive = row.get("receive_count")
        detail = str(row.get("reason") or "")
        moved_from = str(row.get("from") or "")
        last = entries[-1] if entries else None
        if last is not None and last.event == event and last.error_number == number and number and not detail:
            last.count += 1
            last.last_at = at or last.last_at
            if receive is not None:
                last.receives = f"{last.receives.split('–')[0]}–{receive}"
            continue
        entries.append(
            TimelineEntry(
                event=event,
                first_at=at,
                last_at=at,
                count=1,
                error_line=errors[text].first_line if text else "",
                error_class=errors[text].error_class if text else "",
                error_number=number,
                receives="" if receive is None else str(receive),
                detail=detail,
                moved_from=moved_from,
            )
        )
    if last_error and last_error not in errors:
        line = first_line(last_error)
        errors[last_error] = DistinctError(
            number=len(errors) + 1, text=last_error, count=0, first_line=line, error_class=error_class(line)
        )
    entries.reverse()
    return entries, list(errors.values())
