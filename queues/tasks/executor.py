"""Running a task message in the worker: the handler of every task queue.

``queues/handlers.py`` (found by the handler registry's autodiscovery) calls :func:`register_handlers`,
which registers :func:`run_task_message` for every task queue of every ``QueuesBackend``. It marks the
result RUNNING (committed before the task runs, so it can be seen), calls the function and stores
SUCCESSFUL with the return value, or records the error and raises so the worker nacks it with backoff
(READY again), until the queue's max receives are used up: then the result is FAILED for good and the
message goes to the dead-letter queue.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from django.tasks import TaskContext
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_finished, task_started

from queues.engine.errors import Cancelled
from queues.engine.types import Delivery
from queues.tasks import results
from queues.tasks.backend import queues_backends, signal_sender
from queues.worker import registry
from queues.worker.errors import Reject
from queues.worker.registry import HandlerSpec

logger = logging.getLogger("queues.tasks")


def register_handlers() -> list[HandlerSpec]:
    """Register :func:`run_task_message` for every task queue of every ``QueuesBackend``; return the specs.

    ``queues/handlers.py`` calls this when the worker autodiscovers handlers.
    """
    specs = []
    for backend in queues_backends():
        creates = backend.settings["CREATE_QUEUES"] is True
        for queue in backend.mq_queues():
            create = functools.partial(backend.create_queue, queue) if creates else None
            specs.append(registry.register(queue, run_task_message, **backend.handler_options(), create_queue=create))
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
    # deferred: settings load the backend by path, possibly before the app registry is ready
    from queues.models import Worker

    host = socket.gethostname()
    found = (
        Worker.objects.filter(host=host[:255], pid=pid, state="live")
        .order_by("-started_at")
        .values_list("name", flat=True)
        .first()
    )
    if found is None:
        return f"{host}:{pid}"
    _worker_names[pid] = found
    return found


def _is_last_attempt(queue: str, receive_count: int) -> bool:
    """Whether a nack of this delivery dead-letters it (the engine's rule, see sql.NACK)."""
    # deferred: settings load the backend by path, possibly before the app registry is ready
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


def run_task_message(delivery: Delivery) -> None:
    """Run the task of one delivery from a task queue: the handler that workers call.

    Returns normally when the task succeeded or was finished before, so the worker acks; raises the
    task's exception while attempts remain (READY again, the worker nacks with backoff) and on the
    last one (FAILED, the message dead-letters); raises :class:`Reject` (dead-letter at once) for a
    body that is no task message and for a return value that is not JSON (FAILED).
    """
    result_id = _result_id(delivery.body)
    last = _is_last_attempt(delivery.queue, delivery.receive_count)
    row = results.start(result_id, worker=worker_id())
    if row is None:
        # Redelivered after it finished (a redrive, or a crash between finishing and acking), or
        # its result row was deleted: nothing to run, and the worker acks the message.
        logger.info("task %s (message %s) is finished or gone; not running it", result_id, delivery.id)
        return
    sender = signal_sender(row.backend)
    try:
        result = results.to_task_result(row)
    except InvalidTask as exc:
        # The code is not there (yet): retry like any failure, so a rolling deploy can catch up.
        _record_failure(result_id, exc, last=last, sender=sender)
        raise
    results.notify(task_started, sender, result)

    try:
        task = result.task
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
        else:
            value = task.call(*result.args, **result.kwargs)
    except Exception as exc:
        if isinstance(exc, Cancelled) or delivery.cancel_requested:
            # The worker ends the message as cancelled (never retried): the result is final now.
            # django.tasks has no CANCELLED status, so FAILED, with the reason as the error.
            cancelled = Cancelled(f"cancelled by an operator while running (message {delivery.id}): {exc}")
            _record_failure(result_id, cancelled, last=True, sender=sender)
            raise cancelled from exc
        _record_failure(result_id, exc, last=last, sender=sender)
        raise
    except BaseException:
        # The worker is being stopped (or the task called sys.exit): the attempt did not finish,
        # so the task is READY for its redelivery, with no error to record.
        results.release(result_id)
        raise

    try:
        stored = results.json_value(value, "the task's return value")
    except results.InvalidTaskArguments as exc:
        # Running it again would repeat its side effects and fail the same way: fail for good now,
        # and dead-letter the message at once like every other failed task's.
        _record_failure(result_id, exc, last=True, sender=sender)
        raise Reject(str(exc)) from exc

    row = results.succeed(result_id, return_value=stored)
    if row is not None:
        results.notify(task_finished, sender, results.to_task_result(row))


def _record_failure(result_id: uuid.UUID, exc: BaseException, *, last: bool, sender: type) -> None:
    """Store the error; FAILED and ``task_finished`` on the last attempt, else READY for the retry."""
    error = results.error_entry(exc)
    if not last:
        row = results.retry(result_id, error=error)
        if row is not None:
            logger.warning(
                "task %s failed (attempt %s), will retry: %s", result_id, row.attempts, error["exception_class_path"]
            )
        return
    row = results.fail(result_id, error=error)
    if row is None:
        return
    try:
        finished = results.to_task_result(row)
    except InvalidTask:
        logger.error("task %s failed for good and its code cannot be imported: %s", result_id, exc)
        return
    # Sent inside the caller's except block, so receivers (Django's logger) see the exception.
    results.notify(task_finished, sender, finished)
