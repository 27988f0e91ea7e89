"""Cancelled tasks read FAILED (django.tasks has no CANCELLED status) with the reason as their error."""

from __future__ import annotations

import pytest
from django.tasks import TaskResultStatus

import queues
from queues.engine.cancel import cancel
from queues.tasks import run_task_message
from tests.tasks import tasks
from tests.tasks.conftest import deliver

pytestmark = pytest.mark.django_db


def test_a_cancelled_waiting_task_never_runs_and_reads_failed(signals):
    result = tasks.add.enqueue(1, 2)
    [info] = queues.peek("tasks.default")
    assert cancel("tasks.default", [info.id]).cancelled == [info.id]
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "queues.tasks.TaskLost"
    assert "cancelled by an operator" in result.errors[-1].traceback


def test_a_running_task_that_fails_after_a_cancel_request_is_failed_for_good(signals):
    result = tasks.always_fails.enqueue("boom")
    delivery = deliver()
    cancel("tasks.default", [delivery.id])
    with pytest.raises(queues.Cancelled):
        delivery.check_cancelled()  # what the worker's look does for its handlers
    with pytest.raises(queues.Cancelled, match="cancelled by an operator while running"):
        run_task_message(delivery)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "queues.engine.errors.Cancelled"
