"""The backend's side of the contract: enqueue, results, validation (no worker involved)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
from django.utils import timezone

import queues
from queues.models import TaskResult as TaskResultRow
from queues.tasks import InvalidTaskArguments, QueuesBackend
from tests.tasks import tasks
from tests.tasks.conftest import TEST_TASKS

pytestmark = pytest.mark.django_db


def test_backend_declares_every_capability():
    backend = task_backends["default"]
    assert isinstance(backend, QueuesBackend)
    assert backend.supports_defer
    assert backend.supports_priority
    assert backend.supports_get_result
    assert backend.supports_async_task


def test_enqueue_stores_a_ready_result_and_sends_its_id(signals):
    result = tasks.add.enqueue(2, 3)

    assert result.status == TaskResultStatus.READY
    assert result.args == [2, 3] and result.kwargs == {}
    assert result.enqueued_at is not None and result.started_at is None and result.finished_at is None
    assert result.worker_ids == [] and result.errors == []
    assert result.backend == "default"
    [message] = queues.peek("tasks.default")
    assert message.body == {"task_result_id": result.id}
    assert message.state == "ready"
    row = TaskResultRow.objects.get(pk=result.id)
    assert row.message_id == message.id
    assert row.task_path == "tests.tasks.tasks.add"
    assert signals == [("enqueued", result.id, "READY")]


def test_enqueue_to_another_queue_uses_its_own_mqadmin_queue():
    result = tasks.add.using(queue_name="other").enqueue(1, 1)

    [message] = queues.peek("tasks.other")
    assert message.body == {"task_result_id": result.id}
    assert result.task.queue_name == "other"


def test_the_queue_is_created_with_queue_settings(settings):
    settings.TASKS = {"default": {**TEST_TASKS["default"], "OPTIONS": {"QUEUE_SETTINGS": {"max_receives": 3}}}}

    tasks.add.enqueue(1, 2)

    queue = queues.get_queue("tasks.default")
    assert queue.max_receives == 3
    assert queue.dead_letter_queue.name == "tasks.default.dlq"


def test_missing_queue_is_an_error_when_create_queues_is_off(settings):
    settings.TASKS = {"default": {**TEST_TASKS["default"], "OPTIONS": {"CREATE_QUEUES": False}}}

    with pytest.raises(queues.QueueNotFound, match=r"tasks\.default"):
        tasks.add.enqueue(1, 2)
    assert not TaskResultRow.objects.exists()


def test_enqueue_rolls_back_with_the_callers_transaction():
    queues.create_queue("tasks.default")

    with pytest.raises(ZeroDivisionError), transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        raise ZeroDivisionError

    assert queues.peek("tasks.default") == []
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result.id)


def test_priority_becomes_the_message_priority():
    tasks.add.using(priority=-100).enqueue(0, 0)
    high = tasks.add.using(priority=100).enqueue(1, 1)
    tasks.add.enqueue(2, 2)

    first = queues.receive("tasks.default")[0]
    assert first.body == {"task_result_id": high.id}
    assert first.priority == 100
    assert default_task_backend.get_result(high.id).task.priority == 100


def test_run_after_delays_the_message():
    when = timezone.now() + timedelta(seconds=120)

    result = tasks.add.using(run_after=when).enqueue(1, 2)

    [message] = queues.peek("tasks.default")
    assert message.state == "delayed"
    assert abs((message.available_at - when).total_seconds()) < 5
    assert queues.receive("tasks.default") == []
    assert default_task_backend.get_result(result.id).task.run_after == when


def test_run_after_in_the_past_runs_at_once():
    result = tasks.add.using(run_after=timezone.now() - timedelta(hours=1)).enqueue(1, 2)

    [delivery] = queues.receive("tasks.default")
    assert delivery.body == {"task_result_id": result.id}


def test_run_after_beyond_fifteen_days_is_refused():
    with pytest.raises(InvalidTask, match="15 days"):
        tasks.add.using(run_after=timezone.now() + timedelta(days=16))


def test_naive_run_after_is_refused():
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=datetime(2030, 1, 1))


@pytest.mark.parametrize("priority", [101, -101, 1.5])
def test_priority_out_of_range_is_refused(priority):
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=priority)


def test_queue_not_in_queues_is_refused():
    with pytest.raises(InvalidTask, match="'emails' is not valid"):
        tasks.add.using(queue_name="emails")


def test_queue_name_that_makes_an_invalid_mqadmin_name_is_refused(settings):
    settings.TASKS = {"default": {**TEST_TASKS["default"], "QUEUES": ["default", "Big Emails"]}}

    with pytest.raises(InvalidTask, match=r"'Big Emails'.*'tasks.Big Emails'"):
        tasks.add.using(queue_name="Big Emails")


def test_empty_queues_is_refused(settings):
    settings.TASKS = {"default": {**TEST_TASKS["default"], "QUEUES": []}}

    with pytest.raises(InvalidTask, match="QUEUES'] is empty"):
        tasks.add.enqueue(1, 2)


@pytest.mark.parametrize(
    ("args", "kwargs", "offender"),
    [
        ((datetime(2030, 1, 1),), {}, "datetime"),
        ((), {"when": {1, 2}}, "set"),
        ((math.nan,), {}, "nan"),
        ((object(),), {}, "object"),
    ],
)
def test_arguments_that_are_not_json_are_refused(args, kwargs, offender):
    with pytest.raises(InvalidTaskArguments, match=f"cannot be stored as JSON.*{offender}|{offender}.*cannot be"):
        tasks.echo.enqueue(*args, **kwargs)
    assert not TaskResultRow.objects.exists()
    assert queues.stats() == [] or all(s.depth == 0 for s in queues.stats())


def test_non_json_arguments_are_a_type_error_too():
    with pytest.raises(TypeError):
        tasks.echo.enqueue(b"\xff")


def test_tuples_are_stored_as_lists():
    result = tasks.echo.enqueue((1, 2), nested={"t": (3,)})

    stored = default_task_backend.get_result(result.id)
    assert stored.args == [[1, 2]]
    assert stored.kwargs == {"nested": {"t": [3]}}


def test_get_result_reads_what_is_stored():
    result = tasks.add.using(priority=7).enqueue(4, 5)

    found = tasks.add.get_result(result.id)

    assert found.id == result.id
    assert found.status == TaskResultStatus.READY
    assert found.args == [4, 5]
    assert found.task.func is tasks.add.func
    assert found.task.priority == 7
    assert found.enqueued_at == result.enqueued_at
    assert found.attempts == 0
    with pytest.raises(ValueError, match="not finished"):
        _ = found.return_value


@pytest.mark.parametrize("bad_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "", "1; DROP TABLE"])
def test_get_result_of_an_unknown_id_does_not_exist(bad_id):
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(bad_id)


def test_get_result_of_another_task_is_a_mismatch():
    result = tasks.add.enqueue(1, 2)

    with pytest.raises(TaskResultMismatch):
        tasks.echo.get_result(result.id)


def test_get_result_of_another_backend_alias_does_not_exist(settings):
    settings.TASKS = {**TEST_TASKS, "second": {**TEST_TASKS["default"]}}
    result = tasks.add.enqueue(1, 2)

    with pytest.raises(TaskResultDoesNotExist):
        task_backends["second"].get_result(result.id)


def test_result_stays_readable_after_its_queue_left_queues(settings):
    result = tasks.add.using(queue_name="other").enqueue(1, 2)
    settings.TASKS = {"default": {**TEST_TASKS["default"], "QUEUES": ["default"]}}

    assert default_task_backend.get_result(result.id).task.queue_name == "other"


def test_async_enqueue_and_get_result():
    result = async_to_sync(tasks.async_multiply.aenqueue)(6, 7)

    found = async_to_sync(tasks.async_multiply.aget_result)(result.id)

    assert found.id == result.id and found.status == TaskResultStatus.READY
    [message] = queues.peek("tasks.default")
    assert message.body == {"task_result_id": result.id}


def test_enqueue_sends_nothing_when_validation_fails():
    with pytest.raises(InvalidTaskArguments):
        tasks.echo.enqueue(object())

    assert not TaskResultRow.objects.exists()
