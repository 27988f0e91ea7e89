"""Finished task results are deleted after the backend's RESULT_RETENTION; nothing else is."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone

from queues.models import TaskResult as TaskResultRow
from queues.tasks import prune_results
from tests.tasks import tasks
from tests.tasks.conftest import TEST_TASKS, deliver, run_like_a_worker

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


def finished(*, days_ago: float, ok: bool = True) -> Any:
    """A task result that ran through the executor, made to look finished ``days_ago`` days ago."""
    result = (tasks.add.enqueue(1, 2) if ok else tasks.always_fails.enqueue("boom"))
    while run_like_a_worker(deliver()) == "nacked":  # the failing task: until its attempts are used up
        pass
    when = timezone.now() - timedelta(days=days_ago)
    TaskResultRow.objects.filter(id=result.id).update(finished_at=when)
    return result


def stuck(status: TaskResultStatus, *, days_ago: float) -> uuid.UUID:
    """A result row still READY or RUNNING after ``days_ago`` days (a task that never finished)."""
    row = TaskResultRow.objects.create(
        id=uuid.uuid4(), task_path="tests.tasks.tasks.add", queue_name="default", status=status.value,
        enqueued_at=timezone.now() - timedelta(days=days_ago),
    )
    return row.id


def exists(result_id: Any) -> bool:
    return TaskResultRow.objects.filter(id=result_id).exists()


def with_retention(settings: Any, retention: Any) -> None:
    configured = copy.deepcopy(TEST_TASKS)
    configured["default"]["OPTIONS"]["RESULT_RETENTION"] = retention
    settings.TASKS = configured


def test_finished_results_past_the_default_week_are_deleted_and_nothing_else():
    old_ok, old_failed = finished(days_ago=8), finished(days_ago=8, ok=False)
    recent = finished(days_ago=6)
    waiting, running = stuck(TaskResultStatus.READY, days_ago=30), stuck(TaskResultStatus.RUNNING, days_ago=30)
    assert TaskResultRow.objects.get(id=old_failed.id).status == TaskResultStatus.FAILED

    assert prune_results() == 2

    assert not exists(old_ok.id) and not exists(old_failed.id)
    assert exists(recent.id) and exists(waiting) and exists(running)
    with pytest.raises(TaskResultDoesNotExist):
        old_ok.refresh()
    recent.refresh()
    assert recent.status == TaskResultStatus.SUCCESSFUL and recent.return_value == 3
    assert prune_results() == 0


def test_retention_is_set_per_backend(settings):
    with_retention(settings, 3600)
    hours_old = finished(days_ago=2 / 24)
    fresh = finished(days_ago=0)
    assert prune_results(batch=1) == 1
    assert not exists(hours_old.id) and exists(fresh.id)


def test_retention_none_keeps_every_result(settings):
    with_retention(settings, None)
    ancient = finished(days_ago=365)
    assert prune_results() == 0
    assert exists(ancient.id)


def test_small_batches_remove_everything_expired():
    ids = [finished(days_ago=10).id for _ in range(5)]
    assert prune_results(batch=2) == 5
    assert not any(exists(i) for i in ids)


@pytest.mark.parametrize("batch", [0, -1, 1.5, True])
def test_bad_batch_is_refused_and_deletes_nothing(batch):
    old = finished(days_ago=10)
    with pytest.raises(ValueError, match=f"batch must be a positive integer, got {batch!r}"):
        prune_results(batch=batch)
    assert exists(old.id)


def test_mq_prune_reports_expired_task_results(capsys):
    old = finished(days_ago=10)
    call_command("mq_prune")
    assert capsys.readouterr().out.strip() == (
        "Removed 0 expired messages, 0 expired dedup ids and 1 expired task results."
    )
    assert not exists(old.id)
