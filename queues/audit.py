"""The one writer of audit rows (``AuditEvent``), and the cleaning that lets any attempt be written.

``queues.services`` calls :func:`record` for every operator action, from the dashboard, the admin and
the ``mq_*`` commands alike, so every row has the same shape: the action's name, the queue, the outcome
(``ok``, ``denied``, ``error``), the count, message ids, a JSON detail and the error. Who acted is either
a Django user (``actor`` and ``actor_name``) or a :class:`~queues.permissions.CommandLineActor` (only
``actor_name``, ``cli:alice@host``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

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
