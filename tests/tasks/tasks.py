"""``@task`` functions for the tests of ``queues.tasks``; workers import them by path.

When ``MQADMIN_TEST_TASK_EVENTS`` names a file, every task signal appends a JSON line to it, so
tests can see the signals fire inside a real worker process.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from django.dispatch import receiver
from django.tasks import TaskContext, task
from django.tasks.signals import task_enqueued, task_finished, task_started

# How many times each task body ran in this process (tests that call the executor in-process).
calls: list[str] = []


@task
def add(a: int, b: int) -> int:
    """The sum of two numbers."""
    calls.append("add")
    return a + b


@task
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Its arguments back, as stored."""
    calls.append("echo")
    return {"args": list(args), "kwargs": kwargs}


@task
def always_fails(message: str) -> None:
    """Raises ``ValueError(message)`` every time."""
    calls.append("always_fails")
    raise ValueError(message)


@task(takes_context=True)
def fails_until(context: TaskContext, succeed_on: int) -> dict[str, Any]:
    """Raises until attempt ``succeed_on``; then returns the attempt number and the task result id."""
    calls.append("fails_until")
    if context.attempt < succeed_on:
        raise RuntimeError(f"attempt {context.attempt} of {succeed_on} fails")
    return {"attempt": context.attempt, "id": context.task_result.id}


@task
def returns_object() -> Any:
    """Returns something that is not JSON."""
    calls.append("returns_object")
    return {"when": object()}


@task
async def async_multiply(a: int, b: int) -> int:
    """An ``async def`` task."""
    calls.append("async_multiply")
    await asyncio.sleep(0)
    return a * b


@task
def wait_for_file(path: str, timeout: float = 60.0) -> str:
    """Blocks until ``path`` exists (tests watch it RUNNING meanwhile), then returns its text."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.02)
    return Path(path).read_text()


def _log_signal(name: str, task_result: Any) -> None:
    path = os.environ.get("MQADMIN_TEST_TASK_EVENTS")
    if not path:
        return
    line = json.dumps({"signal": name, "id": task_result.id, "status": str(task_result.status), "pid": os.getpid()})
    with open(path, "a") as f:
        f.write(line + "\n")


@receiver(task_enqueued)
def _enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _log_signal("enqueued", task_result)


@receiver(task_started)
def _started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _log_signal("started", task_result)


@receiver(task_finished)
def _finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _log_signal("finished", task_result)
