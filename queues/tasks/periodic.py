"""``@periodic``: run a ``django.tasks`` task on a cron schedule, with mqadmin's exactly-once scheduler.

::

    from django.tasks import task
    from queues.tasks import periodic

    @periodic(cron="0 3 * * *", timezone="Europe/Paris", kwargs={"full": True})
    @task(queue_name="reports")
    def nightly_report(full: bool) -> None: ...

The decorator checks its arguments at import time (a bad cron or zone is a ``ValueError`` naming it)
and records the schedule; every scheduler writes the recorded ones to the database when it starts
(:func:`queues.schedules.sync_declared`), so the module must be imported by the processes that run
schedulers: import it from your app's ``AppConfig.ready()``, or declare the schedule in
``MQADMIN["SCHEDULES"]`` instead, which needs no import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from django.tasks import Task

from queues import schedules

T = TypeVar("T", bound=Task)


def periodic(
    *,
    cron: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    timezone: str = "UTC",
    catch_up: bool = True,
) -> Callable[[T], T]:
    """Enqueue the decorated ``@task`` at each occurrence of ``cron`` (in ``timezone``) with ``args``/``kwargs``.

    ``name`` defaults to the task's dotted path with ``_`` for what schedule names refuse
    (``reports.tasks.nightly_report``). ``catch_up``: see :mod:`queues.schedules`.
    """

    def decorate(task: T) -> T:
        if not isinstance(task, Task):
            raise TypeError(f"@periodic goes above @task (it schedules a django.tasks task), got {task!r}")
        schedule_name = name if name is not None else _default_name(task.module_path)
        schedules.declare(
            schedule_name,
            {
                "cron": cron,
                "task": task.module_path,
                "args": list(args),
                "kwargs": dict(kwargs or {}),
                "timezone": timezone,
                "catch_up": catch_up,
            },
        )
        return task

    return decorate


def _default_name(path: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in path.lower()).lstrip("._-")
    return cleaned[-80:].lstrip("._-") or "task"


__all__ = ["periodic"]
