"""Periodic schedules: a message (or a ``django.tasks`` task) enqueued at each occurrence of a cron
expression, exactly once however many processes run the scheduler.

- **Declaring**: :func:`schedule` (create or update by name), ``MQADMIN["SCHEDULES"]`` (synced by every
  scheduler at start, :func:`sync_declared`) or ``@periodic`` on a ``@task`` (:mod:`queues.tasks.periodic`).
  Cron expressions are read by ``cronsim``: five fields (minute first) or six (second first, for
  sub-minute schedules such as ``*/2 * * * * *``), in the schedule's IANA time zone.
- **Running**: :func:`run_due` sends what is due. Each worker runs it every ``SCHEDULER_INTERVAL``
  seconds in a thread (:func:`start_scheduler`), so does each daphne web process, and the upkeep sweep
  (``mq_prune``) runs it once. One transaction-level advisory lock elects one of them per round (the
  others do nothing), and the exactly-once guarantee does not even rest on it: the row is locked
  (``FOR UPDATE SKIP LOCKED``), the message is sent with the dedup id ``schedule:<name>:<occurrence>``,
  and ``next_run_at`` moves past it, all in one transaction. A second scheduler either skips the locked
  row or, once the first commits, sees an occurrence that is no longer due.
- **Missed occurrences** (every scheduler down, or a paused database): with ``catch_up`` (the default)
  the latest missed occurrence is enqueued once and the older ones are skipped, as anacron does; without
  it, an occurrence found more than :data:`LATE_AFTER` seconds late is skipped. Paused time is never
  caught up: resuming starts from the next occurrence after now.
- **Time** is PostgreSQL's clock (``clock_timestamp()``), one for every process.

It is one module on purpose: declaring, syncing and running all write the same row under the same
lock rules, and the exactly-once argument above should be checkable in one file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from django.db import DatabaseError, IntegrityError, close_old_connections
from django.utils.module_loading import import_string

from queues import conf, engine
from queues.engine import text
from queues.engine.errors import MQError
from queues.engine.types import JSONText
from queues.engine.validation import encode_body, encode_headers
from queues.models import Schedule
from queues.models import TaskResult as TaskResultRow
from queues.worker.resilience import Outage

log = logging.getLogger("queues.schedules")

LOCK_KEY = int.from_bytes(b"mqsched_", "big")
"""The advisory lock key that elects one scheduler per round (one per database)."""
LATE_AFTER = 60.0
"""Without ``catch_up``, an occurrence found more than this many seconds late is skipped."""
MAX_CRON_LENGTH = 120
MAX_ZONE_LENGTH = 64
SOURCES = ("api", "settings", "code")
"""Where a schedule was declared: :func:`schedule`, ``MQADMIN["SCHEDULES"]`` or ``@periodic``."""
SPEC_KEYS = frozenset({"cron", "queue", "body", "headers", "task", "args", "kwargs", "timezone", "catch_up"})
"""The keys of one ``MQADMIN["SCHEDULES"]`` entry."""


class InvalidSchedule(MQError, ValueError):
    """A schedule's name, cron expression, time zone, target or body is not acceptable."""


class ScheduleNotFound(MQError, ValueError, LookupError):
    """No schedule of that name exists."""


# -- checking values ------------------------------------------------------------------------------
def check_name(name: object) -> str:
    """``name`` if it is a valid schedule name (the queue-name rule), else :class:`InvalidSchedule`."""
    try:
        return engine.validate_name(name, "schedule")
    except ValueError as exc:
        raise InvalidSchedule(str(exc)) from None


