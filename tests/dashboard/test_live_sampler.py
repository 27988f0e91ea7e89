"""The sampler: live counts -> 1 s samples + the pushed message; downsampling; pruning; settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

import queues
from queues.metrics.sampler import Sampler, retention
from queues.models import QueueSample


def _db_now():
    with connection.cursor() as cur:
        cur.execute("SELECT statement_timestamp()")
        return cur.fetchone()[0]


def test_tick_stores_one_sample_per_queue_with_the_engines_counts(make_queue):
    make_queue("orders")
    make_queue("emails")
    queues.send_batch("orders", [{"n": i} for i in range(5)])
    queues.send("orders", {"later": True}, delay=600)
    queues.receive("orders", max_messages=2)

    message = Sampler().tick()

    rows = {s.queue_name: s for s in QueueSample.objects.filter(resolution=1)}
    assert set(rows) == {"orders", "orders.dlq", "emails", "emails.dlq"}
    assert (rows["orders"].ready, rows["orders"].in_flight, rows["orders"].delayed) == (3, 2, 1)
    assert rows["orders"].sent_total == 6
    assert message["type"] == "sample"
    orders = message["queues"]["orders"]
    assert (orders["ready"], orders["in_flight"], orders["delayed"], orders["depth"]) == (3, 2, 1, 6)
    assert orders["oldest_ready_age"] is not None and orders["oldest_ready_age"] >= 0
    assert orders["state"] == "active"
    assert abs(message["at"] - rows["orders"].at.timestamp()) < 1e-3


def test_totals_count_dead_letters_once_as_the_depth_of_dead_letter_queues(make_queue):
    make_queue("a", max_receives=1, dead_letter_queue="shared.dlq")
    make_queue("b", max_receives=1, dead_letter_queue="shared.dlq")
    queues.send("a", {"x": 1})
    queues.send("b", {"x": 2})
    queues.send("b", {"x": 3})
    for name in ("a", "b"):
        for d in queues.receive(name, max_messages=10):
            queues.nack(d.receipt, error="boom")  # max_receives=1: straight to shared.dlq

    message = Sampler().tick()

    assert message["queues"]["a"]["dead"] == 3  # each source reports its dead-letter queue's depth
    assert message["queues"]["b"]["dead"] == 3
    assert message["total"]["dead"] == 3
    assert message["total"]["ready"] == 0
    assert message["total"]["depth"] == 3


def test_rates_come_from_consecutive_ticks_and_are_unknown_on_the_first(make_queue):
    make_queue("orders")
    sampler = Sampler()
    first = sampler.tick()
    assert first["queues"]["orders"]["rate_in"] is None
    assert first["total"]["rate_in"] is None

    queues.send_batch("orders", [{"n": i} for i in range(10)])
    for d in queues.receive("orders", max_messages=4):
        queues.ack(d.receipt)
    second = sampler.tick()

    dt = second["at"] - first["at"]
    assert second["queues"]["orders"]["rate_in"] == pytest.approx(10 / dt)
    assert second["queues"]["orders"]["rate_out"] == pytest.approx(4 / dt)
    assert second["total"]["rate_in"] == pytest.approx(10 / dt)


def test_a_gap_between_ticks_gives_no_rate(make_queue):
    make_queue("orders")
    sampler = Sampler()
    sampler.tick()
    queues.send("orders", {})
    # As if the process had stalled for a minute: the delta spans an unknown stretch.
    sampler._previous = {k: type(v)(v.at - 60, v.sent, v.acked, v.failed) for k, v in sampler._previous.items()}
    assert sampler.tick()["queues"]["orders"]["rate_in"] is None


def test_workers_are_counted_per_queue_and_stale_or_stopped_ones_not(make_queue, make_worker):
    make_queue("orders")
    make_queue("emails")
    make_worker(["orders", "emails"])
    make_worker(["orders"])
    make_worker(["orders"], beat_ago=3600)  # silent for an hour
    make_worker(["orders"], state="stopped")

    message = Sampler().tick()

    assert message["total"]["workers"] == 2
    assert message["queues"]["orders"]["workers"] == 2
    assert message["queues"]["emails"]["workers"] == 1
    assert message["queues"]["emails.dlq"]["workers"] == 0


def _seed(queue: str, start, seconds: int, *, resolution: int = 1, step: int = 1, **fixed) -> None:
    QueueSample.objects.bulk_create(
        QueueSample(queue_name=queue, at=start + timedelta(seconds=i), resolution=resolution,
                    ready=fixed.get("ready", i), sent_total=100 + i, acked_total=i, failed_total=0,
                    oldest_ready_age=float(i))
        for i in range(0, seconds, step)
    )


def test_maintain_downsamples_complete_minutes_only_and_is_idempotent(db):
    now = _db_now()
    minute = now.replace(second=0, microsecond=0)
    start = minute - timedelta(minutes=3)
    _seed("orders", start, 3 * 60 + int((now - minute).total_seconds()))  # up to now, last minute partial

    done = Sampler().maintain(now)

    rows = list(QueueSample.objects.filter(resolution=60).order_by("at"))
    assert done["made_60"] == 3
    assert [r.at for r in rows] == [start, start + timedelta(minutes=1), start + timedelta(minutes=2)]
    first = rows[0]
    assert first.ready == 30  # average of 0..59, rounded half away from zero (29.5 -> 30)
    assert first.sent_total == 159 and first.acked_total == 59  # counters keep their last value
    assert first.oldest_ready_age == 59.0  # the worst age of the minute
    assert Sampler().maintain(now)["made_60"] == 0
    assert QueueSample.objects.filter(resolution=60).count() == 3


def test_maintain_builds_hours_from_minutes(db):
    now = _db_now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    _seed("orders", hour - timedelta(hours=2), 2 * 3600, resolution=60, step=60, ready=7)

    done = Sampler().maintain(now)

    assert done["made_3600"] == 2
    hours = list(QueueSample.objects.filter(resolution=3600).order_by("at"))
    assert [h.at for h in hours] == [hour - timedelta(hours=2), hour - timedelta(hours=1)]
    assert hours[0].ready == 7
    assert hours[1].sent_total == 100 + 2 * 3600 - 60


def test_maintain_prunes_each_resolution_by_its_retention(db):
    now = _db_now()
    QueueSample.objects.bulk_create([
        QueueSample(queue_name="q", at=now - timedelta(seconds=200), resolution=1),
        QueueSample(queue_name="q", at=now - timedelta(seconds=50), resolution=1),
        QueueSample(queue_name="q", at=now - timedelta(seconds=5000), resolution=60),
        QueueSample(queue_name="q", at=now - timedelta(seconds=500), resolution=60),
    ])
    with override_settings(MQADMIN={"SAMPLE_RETENTION": {1: 100, 60: 1000}}):
        done = Sampler().maintain(now)
    assert done["pruned_1"] == 1 and done["pruned_60"] == 1
    kept = sorted((s.resolution, round((now - s.at).total_seconds())) for s in QueueSample.objects.all())
    assert (1, 50) in kept and (60, 500) in kept
    assert (1, 200) not in kept and (60, 5000) not in kept


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({60: 100}, "must keep the 1 s samples"),
        ({1: 100, 90: 10, 120: 10}, "120 is not a multiple of 90"),
        ({1: 0}, "seconds > 0"),
        ({1: 100, "60": 100}, "resolution '60'"),
        ([1, 2], "must be a dict"),
    ],
)
def test_bad_retention_setting_is_named(value, words, settings):
    settings.MQADMIN = {"SAMPLE_RETENTION": value}
    with pytest.raises(ValueError, match=words):
        retention()


def test_tick_maintains_once_a_minute(make_queue):
    make_queue("orders")
    old = timezone.now() - timedelta(days=40)
    QueueSample.objects.create(queue_name="orders", at=old, resolution=3600)
    sampler = Sampler()
    sampler.tick()  # first tick after an election maintains at once
    assert not QueueSample.objects.filter(at=old).exists()


def test_a_tick_pushes_live_workers_running_redrives_and_the_last_hours_failures(make_queue, make_worker):
    from queues.models import Queue, Redrive

    make_queue("orders", max_receives=1)
    queues.send("orders", {"n": 1})
    [delivery] = queues.receive("orders")
    queues.nack(delivery.receipt, error="boom")
    live = make_worker(["orders"], processed=7, failed=1, in_flight=2)
    make_worker(["orders"], state="stopped", beat_ago=60)
    dlq = Queue.objects.get(name="orders.dlq")
    running = Redrive.objects.create(source=dlq, moved=6, total=20)
    now = timezone.now()
    just_ended = Redrive.objects.create(source=dlq, state="finished", moved=3, total=3, finished_at=now)
    Redrive.objects.create(source=dlq, state="finished", moved=1, total=1, finished_at=now - timedelta(hours=1))
    sampler = Sampler()
    sampler.tick()  # the first sample is the last hour's baseline

    message = sampler.tick()

    [worker] = message["workers"]
    assert (worker["name"], worker["processed"], worker["failed"], worker["in_flight"]) == (live.name, 7, 1, 2)
    assert worker["last_beat_at"] == pytest.approx(live.last_beat_at.timestamp())
    assert [(r["id"], r["state"], r["moved"], r["total"]) for r in message["redrives"]] == [
        (running.pk, "running", 6, 20), (just_ended.pk, "finished", 3, 3)]
    assert message["total"]["failed_last_hour"] == 0
    assert message["total"]["redrives_running"] == 1
