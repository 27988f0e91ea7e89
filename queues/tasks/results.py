"""Task results: the ``queues.models.TaskResult`` rows behind ``django.tasks`` results, and their transitions.

A result moves only through the named transitions below, each one conditional update under a row
lock (:func:`_locked_update`): READY → :func:`start` → RUNNING → :func:`succeed` (SUCCESSFUL),
:func:`fail` (FAILED), :func:`retry` (READY, the error kept) or :func:`release` (READY, the attempt
interrupted); :func:`lose` makes an unfinished result FAILED when its message is gone for good.
Nothing moves a result out of SUCCESSFUL or FAILED.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_finished
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from queues import conf

logger = logging.getLogger("queues.tasks")

FINAL_STATUSES = frozenset({TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED})
"""A result in one of these never changes again."""


class InvalidTaskArguments(InvalidTask, TypeError):
    """A task's arguments (or return value) cannot be stored as JSON.

    A ``TypeError`` as Django's own backends raise for such arguments, and an ``InvalidTask``.
    """

    # Its documented path, stored in results' errors as the exception class path.
    __module__ = "queues.tasks"


class TaskLost(Exception):
    """The task's message left its queue without the task finishing: it can never run again.

    Recorded (as the last error of a FAILED result) when a worker died during the last attempt, so
    the engine dead-lettered the message without a handler, or the message was purged, deleted or
    expired by retention or time to live, or cancelled while waiting.
    """

    # Its documented path, stored in results' errors as the exception class path.
    __module__ = "queues.tasks"


def json_value(value: Any, what: str) -> Any:
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


def error_entry(exc: BaseException) -> dict[str, str]:
    """How ``exc`` is stored in a result's ``errors`` (the fields of ``django.tasks.base.TaskError``)."""
    kind = type(exc)
    return {
        "exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _rows() -> Any:
    # deferred: settings load the backend by path, possibly before the app registry is ready
    from queues.models import TaskResult as TaskResultRow

    return TaskResultRow


# -- reading --------------------------------------------------------------------------------------
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


def to_task_result(row: Any) -> TaskResult:
    """The ``django.tasks.TaskResult`` of a ``queues.models.TaskResult`` row (``InvalidTask`` if its code is gone)."""
    task = _rebuilt(
        _load_task(row.task_path),
        priority=row.priority,
        queue_name=row.queue_name,
        run_after=row.run_after,
        backend=row.backend,
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
        errors=[
            TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"]) for e in row.errors
        ],
        worker_ids=list(row.worker_ids),
    )
    object.__setattr__(result, "_return_value", row.return_value)
    return result


def create(*, result_id: uuid.UUID, alias: str, task: Task, message_id: int, args: Any, kwargs: Any) -> Any:
    """Store the READY row of a task just sent as message ``message_id`` (in the caller's transaction)."""
    return _rows().objects.create(
        id=result_id,
        backend=alias,
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


def find(result_id: str, alias: str) -> Any:
    """The row of ``result_id`` stored by backend ``alias``, or None (also for an id that is no UUID)."""
    try:
        pk = uuid.UUID(str(result_id))
    except ValueError:
        return None
    return _rows().objects.filter(pk=pk, backend=alias).first()


# -- transitions ------------------------------------------------------------------------------------
_STATE_FIELDS = [
    "status",
    "started_at",
    "last_attempted_at",
    "finished_at",
    "attempts",
    "worker_ids",
    "errors",
    "return_value",
]


def _locked_update(result_id: Any, change: Callable[[Any], None]) -> Any:
    """Apply ``change`` to the result row under a row lock and save it; None if the row is final or gone.

    The lock serialises two deliveries of one message (a lease that ran out mid-task): the first
    to finish wins, and nothing ever moves a result out of SUCCESSFUL or FAILED.
    """
    with conf.atomic():
        row = _rows().objects.select_for_update().filter(pk=result_id).first()
        if row is None or row.status in FINAL_STATUSES:
            return None
        change(row)
        row.save(update_fields=_STATE_FIELDS)  # never rewrites the arguments
    return row


def _start(worker: str, row: Any) -> None:
    now = timezone.now()
    row.status = TaskResultStatus.RUNNING
    row.started_at = row.started_at or now
    row.last_attempted_at = now
    row.attempts += 1
    row.worker_ids = [*row.worker_ids, worker]


def start(result_id: Any, *, worker: str) -> Any:
    """RUNNING, one more attempt by ``worker``; the row, or None if it is finished or gone (nothing to run)."""
    return _locked_update(result_id, lambda row: _start(worker, row))


def _finish(row: Any, status: TaskResultStatus, **values: Any) -> None:
    row.status = status
    row.finished_at = timezone.now()
    for name, value in values.items():
        setattr(row, name, value)


def succeed(result_id: Any, *, return_value: Any) -> Any:
    """SUCCESSFUL with ``return_value`` (already :func:`json_value`); the row, or None if it was final."""
    return _locked_update(result_id, lambda row: _finish(row, TaskResultStatus.SUCCESSFUL, return_value=return_value))


def fail(result_id: Any, *, error: dict[str, str]) -> Any:
    """FAILED for good with ``error`` (an :func:`error_entry`) added; the row, or None if it was final."""
    return _locked_update(result_id, lambda row: _finish(row, TaskResultStatus.FAILED, errors=[*row.errors, error]))


def _retry(error: dict[str, str], row: Any) -> None:
    row.status = TaskResultStatus.READY
    row.errors = [*row.errors, error]


def retry(result_id: Any, *, error: dict[str, str]) -> Any:
    """READY again with ``error`` added, for the redelivery after the backoff; the row, or None."""
    return _locked_update(result_id, lambda row: _retry(error, row))


def release(result_id: Any) -> Any:
    """READY again without an error: the attempt was interrupted (the worker is stopping), not failed."""
    return _locked_update(result_id, lambda row: setattr(row, "status", TaskResultStatus.READY))


def lose(result_id: Any, *, lost: TaskLost) -> Any:
    """FAILED with a :class:`TaskLost` error: its message is gone; the row, or None if it finished meanwhile."""
    error = {
        "exception_class_path": f"{TaskLost.__module__}.{TaskLost.__qualname__}",
        "traceback": "".join(traceback.format_exception_only(lost)),
    }
    return _locked_update(result_id, lambda row: _finish(row, TaskResultStatus.FAILED, errors=[*row.errors, error]))


def reconcile(row: Any, *, sender: type) -> Any:
    """``row``, made FAILED (:func:`lose`) if its message is dead or gone for good; ``task_finished`` then.

    Only a result that is not finished is looked at, and the executor stores the final state
    before the worker acks or nacks, so a message gone or dead under an unfinished result means no
    worker will ever finish it. The conditional update loses to any executor that finished meanwhile.
    """
    # deferred: settings load the backend by path, possibly before the app registry is ready
    from queues.models import Message

    if row.message_id is None:
        return row
    found = Message.objects.filter(pk=row.message_id).values_list("dead_at", "queue__name").first()
    if found is not None and found[0] is None:
        return row
    if found is None:
        why = ("its message was purged, deleted, cancelled by an operator, or expired (retention or time to "
               "live) before the task finished")
    else:
        why = (
            f"its message was dead-lettered to {found[1]!r} without the task finishing: the worker of "
            "its last attempt stopped (killed, timed out, or its lease ran out) before recording an outcome"
        )
    lost = TaskLost(f"task {row.task_path} ({row.id}) cannot run again: {why}")
    updated = lose(row.pk, lost=lost)
    if updated is None:
        return type(row).objects.get(pk=row.pk)
    logger.error("%s", lost)
    try:
        finished = to_task_result(updated)
    except InvalidTask:
        return updated
    notify(task_finished, sender, finished)
    return updated


def notify(signal: Any, sender: type, result: TaskResult) -> None:
    """Send a task signal from the worker; a receiver that raises is logged, never the task's failure.

    The outcome is stored before the signal: a broken metrics receiver must not make a finished
    task run again.
    """
    for receiver, response in signal.send_robust(sender, task_result=result):
        if isinstance(response, Exception):
            logger.error("receiver %r of a task signal raised for task %s", receiver, result.id, exc_info=response)


def prune(*, alias: str, older_than: datetime, batch: int) -> int:
    """Delete backend ``alias``'s finished results that finished before ``older_than``, ``batch`` at a time."""
    rows = _rows()
    expired = rows.objects.filter(
        backend=alias, status__in=[s.value for s in FINAL_STATUSES], finished_at__lt=older_than
    )
    removed = 0
    while True:
        ids = list(expired.values_list("id", flat=True)[:batch])
        if not ids:
            return removed
        removed += rows.objects.filter(id__in=ids).delete()[0]
        if len(ids) < batch:
            return removed
