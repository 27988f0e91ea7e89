"""The task executor that workers call, driven in-process the way a worker drives it."""

from __future__ import annotations

import os
import socket
import sys

import pytest
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.signals import task_finished, task_started

import queues
from queues.models import TaskResult as TaskResultRow
from queues.tasks import register_handlers, run_task_message
from queues.worker import Reject, registry
from tests.conftest import wait_for
from tests.tasks import tasks
from tests.tasks.conftest import TEST_TASKS, deliver, run_like_a_worker

pytestmark = pytest.mark.django_db


def test_successful_task_stores_its_return_value(signals):
    result = tasks.add.enqueue(2, 3)

    assert run_like_a_worker(deliver()) == "acked"

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.errors == []
    assert result.worker_ids == [f"{socket.gethostname()}:{os.getpid()}"]
    assert result.attempts == 1
    assert result.enqueued_at <= result.started_at <= result.last_attempted_at <= result.finished_at
    assert signals == [
        ("enqueued", result.id, "READY"),
        ("started", result.id, "RUNNING"),
        ("finished", result.id, "SUCCESSFUL"),
    ]
    assert queues.queue_stats("tasks.default").depth == 0


def test_result_is_running_while_the_task_runs(tmp_path):
    flag = tmp_path / "go"
    result = tasks.wait_for_file.enqueue(str(flag))
    seen: list[str] = []

    # Look from the task itself, through the public API, while it runs.
    def look(sender, task_result, **kwargs):
        fresh = default_task_backend.get_result(task_result.id)
        seen.append(fresh.status)
        flag.write_text("done")

    task_started.connect(look)
    try:
        run_like_a_worker(deliver())
    finally:
        task_started.disconnect(look)

    assert seen == [TaskResultStatus.RUNNING]
    assert tasks.wait_for_file.get_result(result.id).return_value == "done"


def test_failure_with_attempts_left_is_ready_again_and_retried(signals):
    queues.create_queue("tasks.default", max_receives=3)
    result = tasks.always_fails.enqueue("boom")

    assert run_like_a_worker(deliver()) == "nacked"

    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.attempts == 1
    [error] = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "ValueError: boom" in error.traceback
    assert result.finished_at is None
    assert [s[0] for s in signals] == ["enqueued", "started"]
    assert queues.queue_stats("tasks.default").depth == 1


def test_last_attempt_fails_for_good_and_dead_letters(signals):
    queues.create_queue("tasks.default", max_receives=2)
    result = tasks.always_fails.enqueue("boom")

    assert run_like_a_worker(deliver()) == "nacked"
    assert run_like_a_worker(deliver()) == "dead-lettered"

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 2
    assert len(result.errors) == 2
    assert result.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert [s[0] for s in signals] == ["enqueued", "started", "started", "finished"]
    assert signals[-1][2] == "FAILED"
    assert queues.queue_stats("tasks.default").dead == 1


def test_failed_is_final_even_when_the_message_is_redriven():
    queues.create_queue("tasks.default", max_receives=1)
    result = tasks.always_fails.enqueue("boom")
    assert run_like_a_worker(deliver()) == "dead-lettered"
    tasks.calls.clear()

    queues.redrive_batch("tasks.default.dlq")
    assert run_like_a_worker(deliver()) == "acked"

    assert tasks.calls == []
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 1


def test_successful_is_final_when_the_message_comes_again():
    result = tasks.add.enqueue(1, 1)
    first = deliver()
    run_task_message(first)  # finished, but the worker died before it acked
    tasks.calls.clear()

    queues.nack(first.receipt)
    assert run_like_a_worker(deliver()) == "acked"

    assert tasks.calls == []
    assert tasks.add.get_result(result.id).attempts == 1


def test_a_queue_without_dead_letters_retries_forever():
    queues.create_queue("tasks.default", max_receives=0)
    result = tasks.always_fails.enqueue("boom")

    for _ in range(3):
        assert run_like_a_worker(deliver()) == "nacked"

    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.attempts == 3


def test_context_reports_the_attempt():
    queues.create_queue("tasks.default", max_receives=5)
    result = tasks.fails_until.enqueue(succeed_on=3)

    outcomes = [run_like_a_worker(deliver()) for _ in range(3)]

    assert outcomes == ["nacked", "nacked", "acked"]
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 3, "id": result.id}
    assert [e.exception_class_path for e in result.errors] == ["builtins.RuntimeError"] * 2
    assert len(result.worker_ids) == 3


def test_async_task_runs(signals):
    result = tasks.async_multiply.enqueue(6, 7)

    assert run_like_a_worker(deliver()) == "acked"

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42


def test_return_value_that_is_not_json_fails_and_dead_letters_without_retry(signals):
    queues.create_queue("tasks.default", max_receives=5)
    result = tasks.returns_object.enqueue()

    assert run_like_a_worker(deliver()) == "dead-lettered"

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "queues.tasks.InvalidTaskArguments"
    assert "return value" in error.traceback and "cannot be stored as JSON" in error.traceback
    assert signals[-1] == ("finished", result.id, "FAILED")
    assert tasks.calls == ["returns_object"]