def check_cron(expr: object) -> str:
    """``expr`` if cronsim reads it and it ever occurs, else :class:`InvalidSchedule` naming it."""
    expr = text.check_text(expr, "cron expression", error=InvalidSchedule, min_length=1, max_length=MAX_CRON_LENGTH)
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            f"cron expression {expr!r} has {len(fields)} fields: write five (minute hour day month weekday, "
            "e.g. '0 3 * * *') or six with seconds first (e.g. '*/10 * * * * *')"
        )
    try:
        next(CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC)))
    except CronSimError as exc:
        raise InvalidSchedule(
            f"cron expression {expr!r} is not valid ({exc}): fields are minute 0-59, hour 0-23, "
            "day 1-31, month 1-12, weekday 0-7 (seconds 0-59 first in a six-field one)"
        ) from None
    except StopIteration:
        raise InvalidSchedule(f"cron expression {expr!r} never occurs (no such date): check its day and month")
    return " ".join(fields)


def check_zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name`` (``"UTC"``, ``"Europe/Paris"``), else :class:`InvalidSchedule`."""
    name = text.check_text(name, "time zone", error=InvalidSchedule, min_length=1, max_length=MAX_ZONE_LENGTH)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris'") from None


def describe(cron: str) -> str:
    """The cron expression in words (``"At 03:00"``), or the expression itself if cronsim cannot say."""
    try:
        return CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC)).explain()
    except Exception:  # a description is a nicety: never let it break a page
        return cron


def next_occurrence(cron: str, zone: str, after: datetime) -> datetime:
    """The first occurrence of ``cron`` read in ``zone`` strictly after ``after``, in UTC.

    DST (as Debian cron): a wall-clock time that does not exist on a spring-forward day (02:30 in
    Europe/Berlin) runs at the first minute that does (03:00); one that exists twice on a fall-back day
    runs once, at its first instance. Six-field and ``*``-hour expressions follow real elapsed time.
    """
    local = after.astimezone(ZoneInfo(zone))
    try:
        return next(CronSim(cron, local)).astimezone(UTC)
    except StopIteration:
        raise InvalidSchedule(f"cron expression {cron!r} has no occurrence after {after.isoformat()}") from None


def _latest_due(row: Schedule, now: datetime) -> tuple[datetime, int]:
    """The latest occurrence at or before ``now`` (from the due ``next_run_at`` on) and how many before it."""
    assert row.next_run_at is not None
    latest, skipped = row.next_run_at, 0
    for _ in range(1000):
        following = next_occurrence(row.cron, row.timezone, latest)
        if following > now:
            return latest, skipped
        latest, skipped = following, skipped + 1
    # Down for more than a thousand occurrences: find the latest by walking back from now.
    back = next(CronSim(row.cron, (now + timedelta(seconds=1)).astimezone(ZoneInfo(row.timezone)), reverse=True))
    return max(back.astimezone(UTC), latest), skipped


def dedup_id(name: str, occurrence: datetime) -> str:
    """The dedup id of one occurrence: ``schedule:<name>:<occurrence in UTC, ISO 8601>``."""
    return f"schedule:{name}:{occurrence.astimezone(UTC).isoformat()}"


# -- declaring ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    queue: str
    body: str
    headers: dict[str, str]
    task_path: str
    args: list[Any]
    kwargs: dict[str, Any]


def _check_target(
    queue: object,
    body: Any,
    headers: Any,
    task: object,
    args: Any,
    kwargs: Any,
    *,
    check_queue: bool,
) -> _Target:
    """What a schedule sends, checked: a queue and a body, or a task path (whose queue is the task's)."""
    if task is not None and task != "":
        if queue not in (None, ""):
            raise InvalidSchedule("give either a queue (and a body) or a task, not both: a task's queue is its own")
        path = task if isinstance(task, str) else getattr(task, "module_path", None)
        if not isinstance(path, str) or not path:
            raise InvalidSchedule(f"task must be a django.tasks task or its dotted path, got {task!r}")
        try:
            found = import_string(path)
        except ImportError as exc:
            raise InvalidSchedule(f"task {path!r} cannot be imported ({exc}): give the dotted path of a @task")
        if not hasattr(found, "enqueue") or not hasattr(found, "queue_name"):
            raise InvalidSchedule(f"{path!r} is not a django.tasks task: decorate the function with @task")
        args = list(args or ())
        kwargs = dict(kwargs or {})
        text.encode_json(args, "task arguments")
        text.encode_json(kwargs, "task keyword arguments")
        return _Target(queue=_task_queue(found), body="null", headers={}, task_path=path, args=args, kwargs=kwargs)
    if args or kwargs:
        raise InvalidSchedule("args and kwargs are for task schedules: a message schedule sends its body")
    if queue in (None, ""):
        raise InvalidSchedule("name the queue a schedule sends to (queue=...), or give a task")
    try:
        name = engine.validate_name(queue)
        if check_queue:
            engine.get_queue(name)
        encoded = encode_body(body)
        encode_headers(headers)
    except engine.QueueNotFound:
        raise InvalidSchedule(f"queue {queue!r} does not exist: create it first (mq_queue create {queue})") from None
    except ValueError as exc:
        raise InvalidSchedule(str(exc)) from None
    return _Target(queue=name, body=encoded, headers=dict(headers or {}), task_path="", args=[], kwargs={})


def _task_queue(task: Any) -> str:
    """The mqadmin queue a task goes to, for display ("" when its backend is not mqadmin's)."""
    try:
        backend = task.get_backend()
        return str(backend.queue_for(task.queue_name))
    except Exception:  # another backend, or a misconfigured one (its system check says so)
        return ""


def schedule(
    name: str,
    *,
    cron: str,
    queue: str | None = None,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    task: Any = None,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    timezone: str = "UTC",
    catch_up: bool = True,
    paused: bool | None = None,
    source: str = "api",
) -> Schedule:
    """Create the schedule ``name``, or update it (the occurrence clock restarts if cron or zone change).

    A message schedule sends ``body`` (and ``headers``) to ``queue``, which must exist; a task schedule
    enqueues ``task`` (a ``@task`` or its dotted path) with ``args``/``kwargs``. ``paused``: None keeps
    the current state (a new schedule is active). Raises :class:`InvalidSchedule` naming the bad value;
    nothing is written then.
    """
    name = check_name(name)
    cron = check_cron(cron)
    check_zone(timezone)
    if not isinstance(catch_up, bool):
        raise InvalidSchedule(f"catch_up must be True or False, got {catch_up!r}")
    if paused is not None and not isinstance(paused, bool):
        raise InvalidSchedule(f"paused must be True, False or None, got {paused!r}")
    if source not in SOURCES:
        raise InvalidSchedule(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    target = _check_target(queue, body, headers, task, args, kwargs, check_queue=True)
    fields = {
        "cron": cron,
        "timezone": timezone,
        "queue": target.queue,
        "body": target.body,
        "headers": target.headers,
        "task_path": target.task_path,
        "args": target.args,
        "kwargs": target.kwargs,
        "catch_up": catch_up,
        "source": source,
    }
    for attempt in range(2):
        try:
            with conf.atomic():
                row = Schedule.objects.select_for_update().filter(name=name).first()
                now = database_now()
                if row is None:
                    row = Schedule(name=name, paused=bool(paused), **fields)
                    row.next_run_at = next_occurrence(cron, timezone, now)
                    row.save()
                    return row
                clock_changed = (row.cron, row.timezone) != (cron, timezone)
                changed = [k for k, v in fields.items() if getattr(row, k) != v]
                for key in changed:
                    setattr(row, key, fields[key])
                if paused is not None and paused != row.paused:
                    row.paused = paused
                    changed.append("paused")
                    clock_changed = clock_changed or not paused
                if clock_changed or row.next_run_at is None:
                    row.next_run_at = next_occurrence(cron, timezone, now)
                    changed.append("next_run_at")
                if changed:
                    row.save(update_fields=[*changed, "updated_at"])
                return row
        except IntegrityError:
            if attempt:
                raise
            # Another process created it between our read and our insert: update that one.
    raise AssertionError("unreachable")


def get_schedule(name: str) -> Schedule:
    """The schedule ``name``; :class:`ScheduleNotFound` if there is none."""
    check_name(name)
    row = Schedule.objects.filter(name=name).first()
    if row is None:
        raise ScheduleNotFound(f"there is no schedule named {name!r} (list them with mq_schedule list)")
    return row


def queue_of(name: object) -> str:
    """The queue of the schedule ``name``, "" when there is none (or the name is malformed: never sent to SQL)."""
    try:
        check_name(name)
    except ValueError:
        return ""
    return Schedule.objects.filter(name=name).values_list("queue", flat=True).first() or ""


def list_schedules() -> list[Schedule]:
    """Every schedule, by name."""
    return list(Schedule.objects.order_by("name"))


def unschedule(name: str) -> bool:
    """Delete the schedule ``name``; False if there was none. Messages it sent stay."""
    check_name(name)
    deleted, _ = Schedule.objects.filter(name=name).delete()
    return bool(deleted)


def pause_schedule(name: str) -> Schedule:
    """Stop enqueueing occurrences of ``name`` until it is resumed."""
    with conf.atomic():
        row = _locked(name)
        if not row.paused:
            row.paused = True
            row.save(update_fields=["paused", "updated_at"])
    return row


def resume_schedule(name: str) -> Schedule:
    """Enqueue occurrences of ``name`` again, from the next one after now (paused time is not caught up)."""
    with conf.atomic():
        row = _locked(name)
        if row.paused:
            row.paused = False
            row.next_run_at = next_occurrence(row.cron, row.timezone, database_now())
            row.save(update_fields=["paused", "next_run_at", "updated_at"])
    return row


def run_now(name: str) -> int:
    """Enqueue ``name``'s message (or task) once now, paused or not; its regular occurrences are unchanged.

    Returns the message id. Recorded as its last run.
    """
    with conf.atomic():
        row = _locked(name)
        message_id = _send(row, None)
        row.last_run_at = database_now()
        row.last_message_id = message_id
        row.last_error = ""
        row.save(update_fields=["last_run_at", "last_message_id", "last_error", "updated_at"])
    return message_id


def _locked(name: str) -> Schedule:
    check_name(name)
    row = Schedule.objects.select_for_update().filter(name=name).first()
    if row is None:
        raise ScheduleNotFound(f"there is no schedule named {name!r} (list them with mq_schedule list)")
    return row


def database_now() -> datetime:
    """PostgreSQL's clock now: one clock for every scheduler, whatever the hosts' clocks say."""
    with conf.db().cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        return cur.fetchone()[0]


# -- running --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fired:
    """One occurrence a scheduler handled."""

    name: str
    occurrence: datetime
    message_id: int | None
    """None when it was skipped (late without ``catch_up``) or failed (``error``)."""
    skipped: int = 0
    """Older missed occurrences skipped by the catch-up policy."""
    error: str = ""


def _send(row: Schedule, occurrence: datetime | None) -> int:
    """Send ``row``'s message (or enqueue its task) in the caller's transaction; return the message id."""
    if row.task_path:
        task = import_string(row.task_path)
        result = task.enqueue(*row.args, **row.kwargs)
        message_id = TaskResultRow.objects.filter(id=result.id).values_list("message_id", flat=True).first()
        return int(message_id or 0)
    headers = {**row.headers, "schedule": row.name}
    if occurrence is not None:
        headers["schedule-occurrence"] = occurrence.astimezone(UTC).isoformat()
    return engine.send(
        row.queue,
        JSONText(row.body),
        headers=headers,
        dedup_id=None if occurrence is None else dedup_id(row.name, occurrence),
    )


def run_due(*, elect: bool = True, limit: int = 100) -> list[Fired]:
    """Enqueue every due occurrence of active schedules (at most ``limit`` schedules); return what was done.

    ``elect``: give up at once if another process's round holds the scheduler lock (every scheduler
    calls it so; ``False`` only to prove that the row locks alone keep occurrences single).
    """
    fired: list[Fired] = []
    with conf.atomic():
        if elect:
            with conf.db().cursor() as cur:
                cur.execute("SELECT pg_try_advisory_xact_lock(%s)", [LOCK_KEY])
                if not cur.fetchone()[0]:
                    return fired
        now = database_now()
        rows = list(
            Schedule.objects.select_for_update(skip_locked=True)
            .filter(paused=False, next_run_at__lte=now)
            .order_by("next_run_at")[:limit]
        )
        for row in rows:
            fired.append(_fire(row, now))
    for item in fired:
        if item.error:
            log.warning(
                "event=schedule_failed schedule=%s occurrence=%s error=%s",
                item.name,
                item.occurrence.isoformat(),
                item.error,
            )
        else:
            log.info(
                "event=schedule_fired schedule=%s occurrence=%s message=%s skipped=%d",
                item.name,
                item.occurrence.isoformat(),
                item.message_id,
                item.skipped,
            )
    return fired


def _fire(row: Schedule, now: datetime) -> Fired:
    """Handle ``row``'s due occurrence inside the round's transaction, its row locked."""
    try:
        occurrence, skipped = _latest_due(row, now)
        row.next_run_at = next_occurrence(row.cron, row.timezone, max(now, occurrence))
    except (InvalidSchedule, CronSimError, ZoneInfoNotFoundError, ValueError) as exc:
        # Edited to something unreadable behind our back (the admin, SQL): stop it rather than spin.
        row.paused, row.last_error = True, f"paused: {exc}"
        row.save(update_fields=["paused", "last_error", "updated_at"])
        return Fired(row.name, now, None, error=row.last_error)
    late = (now - occurrence).total_seconds()
    if not row.catch_up and late > LATE_AFTER:
        row.save(update_fields=["next_run_at", "updated_at"])
        return Fired(row.name, occurrence, None, skipped=skipped + 1)
    try:
        # A savepoint: a send that fails (its queue deleted, a task that no longer imports) rolls back
        # alone; the occurrence is recorded as failed and the clock still moves on.
        with conf.atomic():
            message_id = _send(row, occurrence)
    except (MQError, ValueError, LookupError, ImportError, TypeError) as exc:
        row.last_error = f"{occurrence.isoformat()}: {type(exc).__name__}: {exc}"[:2000]
        row.save(update_fields=["next_run_at", "last_error", "updated_at"])
        return Fired(row.name, occurrence, None, skipped=skipped, error=row.last_error)
    row.last_run_at, row.last_message_id, row.last_error = occurrence, message_id, ""
    row.save(update_fields=["next_run_at", "last_run_at", "last_message_id", "last_error", "updated_at"])
    return Fired(row.name, occurrence, message_id, skipped=skipped)


# -- declared schedules (settings and @periodic) ---------------------------------------------------
DECLARED: dict[str, dict[str, Any]] = {}
"""Schedules declared in code by ``@periodic`` (name -> spec), synced by :func:`sync_declared`."""


def declare(name: str, spec: Mapping[str, Any]) -> None:
    """Record a schedule declared in code (``@periodic``); checked now, written by the next sync."""
    check_name(name)
    check_spec(name, spec)
    DECLARED[name] = dict(spec)


def check_spec(name: str, spec: object) -> None:
    """Refuse a malformed ``MQADMIN["SCHEDULES"]`` entry (or ``@periodic`` spec) with :class:`InvalidSchedule`.

    Checks everything but whether the queue exists (a system check runs before migrations).
    """
    if not isinstance(spec, Mapping):
        raise InvalidSchedule(
            f"schedule {name!r} must be a dict such as {{'cron': '0 3 * * *', 'queue': 'reports'}}, got {spec!r}"
        )
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise InvalidSchedule(f"schedule {name!r} has unknown keys {sorted(unknown)}; known: {sorted(SPEC_KEYS)}")
    if "cron" not in spec:
        raise InvalidSchedule(f"schedule {name!r} needs a 'cron' expression, e.g. '0 3 * * *'")
    check_cron(spec["cron"])
    check_zone(spec.get("timezone", "UTC"))
    if not isinstance(spec.get("catch_up", True), bool):
        raise InvalidSchedule(f"schedule {name!r}: catch_up must be True or False, got {spec['catch_up']!r}")
    _check_target(
        spec.get("queue"),
        spec.get("body"),
        spec.get("headers"),
        spec.get("task"),
        spec.get("args"),
        spec.get("kwargs"),
        check_queue=False,
    )


def _declared_kwargs(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "cron": spec["cron"],
        "queue": spec.get("queue"),
        "body": spec.get("body"),
        "headers": spec.get("headers"),
        "task": spec.get("task"),
        "args": spec.get("args"),
        "kwargs": spec.get("kwargs"),
        "timezone": spec.get("timezone", "UTC"),
        "catch_up": spec.get("catch_up", True),
    }


def sync_declared() -> dict[str, int]:
    """Write ``MQADMIN["SCHEDULES"]`` and this process's ``@periodic`` schedules to the database.

    Pause state and the occurrence clock are kept unless cron or zone changed. A settings schedule no
    longer in the setting is deleted; ``@periodic`` ones never are (a process that did not import the
    task's module cannot tell): remove those with ``mq_schedule remove``. One that fails (its queue
    does not exist yet) is logged and the others are still written.
    """
    counts = {"synced": 0, "removed": 0, "failed": 0}
    declared = {name: ("settings", spec) for name, spec in (conf.get("SCHEDULES") or {}).items()}
    declared.update({name: ("code", spec) for name, spec in DECLARED.items() if name not in declared})
    for name, (source, spec) in declared.items():
        try:
            schedule(name, source=source, **_declared_kwargs(spec))
            counts["synced"] += 1
        except (MQError, ValueError, DatabaseError) as exc:
            counts["failed"] += 1
            log.error("event=schedule_sync_failed schedule=%s source=%s error=%s", name, source, exc)
    stale = Schedule.objects.filter(source="settings").exclude(name__in=list(declared))
    counts["removed"], _ = stale.delete()
    return counts


# -- the scheduler thread ---------------------------------------------------------------------------
def run_scheduler(stop: threading.Event, *, interval: float | None = None) -> None:
    """Sync the declared schedules, then :func:`run_due` every ``interval`` seconds (``SCHEDULER_INTERVAL``)
    until ``stop`` is set. For a thread of its own: it uses (and finally closes) that thread's connection."""
    every = float(conf.get("SCHEDULER_INTERVAL") if interval is None else interval)
    # A database that cannot be reached is logged when it goes and when it comes back, not every round
    # (one line a second for as long as it is down, in every web process and worker, before).
    outage = Outage("scheduler", logger=log)
    synced = False
    try:
        while not stop.is_set():
            close_old_connections()
            pause = every
            try:
                if not synced:
                    sync_declared()
                    synced = True
                run_due()
                outage.ok()
            except DatabaseError as exc:
                pause = max(every, outage.failed(exc))
                conf.db().close()
            except Exception:
                log.exception("event=scheduler_error note=unexpected; retrying next round")
            stop.wait(pause)
    finally:
        conf.db().close()


def start_scheduler(stop: threading.Event, *, name: str = "mq-schedules") -> threading.Thread | None:
    """Start :func:`run_scheduler` in a daemon thread; None when ``SCHEDULER_INTERVAL`` is 0 (disabled)."""
    if not float(conf.get("SCHEDULER_INTERVAL")):
        return None
    thread = threading.Thread(target=run_scheduler, args=(stop,), name=name, daemon=True)
    thread.start()
    return thread


__all__ = [
    "DECLARED",
    "LATE_AFTER",
    "LOCK_KEY",
    "SOURCES",
    "SPEC_KEYS",
    "Fired",
    "InvalidSchedule",
    "ScheduleNotFound",
    "check_cron",
    "check_name",
    "check_spec",
    "check_zone",
    "database_now",
    "declare",
    "dedup_id",
    "describe",
    "get_schedule",
    "list_schedules",
    "next_occurrence",
    "pause_schedule",
    "queue_of",
    "resume_schedule",
    "run_due",
    "run_now",
    "run_scheduler",
    "schedule",
    "start_scheduler",
    "sync_declared",
    "unschedule",
]
