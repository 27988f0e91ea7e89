"""How mqadmin writes numbers for people: one function per kind of number, one output everywhere.

The dashboard's pages (through the template filters in ``queues.templatetags.queues_tags``), its live
updates (``static/queues/live.js`` mirrors :func:`format_age`, :func:`format_rate` and
:func:`format_count` letter for letter), ``mq_stats`` and the Database page all call these, so the same
age reads the same wherever it is shown. Ages never contain a space, so a command-line table stays one
word per column.

Exact durations of settings are another rule: :func:`format_duration` (round-trips through
``parse_duration`` of the commands) and :func:`duration_words` (sentences such as a settings change's
consequence).
"""

from __future__ import annotations

from datetime import timedelta

UNKNOWN = "—"
"""What a number that is not known (no sample yet, no ready message) reads as."""


def format_age(seconds: float | timedelta | None) -> str:
    """A duration rounded for reading at a glance: ``42s``, ``5m02s``, ``3h05m``, ``2d04h``; ``—`` for None."""
    if seconds is None:
        return UNKNOWN
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_rate(rate: float | None) -> str:
    """Messages per second: ``2.5/s``, ``1,234/s``; ``—`` when unknown."""
    if rate is None:
        return UNKNOWN
    return f"{rate:,.1f}/s" if rate < 100 else f"{rate:,.0f}/s"


def format_count(n: float | None) -> str:
    """A count with thousands separators (``12,345``), whatever the host's locale; ``—`` when unknown.

    Fixed separators because live.js writes the same cells in ``en-US`` on every update.
    """
    return UNKNOWN if n is None else f"{round(n):,}"


def format_duration(seconds: float | timedelta | None) -> str:
    """Exact and short, for settings: ``30s``, ``5m``, ``1m30s``, ``4d``, ``0.5s``, ``0s``; ``-`` for None."""
    if seconds is None:
        return "-"
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if seconds == 0:
        return "0s"
    whole = int(seconds)
    fraction = round(seconds - whole, 3)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            out.append(f"{whole // size}{unit}")
            whole %= size
    if whole or fraction:
        out.append(f"{whole + fraction:g}s")
    return "".join(out)


def duration_words(seconds: float) -> str:
    """A setting's duration as people write it in a sentence: ``60 s``, ``5 min``, ``2 h``, ``4 days``."""
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return f"{seconds:g} s"


def format_size(size: int) -> str:
    """``256KiB``, ``1MiB``, ``1000B``."""
    for unit, factor in (("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def retry_note(*, state: str, receive_count: int, max_receives: int | None, next_in: float) -> str:
    """How a message backing off after a failure reads: ``retrying (attempt 5 of 6, next in 12 s)``.

    The one rule of "retrying" (``MessageState`` stays the vocabulary: this is a *delayed* message that
    was received before, so a nack put it back with a delay): ``""`` for any other message. ``attempt``
    is the receive count; ``of`` the queue's max receives when failing messages go to a dead-letter
    queue (None: they retry for ever, and the note says no "of").
    """
    if state != "delayed" or receive_count <= 0:
        return ""
    of = f" of {max_receives}" if max_receives else ""
    return f"retrying (attempt {receive_count}{of}, next in {format_wait(next_in)})"


def format_wait(seconds: float) -> str:
    """A wait ahead, for sentences: ``12 s``, ``4 min 05 s``, ``2 h 10 min``; ``now`` when it is due."""
    s = round(seconds)
    if s <= 0:
        return "now"
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
DEAD_LETTER_KIND = "dead-letter"
"""What a dead-letter queue's kind reads as on the pages, in ``mq_stats`` and in metrics."""


def display_kind(kind: str, *, is_dead_letter_queue: bool) -> str:
    """``dead-letter`` for a dead-letter queue (whatever its ordering), else ``standard`` or ``fifo``."""
    return DEAD_LETTER_KIND if is_dead_letter_queue else kind


ACTION_NAMES: dict[str, str] = {
    "pause_queue": "Paused queue",
    "resume_queue": "Resumed queue",
    "update_queue_settings": "Changed settings",
    "purge_queue": "Purged queue",
    "delete_messages": "Deleted messages",
    "retry_messages": "Retried messages",
    "move_messages": "Moved messages",
    "start_redrive": "Started redrive",
    "stop_redrive": "Stopped redrive",
    "publish_message": "Published message",
    "create_queue": "Created queue",
    "delete_queue": "Deleted queue",
    "reveal_body": "Revealed a body",
    "shorten_retention": "Shortened retention",
    "search_bodies": "Searched bodies",
    "cancel_backend": "Ended a database session",
    "stop_worker": "Asked a worker to stop",
    "cancel_messages": "Cancelled messages",
    "save_schedule": "Saved schedule",
    "pause_schedule": "Paused schedule",
    "resume_schedule": "Resumed schedule",
    "run_schedule": "Ran schedule now",
    "delete_schedule": "Deleted schedule",
}
"""How the audit log names each action (``queues.permissions.Action`` values, which the rows keep as stored)."""


def action_name(action: str) -> str:
    """``Purged queue`` for ``purge_queue``; an action without a name reads as its words (``Some action``)."""
    return ACTION_NAMES.get(action) or action.replace("_", " ").capitalize()