def test_task_whose_code_is_gone_fails_after_its_attempts():
    queues.create_queue("tasks.default", max_receives=2)
    result = tasks.add.enqueue(1, 2)
    TaskResultRow.objects.filter(pk=result.id).update(task_path="tests.tasks.tasks.removed_task")

    assert run_like_a_worker(deliver()) == "nacked"
    assert run_like_a_worker(deliver()) == "dead-lettered"

    row = TaskResultRow.objects.get(pk=result.id)
    assert row.status == TaskResultStatus.FAILED
    assert row.errors[-1]["exception_class_path"] == "django.tasks.exceptions.InvalidTask"
    assert "removed_task" in row.errors[-1]["traceback"]


def test_message_without_a_result_is_dropped():
    result = tasks.add.enqueue(1, 2)
    TaskResultRow.objects.filter(pk=result.id).delete()

    assert run_like_a_worker(deliver()) == "acked"
    assert tasks.calls == []


def test_foreign_message_on_a_task_queue_is_rejected():
    queues.create_queue("tasks.default", max_receives=1)
    queues.send("tasks.default", {"hello": "world"})

    delivery = deliver()
    with pytest.raises(Reject, match="not a task message"):
        run_task_message(delivery)


def test_every_task_queue_gets_the_executor(settings):
    settings.TASKS = {
        **TEST_TASKS,
        "slow": {
            "BACKEND": "queues.tasks.QueuesBackend",
            "QUEUES": ["reports"],
            "OPTIONS": {"QUEUE_PREFIX": "slow-", "BACKOFF": 5, "MAX_BACKOFF": 60, "TIMEOUT": 600},
        },
        "dummy": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
    }
    try:
        specs = register_handlers()

        assert sorted(s.queue for s in specs) == ["slow-reports", "tasks.default", "tasks.other"]
        slow = registry.get_handler("slow-reports")
        assert slow.func is run_task_message
        assert (slow.backoff, slow.max_backoff, slow.timeout, slow.atomic) == (5.0, 60.0, 600, False)
        assert registry.get_handler("tasks.default").backoff == 0.0
    finally:
        for queue in ("slow-reports", "tasks.default", "tasks.other"):
            registry.unregister(queue)


def test_autodiscovery_registers_the_executor():
    sys.modules.pop("queues.handlers", None)  # imported by an earlier test, maybe under other TASKS
    try:
        registry.autodiscover()

        assert registry.get_handler("tasks.default").func is run_task_message
        assert registry.get_handler("tasks.other").func is run_task_message
    finally:
        registry.unregister("tasks.default")
        registry.unregister("tasks.other")


def test_purged_task_is_reported_failed_once(signals):
    result = tasks.add.enqueue(1, 2)
    queues.purge("tasks.default")

    result.refresh()

    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "queues.tasks.TaskLost"
    assert result.errors[-1].exception_class.__name__ == "TaskLost"
    assert "purged" in result.errors[-1].traceback
    result.refresh()
    assert [s for s in signals if s[0] == "finished"] == [("finished", result.id, "FAILED")]


def test_worker_lost_on_the_last_attempt_is_reported_failed():
    queues.create_queue("tasks.default", max_receives=1, visibility_timeout=0.2)
    result = tasks.add.enqueue(1, 2)
    [delivery] = queues.receive("tasks.default")
    # What a worker killed mid-task leaves behind: RUNNING, and a lease that runs out unacked.
    TaskResultRow.objects.filter(pk=result.id).update(status=TaskResultStatus.RUNNING, attempts=1)
    assert tasks.add.get_result(result.id).status == TaskResultStatus.RUNNING

    # The engine dead-letters it on the next receive, without any handler.
    wait_for(lambda: queues.receive("tasks.default") == [] and queues.queue_stats("tasks.default").dead == 1)

    found = tasks.add.get_result(result.id)
    assert found.status == TaskResultStatus.FAILED
    assert "dead-lettered to 'tasks.default.dlq'" in found.errors[-1].traceback
    assert delivery.id == TaskResultRow.objects.get(pk=result.id).message_id


def test_unfinished_task_with_a_live_message_is_left_alone():
    queues.create_queue("tasks.default", max_receives=3)
    result = tasks.always_fails.enqueue("boom")
    run_like_a_worker(deliver())

    assert tasks.always_fails.get_result(result.id).status == TaskResultStatus.READY


def test_a_raising_signal_receiver_does_not_fail_the_task():
    def broken(sender, task_result, **kwargs):
        raise RuntimeError("metrics are down")

    task_started.connect(broken)
    task_finished.connect(broken)
    try:
        result = tasks.add.enqueue(1, 2)
        assert run_like_a_worker(deliver()) == "acked"
    finally:
        task_started.disconnect(broken)
        task_finished.disconnect(broken)

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 3
