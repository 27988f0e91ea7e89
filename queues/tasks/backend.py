"""``QueuesBackend``: the ``django.tasks`` backend that stores results in PostgreSQL and sends messages.

``enqueue`` writes the result row and sends ``{"task_result_id": ...}`` to the mqadmin queue
``<QUEUE_PREFIX><queue_name>`` in one transaction that joins the caller's; ``check()`` reports bad
settings (:mod:`queues.tasks.checks`); :func:`queues_backends` lists the configured instances, for the
worker's handlers and for :func:`prune_results`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.checks import CheckMessage
from django.db import IntegrityError
from django.tasks import DEFAULT_TASK_QUEUE_NAME, Task, TaskResult, TaskResultStatus, task_backends
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from queues import conf, engine
from queues.engine.errors import InvalidQueueName, QueueNotFound
from queues.tasks import results
from queues.tasks.checks import check_backend
from queues.tasks.options import MAX_DEFER_SECONDS, OPTION_DEFAULTS

logger = logging.getLogger("queues.tasks")


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
        prefix = self.settings["QUEUE_PREFIX"]
        if not isinstance(prefix, str):
            raise InvalidTask(f"TASKS[{self.alias!r}]['OPTIONS']['QUEUE_PREFIX'] must be a string, got {prefix!r}")
        name = f"{prefix}{queue_name}"
        try:
            return engine.validate_name(name)
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

    def check(self, **kwargs: Any) -> Iterator[CheckMessage]:
        """System checks of this backend's settings (:mod:`queues.tasks.checks`), run by ``manage.py check``."""
        yield from super().check(**kwargs)
        yield from check_backend(self, queues_backends())

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
        self.validate_task(task)
        args = results.json_value(list(args), "task arguments")
        kwargs = results.json_value(dict(kwargs), "task keyword arguments")
        queue = self.queue_for(task.queue_name)
        delay = None
        if task.run_after is not None:
            delay = max(0.0, _seconds_until(task.run_after))
        result_id = uuid.uuid4()
        with conf.atomic():
            message_id = self._send(queue, {"task_result_id": str(result_id)}, delay, int(task.priority))
            row = results.create(
                result_id=result_id, alias=self.alias, task=task, message_id=message_id, args=args, kwargs=kwargs
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
        try:
            return engine.send(queue, body, delay=delay, priority=priority)
        except QueueNotFound:
            if self.settings["CREATE_QUEUES"] is not True:
                raise
        self.create_queue(queue)
        return engine.send(queue, body, delay=delay, priority=priority)

    def create_queue(self, queue: str) -> None:
        """Create the mqadmin queue ``queue`` with ``QUEUE_SETTINGS`` unless it exists (``CREATE_QUEUES``):
        on the first enqueue, or when a worker for it starts first."""
        queue_settings = dict(self.settings["QUEUE_SETTINGS"] or {})
        try:
            with conf.atomic():
                engine.ensure_queue(queue, **queue_settings)
        except IntegrityError:
            # Another process created it (or its dead-letter queue) at the same moment.
            engine.ensure_queue(queue, **queue_settings)
        logger.info("created task queue %s for backend %s", queue, self.alias)

    # -- results ------------------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult:
        """The result ``result_id`` as stored now; ``TaskResultDoesNotExist`` if there is none."""
        row = results.find(result_id, self.alias)
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        if row.status not in results.FINAL_STATUSES:
            row = results.reconcile(row, sender=type(self))
        return results.to_task_result(row)


def _seconds_until(moment: datetime) -> float:
    now = datetime.now(UTC) if timezone.is_aware(moment) else datetime.now()
    return (moment - now).total_seconds()


def queues_backends() -> Iterator[QueuesBackend]:
    """Every backend of ``settings.TASKS`` that is a :class:`QueuesBackend`, in the settings' order."""
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


def signal_sender(alias: str) -> type:
    """The sender of task signals for results of ``alias``: its backend's class (ours if it left TASKS)."""
    try:
        return type(task_backends[alias])
    except InvalidTaskBackend:
        return QueuesBackend


def prune_results(*, batch: int = 5000) -> int:
    """Delete finished results older than their backend's ``RESULT_RETENTION``; return how many went.

    Works in batches of ``batch`` so it never holds long locks. Results that are READY or RUNNING are
    never touched, nor are those of a backend no longer in ``settings.TASKS`` (nobody set their
    retention). Workers call it when they prune; so does ``mq_prune``.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    removed = 0
    for backend in queues_backends():
        retention = backend.settings["RESULT_RETENTION"]
        if retention is None:
            continue
        older_than = timezone.now() - timedelta(seconds=float(retention))
        removed += results.prune(alias=backend.alias, older_than=older_than, batch=batch)
    return removed
