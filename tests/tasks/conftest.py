"""Settings and helpers for the tests of the ``django.tasks`` backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.tasks.signals import task_enqueued, task_finished, task_started

import queues
from queues.tasks import run_task_message
from queues.worker import Reject
from tests.tasks import tasks

# The TASKS of these tests, in the test process and (through MQADMIN_TASKS) in worker processes.
TEST_TASKS: dict[str, Any] = {
    "default": {
        "BACKEND": "queues.tasks.QueuesBackend",
        "QUEUES": ["default", "other"],
        "OPTIONS": {"BACKOFF": 0.0, "MAX_BACKOFF": 0.0},
    }
}


@pytest.fixture(autouse=True)
def tasks_settings(settings: Any) -> Any:
    """Every test here runs with TEST_TASKS (Django resets its backends when TASKS changes)."""
    settings.TASKS = TEST_TASKS
    tasks.calls.clear()
    return settings


@pytest.fixture
def signals() -> Iterator[list[tuple[str, str, str]]]:
    """Records (signal, task result id, status) of every task signal sent during the test."""
    seen: list[tuple[str, str, str]] = []

    def receivers() -> dict[str, Callable[..., None]]:
        def make(name: str) -> Callable[..., None]:
            def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
                seen.append((name, task_result.id, str(task_result.status)))

            return receive

        return {"enqueued": make("enqueued"), "started": make("started"), "finished": make("finished")}

    made = receivers()
    pairs = [(task_enqueued, made["enqueued"]), (task_started, made["started"]), (task_finished, made["finished"])]
    for signal, fn in pairs:
        signal.connect(fn)
    yield seen
    for signal, fn in pairs:
        signal.disconnect(fn)


def deliver(queue: str = "tasks.default") -> Any:
    """Receive exactly one message of ``queue`` (as a worker would)."""
    got = queues.receive(queue)
    assert len(got) == 1, f"expected one ready message in {queue}, got {len(got)}"
    return got[0]


def run_like_a_worker(delivery: Any) -> str:
    """Call the task executor the way a worker does: ack on return, nack on raise (dead-letter on Reject)."""
    try:
        run_task_message(delivery)
    except Exception as exc:
        dead = queues.nack(delivery.receipt, error=repr(exc), dead_letter=isinstance(exc, Reject))
        return "dead-lettered" if dead else "nacked"
    queues.ack(delivery.receipt)
    return "acked"


def tasks_env(env: dict[str, str], tasks: dict[str, Any] | None = None) -> dict[str, str]:
    """``env`` with the TASKS of these tests for a worker process."""
    return {**env, "MQADMIN_TASKS": json.dumps(tasks or TEST_TASKS)}
