"""End to end: tasks enqueued through ``django.tasks`` run in real ``mq_worker`` processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone

import queues
from queues.models import Queue as QueueRow
from queues.models import TaskResult as TaskResultRow
from queues.models import Worker
from tests.conftest import ROOT, wait_for
from tests.tasks import tasks
from tests.tasks.conftest import tasks_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKER_NAME = re.compile(r"^[^:]+:\d+:[0-9a-f]+$")


class Workers:
    """Starts ``manage.py mq_worker`` processes with this test module's TASKS; kills leftovers."""

    def __init__(self, env: dict[str, str], events: Path) -> None:
        self.env = {**tasks_env(env), "MQADMIN_TEST_TASK_EVENTS": str(events)}
        self.events = events
        self.procs: list[subprocess.Popen] = []

    def start(self, *options: str, queues: tuple[str, ...] = ("tasks.default",)) -> subprocess.Popen:
        """A worker for ``queues`` with fast polling and the extra ``options``."""
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "mq_worker", *queues, "--poll-interval", "0.2",
             "--log-interval", "0", "--prune-interval", "0", *options],
            env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.procs.append(proc)
        return proc

    def burst(self, *options: str, timeout: float = 120) -> str:
        """Run a ``--burst`` worker until it drained the queue; return its output."""
        proc = self.start(*options, "--burst")
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"worker exited with {proc.returncode}:\n{out}"
        return out

    def signals(self) -> list[dict[str, Any]]:
        """The task signals the workers sent, in order."""
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines()]

    def stop(self, proc: subprocess.Popen, timeout: float = 60) -> str:
        """SIGTERM (a graceful stop) and wait."""
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=timeout)
        return out

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)


@pytest.fixture
def workers(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    made = Workers(subprocess_env, tmp_path / "events.jsonl")
    yield made
    made.cleanup()


def result_of(task: Any, result_id: str) -> Any:
    return task.get_result(result_id)


def status_is(task: Any, result_id: str, status: str) -> Callable[[], Any]:
    def check() -> Any:
        found = task.get_result(result_id)
        return found if found.status == status else None

    return check


def test_worker_runs_tasks_and_reports_their_results(workers):
    added = tasks.add.enqueue(2, 3)
    multiplied = tasks.async_multiply.enqueue(6, 7)
    echoed = tasks.echo.enqueue("a", (1, 2), flag=True)

    workers.burst()

    for task, enqueued, value in [
        (tasks.add, added, 5), (tasks.async_multiply, multiplied, 42),
        (tasks.echo, echoed, {"args": ["a", [1, 2]], "kwargs": {"flag": True}}),
    ]:
        result = task.get_result(enqueued.id)
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == value
        assert result.errors == []
        assert result.attempts == 1
        assert result.enqueued_at <= result.started_at <= result.last_attempted_at <= result.finished_at
        [worker_id] = result.worker_ids
        assert WORKER_NAME.match(worker_id), worker_id
        assert Worker.objects.filter(name=worker_id).exists()
    assert queues.queue_stats("tasks.default").depth == 0
    sent = [(e["signal"], e["id"], e["status"]) for e in workers.signals()]
    for enqueued in (added, multiplied, echoed):
        assert [s for s in sent if s[1] == enqueued.id] == [
            ("started", enqueued.id, "RUNNING"), ("finished", enqueued.id, "SUCCESSFUL"),
        ]
    assert {e["pid"] for e in workers.signals()} != {os.getpid()}


def test_failing_task_is_retried_then_failed_and_dead_lettered(workers):
    queues.create_queue("tasks.default", max_receives=3)
    result = tasks.always_fails.enqueue("no stock")

    workers.burst()

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 3
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"] * 3
    assert "ValueError: no stock" in result.errors[-1].traceback
    assert result.finished_at is not None
    stats = queues.queue_stats("tasks.default")
    assert (stats.depth, stats.dead) == (0, 1)
    [dead] = queues.peek("tasks.default.dlq")
    assert dead.body == {"task_result_id": result.id}
    assert [e["signal"] for e in workers.signals()] == ["started", "started", "started", "finished"]
    assert workers.signals()[-1]["status"] == "FAILED"


def test_flaky_task_succeeds_on_a_later_attempt(workers):
    queues.create_queue("tasks.default", max_receives=3)
    result = tasks.fails_until.enqueue(succeed_on=2)

    workers.burst()

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 2, "id": result.id}
    assert result.attempts == 2
    assert [e.exception_class_path for e in result.errors] == ["builtins.RuntimeError"]


