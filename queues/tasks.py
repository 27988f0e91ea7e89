"""A ``django.tasks`` backend that runs ``@task`` functions on mqadmin workers.

Configure it in ``settings.TASKS``::

    TASKS = {
        "default": {
            "BACKEND": "queues.tasks.QueuesBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"QUEUE_PREFIX": "tasks.", "BACKOFF": 2.0},
        }
    }

and run ``python manage.py mq_worker tasks.default tasks.emails``.

How it fits together:

- ``enqueue`` writes a ``queues.models.TaskResult`` row (the task's path, arguments and state) and
  sends ``{"task_result_id": ...}`` to the mqadmin queue ``<QUEUE_PREFIX><queue_name>``, both in one
  transaction that joins the caller's: a task enqueued in a rolled-back transaction never existed.
  ``priority`` becomes the message priority (same -100..100 range), ``run_after`` its delay.
- ``queues/handlers.py`` (found by the handler registry's autodiscovery) registers
  :func:`run_task_message` as the handler of every task queue of every ``QueuesBackend``.
- :func:`run_task_message` marks the result RUNNING (committed before the task runs, so it can be
  seen), calls the function and stores SUCCESSFUL with the return value, or records the error and
  raises so the worker nacks it with backoff (READY again), until the queue's max receives are used
  up: then the result is FAILED for good and the message goes to the dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError
from django.tasks import DEFAULT_TASK_QUEUE_NAME, Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from queues import conf
from queues.worker.errors import Reject

logger = logging.getLogger("queues.tasks")

# Documented in docs/tasks.md; queues/checks.py reports unknown keys and bad values.
OPTION_DEFAULTS: dict[str, Any] = {
    # Prepended to a task's queue_name to name its mqadmin queue ("default" -> "tasks.default"),
    # so task queues never collide with hand-written handlers' queues and stand out on the dashboard.
    "QUEUE_PREFIX": "tasks.",
    # Create a missing mqadmin queue (with QUEUE_SETTINGS) on the first enqueue instead of failing.
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

# A message's delay is capped by the engine (queues.engine.validation.MAX_DELAY): 15 days.
MAX_DEFER_SECONDS = 15 * 24 * 3600.0

FINAL_STATUSES = frozenset({TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED})


class InvalidTaskArguments(InvalidTask, TypeError):
    """A task's arguments (or return value) cannot be stored as JSON.

    A ``TypeError`` as Django's own backends raise for such arguments, and an ``InvalidTask``.
    """


def _json_value(value: Any, what: str) -> Any:
    """``value`` normalised the way ``django.tasks`` does (tuples to lists), checked to fit in JSONB."""
    try:
        normalised = normalize_json(value)
        json.dumps(normalised, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidTaskArguments(
            f"{what} {value!r} cannot be stored as JSON ({exc}): use dicts, lists, strings, numbers "
            "(not NaN or infinity), booleans or None; pass ids instead of model instances and ISO "
            "strings instead of dates"
        ) from None
    return normalised


def _rebuilt(task: Task, **changes: Any) -> Task:
    """A copy of ``task`` with ``changes``, without re-validating it against the current settings.

    ``Task.using()`` validates, and a stored result must stay readable after its queue left QUEUES.
    """
    copy = object.__new__(type(task))
    for f in fields(task):
        object.__setattr__(copy, f.name, changes.get(f.name, getattr(task, f.name)))
    return copy


def _load_task(path: str) -> Task:
    try:
        found = import_string(path)
    except ImportError as exc:
        raise InvalidTask(f"task {path!r} cannot be imported ({exc}): is the worker running the same code?") from None
    if not isinstance(found, Task):
        raise InvalidTask(f"{path!r} is not a task: decorate the function with @django.tasks.task")
    return found


def _to_task_result(row: Any) -> TaskResult:
    """The ``django.tasks.TaskResult`` of a ``queues.models.TaskResult`` row."""
    task = _rebuilt(
        _load_task(row.task_path),
        priority=row.priority, queue_name=row.queue_name, run_after=row.run_after, backend=row.backend,
    )
    result = TaskResult(
        task=task,
        id=str(row.id),
        status=TaskResultStatus(row.status),
        enqueued_at=row.enqueued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.last_attempted_at,
        args=row.args,
        kwargs=row.kwargs,
        backend=row.backend,
        errors=[TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"])
                for e in row.errors],
        worker_ids=list(row.worker_ids),
    )
    object.__setattr__(result, "_return_value", row.return_value)
    return result


class QueuesBackend(BaseTaskBackend):
    """Runs ``django.tasks`` tasks on mqadmin queues and workers, with results in PostgreSQL."""

    supports_defer = True
    """``run_after`` becomes the message's delay (at most 15 days ahead)."""

    supports_async_task = True
    """``async def`` tasks run in the worker through ``async_to_sync``."""

    supports_get_result = True
    """Results live in ``queues.models.TaskResult``, readable from any process."""

    supports_priority = True
    """A task's priority is its message's priority: -100..100, larger first."""

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        # Lenient on purpose: Django's check framework instantiates every backend to run check(),
        # which reports bad settings with a fix instead of a traceback at import time.
        self.raw_queues = params.get("QUEUES", [DEFAULT_TASK_QUEUE_NAME])
        names = self.raw_queues if isinstance(self.raw_queues, (list, tuple)) else []
        super().__init__(alias, {**params, "QUEUES": [q for q in names if isinstance(q, str)]})
        options = self.options if isinstance(self.options, Mapping) else {}
        self.settings: dict[str, Any] = {**OPTION_DEFAULTS, **options}

    # -- names --------------------------------------------------------------------------------------
    def queue_for(self, queue_name: str) -> str:
        """The mqadmin queue that carries tasks of ``queue_name`` (``InvalidTask`` if it is not valid)."""
        from queues.engine.errors import InvalidQueueName
        from queues.engine.validation import validate_name

        prefix = self.settings["QUEUE_PREFIX"]
        if not isinstance(prefix, str):
            raise InvalidTask(f"TASKS[{self.alias!r}]['OPTIONS']['QUEUE_PREFIX'] must be a string, got {prefix!r}")
        name = f"{prefix}{queue_name}"
        try:
            return validate_name(name)
        except InvalidQueueName:
            raise InvalidTask(
                f"queue_name {queue_name!r} gives the mqadmin queue name {name!r}, which is not valid: "
                "queue names are 1-80 characters of a-z, 0-9, '.', '_' or '-' (lowercase), starting with "
                "a letter or digit"
            ) from None

    def mq_queues(self) -> list[str]:
        """The mqadmin queues of this backend's QUEUES, sorted; invalid names are left out."""
        out = set()
        for queue_name in self.queues:
            try:
                out.add(self.queue_for(queue_name))
            except (InvalidTask, TypeError):
                continue
        return sorted(out)

    def handler_options(self) -> dict[str, Any]:
        """Keyword arguments for ``queues.worker.registry.register`` of this backend's task queues."""
        return {
            "backoff": self.settings["BACKOFF"],
            "max_backoff": self.settings["MAX_BACKOFF"],
            "timeout": self.settings["TIMEOUT"],
            "atomic": False,  # RUNNING must commit before the task runs, or nobody could see it
        }

    # -- enqueue ------------------------------------------------------------------------------------
    def validate_task(self, task: Task) -> None:
        """Django's checks, plus: the queue maps to a valid mqadmin name, ``run_after`` within 15 days."""
        super().validate_task(task)
        if not self.queues:
            raise InvalidTask(
                f"TASKS[{self.alias!r}]['QUEUES'] is empty: list the queue names tasks may use, so workers "
                "know which mqadmin queues to serve"
            )
        self.queue_for(task.queue_name)
        if task.run_after is not None and _seconds_until(task.run_after) > MAX_DEFER_SECONDS:
            raise InvalidTask(
                f"run_after {task.run_after.isoformat()} is more than 15 days ahead: mqadmin delays "
                "messages by at most 15 days; enqueue later (or from a periodic task)"
            )

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Store the task's result row and send its message, in one transaction; return the result."""
        from queues.models import TaskResult as TaskResultRow

        self.validate_task(task)
        args = _json_value(list(args), "task arguments")
        kwargs = _json_value(dict(kwargs), "task keyword arguments")
        queue = self.queue_for(task.queue_name)
        delay = None
        if task.run_after is not None:
            delay = max(0.0, _seconds_until(task.run_after))
        result_id = uuid.uuid4()
        with conf.atomic():
            message_id = self._send(queue, {"task_result_id": str(result_id)}, delay, int(task.priority))
            row = TaskResultRow.objects.create(
                id=result_id,
                backend=self.alias,
                task_path=task.module_path,
                queue_name=task.queue_name,
                message_id=message_id,
                status=TaskResultStatus.READY,
                priority=int(task.priority),
                args=args,
                kwargs=kwargs,
                run_after=task.run_after,
                enqueued_at=timezone.now(),
            )
        result = TaskResult(
            task=task,
            id=str(row.id),
            status=TaskResultStatus.READY,
            enqueued_at=row.enqueued_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def _send(self, queue: str, body: dict[str, Any], delay: float | None, priority: int) -> int:
        import queues
        from queues.engine.errors import QueueNotFound

        try:
            return queues.send(queue, body, delay=delay, priority=priority)
        except QueueNotFound:
            if self.settings["CREATE_QUEUES"] is not True:
                raise
        queue_settings = dict(self.settings["QUEUE_SETTINGS"] or {})
        try:
            with conf.atomic():
                queues.ensure_queue(queue, **queue_settings)
        except IntegrityError:
            # Another process created it (or its dead-letter queue) at the same moment.
            queues.ensure_queue(queue, **queue_settings)
        logger.info("created task queue %s for backend %s", queue, self.alias)
        return queues.send(queue, body, delay=delay, priority=priority)

    # -- results ------------------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult:
        """The result ``result_id`` as stored now; ``TaskResultDoesNotExist`` if there is none."""
        from queues.models import TaskResult as TaskResultRow

        try:
            pk = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        row = TaskResultRow.objects.filter(pk=pk, backend=self.alias).first()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        if row.status not in FINAL_STATUSES:
            row = _reconcile(row)
        return _to_task_result(row)

    def check(self, **kwargs: Any) -> list[Any]:
        """System checks of this backend's settings (see ``queues/checks.py``)."""
        from queues.checks import check_tasks_backend

        return check_tasks_backend(self)


class TaskLost(Exception):
    """The task's message left its queue without the task finishing: it can never run again.

    Recorded (as the last error of a FAILED result) when a worker died during the last attempt, so
    the engine dead-lettered the message without a handler, or the message was purged, deleted or
    expired by retention.
    """


def _reconcile(row: Any) -> Any:
    """``row``, made FAILED with a :class:`TaskLost` error if its message is dead or gone for good.

    Only a result that is not finished is looked at, and the executor stores the final state
    before the worker acks or nacks, so a message gone or dead under an unfinished result means no
    worker will ever finish it. The conditional update in ``_locked_update`` loses to any executor
    that finished meanwhile.
    """
    from queues.models import Message

    if row.message_id is None:
        return row
    found = Message.objects.filter(pk=row.message_id).values_list("dead_at", "queue__name").first()
    if found is not None and found[0] is None:
        return row
    if found is None:
        why = "its message was purged, deleted or expired by the queue's retention before the task finished"
    else:
        why = (f"its message was dead-lettered to {found[1]!r} without the task finishing: the worker of "
               "its last attempt stopped (killed, timed out, or its lease ran out) before recording an outcome")
    lost = TaskLost(f"task {row.task_path} ({row.id}) cannot run again: {why}")

    def fail(r: Any) -> None:
        r.status = TaskResultStatus.FAILED
        r.finished_at = timezone.now()
        r.errors = [*r.errors, {"exception_class_path": "queues.tasks.TaskLost",
                                "traceback": "".join(traceback.format_exception_only(lost))}]

    updated = _locked_update(row.pk, fail)
    if updated is None:
        return type(row).objects.get(pk=row.pk)
    logger.error("%s", lost)
    try:
        finished = _to_task_result(updated)
    except InvalidTask:
        return updated
    _notify(task_finished, _sender(updated.backend), finished)
    return updated


def _seconds_until(moment: datetime) -> float:
    now = datetime.now(UTC) if timezone.is_aware(moment) else datetime.now()
    return (moment - now).total_seconds()


# -- workers ----------------------------------------------------------------------------------------
def queues_backends() -> Iterator[QueuesBackend]:
    """Every backend of ``settings.TASKS`` that is a :class:`QueuesBackend`."""
    from django.tasks import task_backends

    for alias in task_backends.settings:
        try:
            backend = task_backends[alias]
        except InvalidTaskBackend as exc:
            # Another backend's broken BACKEND must not stop task queues from being served;
            # Django's own check reports it.
            logger.warning("skipping TASKS[%r]: %s", alias, exc)
            continue
        if isinstance(backend, QueuesBackend):
            yield backend


def task_queues() -> list[str]:
    """Every mqadmin queue that carries tasks, sorted: what a worker for all tasks should serve."""
    return sorted({q for backend in queues_backends() for q in backend.mq_queues()})


def prune_results(*, batch: int = 5000) -> int:
    """Delete finished results older than their backend's ``RESULT_RETENTION``; return how many went.

    Works in batches of ``batch`` so it never holds long locks. Results that are READY or RUNNING are
    never touched, nor are those of a backend no longer in ``settings.TASKS`` (nobody set their
    retention). Workers call it when they prune; so does ``mq_prune``.
    """
    from datetime import timedelta

    from queues.models import TaskResult as TaskResultRow

    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    removed = 0
    for backend in queues_backends():
        retention = backend.settings["RESULT_RETENTION"]
        if retention is None:
            continue
        cutoff = timezone.now() - timedelta(seconds=float(retention))
        expired = TaskResultRow.objects.filter(
            backend=backend.alias, status__in=[s.value for s in FINAL_STATUSES], finished_at__lt=cutoff
        )
        while True:
            ids = list(expired.values_list("id", flat=True)[:batch])
            if not ids:
                break
            removed += TaskResultRow.objects.filter(id__in=ids).delete()[0]
            if len(ids) < batch:
                break
    return removed


def register_handlers() -> list[Any]:
    """Register :func:`run_task_message` for every task queue of every ``QueuesBackend``; return the specs.

    ``queues/handlers.py`` calls this when the worker autodiscovers handlers.
    """
    from queues.worker import registry

    specs = []
    for backend in queues_backends():
        for queue in backend.mq_queues():
            specs.append(registry.register(queue, run_task_message, **backend.handler_options()))
    return specs


_worker_names: dict[int, str] = {}


def worker_id() -> str:
    """This process's name in ``TaskResult.worker_ids``.

    Inside ``mq_worker`` it is the worker's own name (``host:pid:random``, as on the dashboard's
    worker list), found once by its heartbeat row; elsewhere (tests, a script) ``host:pid``.
    """
    pid = os.getpid()
    name = _worker_names.get(pid)
    if name is not None:
        return name
    from queues.models import Worker

    host = socket.gethostname()
    found = (
        Worker.objects.filter(host=host[:255], pid=pid, state="live")
        .order_by("-started_at").values_list("name", flat=True).first()
    )
    if found is None:
        return f"{host}:{pid}"
    _worker_names[pid] = found
    return found


def _error(exc: BaseException) -> dict[str, str]:
    kind = type(exc)
    return {
        "exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


_STATE_FIELDS = [
    "status", "started_at", "last_attempted_at", "finished_at", "attempts", "worker_ids", "errors", "return_value",
]


def _locked_update(result_id: Any, change: Callable[[Any], None]) -> Any:
    """Apply ``change`` to the result row under a row lock and save it; None if the row is final or gone.

    The lock serialises two deliveries of one message (a lease that ran out mid-task): the first
    to finish wins, and nothing ever moves a result out of SUCCESSFUL or FAILED.
    """
    from queues.models import TaskResult as TaskResultRow

    with conf.atomic():
        row = TaskResultRow.objects.select_for_update().filter(pk=result_id).first()
        if row is None or row.status in FINAL_STATUSES:
            return None
        change(row)
        row.save(update_fields=_STATE_FIELDS)  # never rewrites the arguments
    return row


def _is_last_attempt(queue: str, receive_count: int) -> bool:
    """Whether a nack of this delivery dead-letters it (the engine's rule, see sql.NACK)."""
    from queues.models import Queue

    found = Queue.objects.filter(name=queue).values_list("max_receives", "dead_letter_queue_id").first()
    if found is None:
        return True
    max_receives, dlq_id = found
    return max_receives > 0 and dlq_id is not None and receive_count >= max_receives


def _result_id(body: Any) -> uuid.UUID:
    value = body.get("task_result_id") if isinstance(body, Mapping) else None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        # It can never succeed: dead-letter it at once rather than retry it.
        raise Reject(
            f"message body {body!r} is not a task message: expected {{'task_result_id': '<uuid>'}} "
            "(only queues.tasks should send to task queues)"
        ) from None


def run_task_message(delivery: Any) -> None:
    """Run the task of one delivery from a task queue: the handler that workers call.

    Returns normally when the task succeeded or was finished before, so the worker acks; raises the
    task's exception while attempts remain (READY again, the worker nacks with backoff) and on the
    last one (FAILED, the message dead-letters); raises :class:`Reject` (dead-letter at once) for a
    body that is no task message and for a return value that is not JSON (FAILED).
    """
    result_id = _result_id(delivery.body)
    last = _is_last_attempt(delivery.queue, delivery.receive_count)
    me = worker_id()

    def start(r: Any) -> None:
        now = timezone.now()
        r.status = TaskResultStatus.RUNNING
        r.started_at = r.started_at or now
        r.last_attempted_at = now
        r.attempts += 1
        r.worker_ids = [*r.worker_ids, me]

    row = _locked_update(result_id, start)
    if row is None:
        # Redelivered after it finished (a redrive, or a crash between finishing and acking), or
        # its result row was deleted: nothing to run, and the worker acks the message.
        logger.info("task %s (message %s) is finished or gone; not running it", result_id, delivery.id)
        return
    sender = _sender(row.backend)
    try:
        result = _to_task_result(row)
    except InvalidTask as exc:
        # The code is not there (yet): retry like any failure, so a rolling deploy can catch up.
        _record_failure(result_id, exc, last=last, sender=sender)
        raise
    _notify(task_started, sender, result)

    try:
        task = result.task
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
        else:
            value = task.call(*result.args, **result.kwargs)
    except Exception as exc:
        _record_failure(result_id, exc, last=last, sender=sender)
        raise
    except BaseException:
        # The worker is being stopped (or the task called sys.exit): the attempt did not finish,
        # so the task is READY for its redelivery, with no error to record.
        _locked_update(result_id, lambda r: setattr(r, "status", TaskResultStatus.READY))
        raise

    try:
        stored = _json_value(value, "the task's return value")
    except InvalidTaskArguments as exc:
        # Running it again would repeat its side effects and fail the same way: fail for good now,
        # and dead-letter the message at once like every other failed task's.
        _record_failure(result_id, exc, last=True, sender=sender)
        raise Reject(str(exc)) from exc

    def succeed(r: Any) -> None:
        r.status = TaskResultStatus.SUCCESSFUL
        r.finished_at = timezone.now()
        r.return_value = stored

    row = _locked_update(result_id, succeed)
    if row is not None:
        _notify(task_finished, sender, _to_task_result(row))


def _record_failure(result_id: Any, exc: BaseException, *, last: bool, sender: type) -> None:
    """Store the error; FAILED and ``task_finished`` on the last attempt, else READY for the retry."""
    error = _error(exc)

    def fail(r: Any) -> None:
        r.errors = [*r.errors, error]
        if last:
            r.status = TaskResultStatus.FAILED
            r.finished_at = timezone.now()
        else:
            r.status = TaskResultStatus.READY

    row = _locked_update(result_id, fail)
    if row is None:
        return
    if not last:
        logger.warning(
            "task %s failed (attempt %s), will retry: %s", result_id, row.attempts, error["exception_class_path"]
        )
        return
    try:
        finished = _to_task_result(row)
    except InvalidTask:
        logger.error("task %s failed for good and its code cannot be imported: %s", result_id, exc)
        return
    # Sent inside the caller's except block, so receivers (Django's logger) see the exception.
    _notify(task_finished, sender, finished)


def _notify(signal: Any, sender: type, result: TaskResult) -> None:
    """Send a task signal from the worker; a receiver that raises is logged, never the task's failure.

    The outcome is stored before the signal: a broken metrics receiver must not make a finished
    task run again.
    """
    for receiver, response in signal.send_robust(sender, task_result=result):
        if isinstance(response, Exception):
            logger.error("receiver %r of a task signal raised for task %s", receiver, result.id, exc_info=response)


def _sender(alias: str) -> type:
    from django.tasks import task_backends

    try:
        return type(task_backends[alias])
    except InvalidTaskBackend:
        return QueuesBackend

