"""The options of a ``QueuesBackend`` (``TASKS[alias]["OPTIONS"]``): their defaults and limits.

Documented in docs/tasks.md; :mod:`queues.tasks.checks` reports unknown keys and bad values.
"""

from __future__ import annotations

from typing import Any

OPTION_DEFAULTS: dict[str, Any] = {
    # Prepended to a task's queue_name to name its mqadmin queue ("default" -> "tasks.default"),
    # so task queues never collide with hand-written handlers' queues and stand out on the dashboard.
    "QUEUE_PREFIX": "tasks.",
    # Create a missing mqadmin queue (with QUEUE_SETTINGS) on the first enqueue, or when a worker for it starts.
    "CREATE_QUEUES": True,
    # Settings for queues created by CREATE_QUEUES: the keywords of queues.create_queue.
    "QUEUE_SETTINGS": {},
    # Exponential backoff between attempts of a failing task: base and cap, in seconds.
    "BACKOFF": 1.0,
    "MAX_BACKOFF": 300.0,
    # Seconds after which the worker abandons a running task (None: never), as for any handler.
    "TIMEOUT": None,
    # Seconds a finished (SUCCESSFUL or FAILED) result is kept; workers' prune (and mq_prune) delete
    # older ones, so the results table does not grow forever. None: keep them all.
    "RESULT_RETENTION": 7 * 24 * 3600.0,
}

QUEUE_SETTING_KEYS = frozenset(
    {
        "kind",
        "visibility_timeout",
        "max_receives",
        "dead_letter_queue",
        "default_delay",
        "retention",
        "max_message_size",
        "dedup_window",
        "paused",
    }
)
"""The keywords of ``queues.create_queue`` that ``QUEUE_SETTINGS`` may hold."""

MAX_DEFER_SECONDS = 15 * 24 * 3600.0
"""How far ahead ``run_after`` may be: the engine delays a message by at most 15 days (its ``MAX_DELAY``)."""