def test_a_worker_started_before_the_first_enqueue_creates_its_task_queue_and_runs_the_task(workers):
    # The quickstart's order: `mq_worker tasks.default` right after defining a task, nothing enqueued yet.
    assert not QueueRow.objects.filter(name="tasks.default").exists()
    proc = workers.start()
    wait_for(lambda: QueueRow.objects.filter(name="tasks.default").exists() or proc.poll() is not None, timeout=60)
    assert proc.poll() is None, proc.communicate()[0]
    added = tasks.add.enqueue(2, 3)
    done = wait_for(status_is(tasks.add, added.id, "SUCCESSFUL"), timeout=60)
    assert done.return_value == 5
    workers.stop(proc)


def test_result_is_running_while_a_worker_runs_it(workers, tmp_path):
    flag = tmp_path / "release"
    result = tasks.wait_for_file.enqueue(str(flag))
    proc = workers.start("--burst")

    running = wait_for(status_is(tasks.wait_for_file, result.id, "RUNNING"), timeout=60)
    assert running.started_at is not None and running.finished_at is None
    assert len(running.worker_ids) == 1 and running.attempts == 1
    with pytest.raises(ValueError, match="not finished"):
        _ = running.return_value
    flag.write_text("released")
    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 0, out
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "released"


def test_deferred_task_runs_after_run_after(workers):
    run_after = timezone.now() + timedelta(seconds=2)
    result = tasks.add.using(run_after=run_after).enqueue(1, 1)
    proc = workers.start()

    done = wait_for(status_is(tasks.add, result.id, "SUCCESSFUL"), timeout=60)
    workers.stop(proc)

    assert done.started_at >= run_after
    assert done.return_value == 2


def test_higher_priority_task_runs_first(workers):
    low = tasks.add.using(priority=-50).enqueue(0, 0)
    middle = tasks.add.enqueue(0, 1)
    high = tasks.add.using(priority=50).enqueue(1, 1)

    workers.burst("--concurrency", "1", "--prefetch", "1")

    started = sorted((tasks.add.get_result(r.id).started_at, name)
                     for name, r in [("low", low), ("middle", middle), ("high", high)])
    assert [name for _, name in started] == ["high", "middle", "low"]


def test_task_of_a_killed_worker_runs_again_on_another(workers, tmp_path):
    queues.create_queue("tasks.default", visibility_timeout=2)
    flag = tmp_path / "release"
    result = tasks.wait_for_file.enqueue(str(flag))
    first = workers.start()
    wait_for(status_is(tasks.wait_for_file, result.id, "RUNNING"), timeout=60)

    first.kill()  # no chance to give the message back: its lease must run out
    first.communicate(timeout=30)
    flag.write_text("second")
    wait_for(lambda: queues.queue_stats("tasks.default").ready == 1, timeout=30)
    workers.burst()

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "second"
    assert result.attempts == 2
    assert len(set(result.worker_ids)) == 2


def test_a_worker_prunes_finished_results_past_their_retention(workers):
    old, fresh = tasks.add.enqueue(1, 1), tasks.add.enqueue(2, 2)
    workers.burst()
    # Both finished just now: make one look ten days old (the default RESULT_RETENTION is a week).
    TaskResultRow.objects.filter(id=old.id).update(finished_at=timezone.now() - timedelta(days=10))
    proc = workers.start("--prune-interval", "0.5")
    wait_for(lambda: not TaskResultRow.objects.filter(id=old.id).exists(), timeout=30)
    fresh.refresh()
    assert fresh.status == TaskResultStatus.SUCCESSFUL
    assert "task_results=1" in workers.stop(proc)
