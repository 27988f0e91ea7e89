"""mq_prune: one run of every upkeep job (queues.upkeep): retention, dead workers, stale redrives, samples."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

import queues
from queues.models import QueueSample, Redrive, RedriveState, WorkerState
from queues.models import Worker as WorkerRow


def age(queue: str, seconds: int) -> None:
    """Make the messages of ``queue`` look ``seconds`` old (time travel for the test's setup only)."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE queues_message SET enqueued_at = enqueued_at - make_interval(secs => %(s)s), "
            "available_at = available_at - make_interval(secs => %(s)s) "
            "WHERE queue_id = (SELECT id FROM queues_queue WHERE name = %(q)s)", {"s": seconds, "q": queue})


def test_prune_removes_expired_messages_only(cmd, make_queue):
    make_queue("old", retention=60)
    make_queue("young", retention=3600)
    queues.send_batch("old", [1, 2])
    queues.send_batch("young", [3])
    age("old", 120)
    age("young", 120)
    out = cmd("mq_prune").out
    assert out.strip() == "Removed 2 expired messages, 0 expired dedup ids and 0 expired task results."
    assert queues.queue_stats("old").depth == 0
    assert queues.queue_stats("young").depth == 1


def test_prune_json(cmd, make_queue):
    make_queue("old", retention=60)
    queues.send("old", 1)
    age("old", 120)
    assert json.loads(cmd("mq_prune", "--json", "--batch", "1").out) == {
        "expired_messages": 1, "expired_dedup_ids": 0, "expired_task_results": 0, "dead_workers": 0,
        "released_leases": 0, "worker_rows": 0, "abandoned_redrives": 0, "samples_made": 0, "old_samples": 0,
        "scheduled_messages": 0, "idle_flow_groups": 0, "ttl_expired": 0}


def test_bad_batch(cmd):
    with pytest.raises(CommandError, match=r"invalid number '0': it must be at least 1"):
        cmd("mq_prune", "--batch", "0")


def silent_worker(receipts: list[str], *, state: str = WorkerState.LIVE, silent_for: timedelta) -> WorkerRow:
    """A heartbeat row whose process went quiet ``silent_for`` ago, holding ``receipts``."""
    then = timezone.now() - silent_for
    return WorkerRow.objects.create(
        name=f"gone:{len(receipts)}:{state}", host="gone", pid=1, queues=["jobs"], state=state, started_at=then,
        last_beat_at=then, in_flight=len(receipts), held_receipts=receipts,
    )


def test_prune_runs_every_upkeep_job(cmd, make_queue):
    # What only a worker (dead workers, their leases, old worker rows) or the web sampler (samples,
    # stale redrives) cleaned before: one mq_prune run handles all of it.
    make_queue("jobs", visibility_timeout=3600)  # its dead-letter queue jobs.dlq comes with it
    queues.send("jobs", {"n": 1})
    [held] = queues.receive("jobs")
    dead = silent_worker([held.receipt], silent_for=timedelta(minutes=5))
    old_row = silent_worker([], state=WorkerState.STOPPED, silent_for=timedelta(days=2))
    redrive = Redrive.objects.create(source=queues.get_queue("jobs.dlq"), state=RedriveState.RUNNING)
    Redrive.objects.filter(pk=redrive.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    QueueSample.objects.create(queue_name="jobs", at=timezone.now() - timedelta(days=40), resolution=3600)

    out = cmd("mq_prune").out

    assert out.splitlines() == [
        "Removed 0 expired messages, 0 expired dedup ids and 0 expired task results.",
        "Also: 1 dead worker (1 lease released), 1 abandoned redrive, 1 old worker row, 1 old history sample.",
    ]
    dead.refresh_from_db()
    assert dead.state == WorkerState.DEAD
    assert queues.queue_stats("jobs").ready == 1  # the dead worker's lease went back at once
    assert not WorkerRow.objects.filter(pk=old_row.pk).exists()
    redrive.refresh_from_db()
    assert redrive.state == RedriveState.FAILED and redrive.error.startswith("abandoned")
    assert not QueueSample.objects.filter(resolution=3600).exists()


def test_prune_reports_a_failing_job_after_running_the_others(cmd, make_queue, settings):
    settings.MQADMIN = {"SAMPLE_RETENTION": {60: 100}}  # no 1 s resolution: the samples job refuses it
    make_queue("old", retention=60)
    queues.send("old", 1)
    age("old", 120)
    with pytest.raises(CommandError, match=r"upkeep job\(s\) failed \(the others ran\): samples: ValueError"):
        cmd("mq_prune")
    assert queues.queue_stats("old").depth == 0
