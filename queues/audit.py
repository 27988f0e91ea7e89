"""The one writer of audit rows (``AuditEvent``), the cleaning that lets any attempt be written, and
the audit log page's read (:func:`list_audit_events`).

``queues.services`` calls :func:`record` for every operator action, from the dashboard, the admin and
the ``mq_*`` commands alike, so every row has the same shape: the action's name, the queue, the outcome
(``ok``, ``denied``, ``error``), the count, message ids, a JSON detail and the error. Who acted is either
a Django user (``actor`` and ``actor_name``) or a :class:`~queues.permissions.CommandLineActor` (only
``actor_name``, ``cli:alice@host``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q

from queues.models import AuditEvent
from queues.permissions import Action, CommandLineActor

AUDIT_MAX_IDS = 1000
"""The audit row keeps at most this many message ids; ``count`` always has the full number."""

# Bounds of what an audit row keeps of free-form input: enough to tell what was tried, never so much
# that a hostile request makes the row itself fail or swell.
AUDIT_MAX_TEXT = 2000
AUDIT_MAX_ITEMS = 100
AUDIT_MAX_DEPTH = 8
_BIGINT = 2**63


def clean_text(value: object, limit: int = AUDIT_MAX_TEXT) -> str:
    """``value`` as text PostgreSQL accepts, at most ``limit`` characters.

    NUL (refused by text and jsonb) and lone surrogates (not encodable as UTF-8) are written as
    visible escapes (``\\x00``, ``\\udc80``) rather than dropped, so the row shows what was sent.
    """
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "\u2026"


def clean_json(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON that jsonb accepts: clean strings and keys, finite numbers, bounded size and depth."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # str() of a many-thousand-digit integer raises; its size says enough about what was tried.
        return value if -_BIGINT < value < _BIGINT else f"integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if depth >= AUDIT_MAX_DEPTH:
        return "\u2026"
    if isinstance(value, dict):
        items = list(value.items())
        out = {clean_text(k, 200): clean_json(v, depth + 1) for k, v in items[:AUDIT_MAX_ITEMS]}
        if len(items) > AUDIT_MAX_ITEMS:
            out["\u2026"] = f"{len(items) - AUDIT_MAX_ITEMS} more"
        return out
    if isinstance(value, list | tuple | set | frozenset):
        seq = list(value)
        out_list = [clean_json(v, depth + 1) for v in seq[:AUDIT_MAX_ITEMS]]
        if len(seq) > AUDIT_MAX_ITEMS:
            out_list.append(f"\u2026 {len(seq) - AUDIT_MAX_ITEMS} more")
        return out_list
    if isinstance(value, timedelta):
        return value.total_seconds()
    return clean_text(value)


def actor_fields(actor: Any) -> dict[str, Any]:
    """``actor`` and ``actor_name`` of a row: a user is linked and named, the command line only named."""
    if isinstance(actor, CommandLineActor):
        return {"actor": None, "actor_name": clean_text(actor.name, 150)}
    if actor is not None and getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None):
        return {"actor": actor, "actor_name": clean_text(actor.get_username(), 150)}
    return {"actor": None, "actor_name": ""}


def record(
    actor: Any,
    action: Action,
    *,
    queue_name: str = "",
    outcome: str,
    remote_addr: str = "",
    count: int = 0,
    message_ids: Sequence[int] = (),
    detail: dict[str, Any] | None = None,
    error: str = "",
) -> AuditEvent:
    """Write one audit row; every field is bounded and made storable here.

    Here, not by the callers: a refused attempt carries exactly the odd input that was refused, and
    its row must still be written.
    """
    ids = [i for i in list(message_ids)[:AUDIT_MAX_IDS] if isinstance(i, int) and not isinstance(i, bool)]
    return AuditEvent.objects.create(
        **actor_fields(actor),
        action=action.value,
        queue_name=clean_text(queue_name or "", 80),
        outcome=outcome,
        remote_addr=clean_text(remote_addr or "", 64),
        count=max(min(int(count), 2**31 - 1), -(2**31)),
        message_ids=[i for i in ids if -_BIGINT < i < _BIGINT],
        detail=clean_json(dict(detail or {})),
        error=clean_text(error or ""),
    )


# -- the audit log page ------------------------------------------------------------------------------------------


def with_detail_json(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """The events with ``detail_json``: their detail pretty-printed for the page."""
    out = list(events)
    for e in out:
        e.detail_json = json.dumps(e.detail, indent=1, ensure_ascii=False, default=str)  # type: ignore[attr-defined]
    return out


@dataclass
class AuditPage:
    """One page of the audit log, newest first, keyset-paged by (time, id) through the last event's id."""

    events: list[AuditEvent]
    next_before: int | None


def list_audit_events(
    *, actor: str = "", action: str = "", queue: str = "", outcome: str = "", before: int | None = None,
    limit: int = 100, since: datetime | None = None, until: datetime | None = None,
) -> AuditPage:
    """Audit events filtered by actor name, action, queue and outcome (exact matches) and a time range
    (``since`` inclusive, ``until`` exclusive), newest first: by time to the microsecond, then by id.

    ``before`` is the id of the last event of the previous page; the next page continues after that
    event's (time, id), so ids need not follow times (concurrent writers commit out of order).
    """
    qs = AuditEvent.objects.select_related("actor").order_by("-at", "-id")
    if since is not None:
        qs = qs.filter(at__gte=since)
    if until is not None:
        qs = qs.filter(at__lt=until)
    if actor:
        qs = qs.filter(actor_name=actor)
    if action:
        qs = qs.filter(action=action)
    if queue:
        qs = qs.filter(queue_name=queue)
    if outcome:
        qs = qs.filter(outcome=outcome)
    if before is not None:
        cursor_at = AuditEvent.objects.filter(id=before).values_list("at", flat=True).first()
        if cursor_at is None:
            qs = qs.filter(id__lt=before)  # the event is gone (pruned): fall back to id order
        else:
            qs = qs.filter(Q(at__lt=cursor_at) | Q(at=cursor_at, id__lt=before))
    events = with_detail_json(qs[: limit + 1])
    more = len(events) > limit
    events = events[:limit]
    return AuditPage(events=events, next_before=events[-1].id if more and events else None)


def audit_actor_names() -> list[str]:
    """Names that appear in the audit log, for the filter picker."""
    return list(AuditEvent.objects.order_by("actor_name").values_list("actor_name", flat=True).distinct()[:500])
