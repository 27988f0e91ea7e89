"""How one worker process runs: :class:`WorkerConfig` (one field per ``mq_worker`` option) and its checks.

Everything here is checked before the first claim, so a bad option stops ``mq_worker`` with one line
that says what to fix (:class:`~queues.worker.errors.WorkerConfigError`), never a traceback later.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from queues import engine

# The engine's public limits; they move to queues.engine.validation with the engine's split.
from queues.engine.validation import MAX_BATCH, MAX_VISIBILITY_TIMEOUT
from queues.worker.errors import WorkerConfigError
from queues.worker.registry import HandlerSpec


def parse_queue_weight(text: str) -> tuple[str, int]:
    """``orders`` or ``orders:3`` -> ``("orders", 3)``; :class:`WorkerConfigError` if malformed."""
    name, sep, weight_text = text.partition(":")
    weight = 1
    if sep:
        try:
            weight = int(weight_text)
        except ValueError:
            raise WorkerConfigError(
                f"invalid queue weight in {text!r}: use QUEUE or QUEUE:WEIGHT with a whole number, e.g. orders:3"
            ) from None
        if not 1 <= weight <= 1000:
            raise WorkerConfigError(f"invalid queue weight in {text!r}: the weight must be from 1 to 1000")
    engine.validate_name(name)
    return name, weight


def check_number(
    value: Any,
    label: str,
    *,
    minimum: float,
    maximum: float | None = None,
    integer: bool = False,
    optional: bool = False,
) -> None:
    """Raise :class:`WorkerConfigError` unless ``value`` is a number (``integer``: a whole one) in range.

    ``optional`` lets None through (the option is unset). Booleans and NaN are refused.
    """
    if value is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value != value:
        raise WorkerConfigError(f"{label} must be a {'whole ' if integer else ''}number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise WorkerConfigError(f"{label} must be at least {minimum:g}{upper}, got {value!r}")


def check_signature(spec: HandlerSpec, queue: str) -> None:
    """A handler must take the message as its one required positional argument."""
    try:
        sig = inspect.signature(spec.func)
    except (TypeError, ValueError):
        return  # builtins and some C callables cannot be inspected: trust them
    try:
        sig.bind(object())
    except TypeError:
        raise WorkerConfigError(
            f"the handler {spec.name} of queue {queue!r} cannot take the message: its signature is "
            f"{spec.func.__name__}{sig}; it must accept one positional argument (a queues.Delivery)"
        ) from None


@dataclass(frozen=True)
class WorkerConfig:
    """How one worker process runs. Every field has a matching ``mq_worker`` option."""

    queues: Sequence[tuple[str, int]]
    """(queue name, weight) pairs: each claim splits the free capacity between queues by weight."""
    concurrency: int = 4
    """Handler threads (sync handlers) and at most this many tasks at once (async handlers)."""
    prefetch: int | None = None
    """The most messages held at once (running + waiting + being acked); claims are batches up to it.
    None: ``max(10, 2 * concurrency)``."""
    visibility_timeout: float | None = None
    """Lease length of each claim in seconds; None: each queue's own setting (a change reaches the
    worker within a second or two, see :mod:`queues.worker.runtime`)."""
    max_messages: int | None = None
    """Exit cleanly after settling this many messages (for recycling)."""
    max_seconds: float | None = None
    """Exit cleanly after running this long (for recycling)."""
    burst: bool = False
    """Exit once every queue is empty and nothing is held."""
    grace: float = 30.0
    """On shutdown, how long running handlers may take before their messages are released."""
    poll_interval: float = 2.0
    """The longest pause between polls of an idle queue (NOTIFY wakes it sooner)."""
    log_interval: float = 10.0
    """Seconds between two stats lines in the log; 0: none."""
    prune_interval: float = 60.0
    """Seconds between two upkeep sweeps (:func:`queues.upkeep.sweep`; one process at a time runs
    one); 0: never (dead workers are still reaped at heartbeat pace)."""
    heartbeat_interval: float | None = None
    """Seconds between heartbeats; None: the HEARTBEAT_INTERVAL setting."""

    def __post_init__(self) -> None:
        if not self.queues:
            raise WorkerConfigError("name at least one queue to work on")
        seen: set[str] = set()
        for name, weight in self.queues:
            engine.validate_name(name)
            check_number(weight, f"the weight of {name!r}", minimum=1, maximum=1000, integer=True)
            if name in seen:
                raise WorkerConfigError(f"queue {name!r} is named twice: name each queue once (QUEUE:WEIGHT)")
            seen.add(name)
        check_number(self.concurrency, "concurrency", minimum=1, maximum=1000, integer=True)
        check_number(self.prefetch, "prefetch", minimum=1, maximum=MAX_BATCH, integer=True, optional=True)
        check_number(
            self.visibility_timeout, "visibility timeout", minimum=1.0, maximum=MAX_VISIBILITY_TIMEOUT, optional=True
        )
        check_number(self.max_messages, "max messages", minimum=1, integer=True, optional=True)
        check_number(self.max_seconds, "max seconds", minimum=0.1, optional=True)
        check_number(self.grace, "grace", minimum=0)
        check_number(self.poll_interval, "poll interval", minimum=0.05, maximum=3600)
        check_number(self.log_interval, "log interval", minimum=0)
        check_number(self.prune_interval, "prune interval", minimum=0)
        check_number(self.heartbeat_interval, "heartbeat interval", minimum=0.1, optional=True)

    @property
    def effective_prefetch(self) -> int:
        """``prefetch``, or its default."""
        return self.prefetch if self.prefetch is not None else max(10, 2 * self.concurrency)


def check_schema() -> None:
    """The queue database has every migration of this release: a worker of a new release started before
    ``migrate`` would otherwise fail at its first claim (migration 0021 added the claim's SQL function),
    and again at every claim after it."""
    from django.db.migrations.executor import MigrationExecutor  # deferred: loads every app's migrations

    from queues import conf

    conn = conf.db()
    executor = MigrationExecutor(conn)
    ours = [node for node in executor.loader.graph.leaf_nodes() if node[0] == "queues"]
    missing = [migration.name for migration, _ in executor.migration_plan(ours) if migration.app_label == "queues"]
    if missing:
        database = "" if conn.alias == "default" else f" --database {conn.alias}"
        if not any(app == "queues" for app, _ in executor.loader.applied_migrations):
            what = "has none of mqadmin's tables yet"
        else:
            listed = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            what = f"lacks mqadmin's migrations {listed}"
        raise WorkerConfigError(
            f"the database {conn.settings_dict['NAME']!r} {what}: "
            f"run python manage.py migrate{database} before starting workers of this release"
        )
