"""``/metrics`` with real ``mq_worker`` processes: counters and the handler histogram only grow, across
worker restarts, and every worker's durations reach the endpoint without a scrape target of its own."""

from __future__ import annotations

import signal

import queues
from tests.conftest import wait_for
from tests.observability.conftest import Samples, value

HANDLER = "tests.worker.handlers.plain"


def _counters(s: Samples) -> dict[tuple, float]:
    """Every counter-like sample (``_total``, histogram buckets, counts and sums)."""
    return {k: v for k, v in s.items()
            if k[0].endswith(("_total", "_bucket", "_count", "_sum")) and not k[0].startswith("mqadmin_db_")}


def _assert_grew(before: Samples, after: Samples) -> None:
    old, new = _counters(before), _counters(after)
    for key, was in old.items():
        if key[0].startswith("mqadmin_worker_"):
            continue  # per-process series: a stopped worker's series ends, a new one starts
        assert key in new, f"{key} disappeared"
        assert new[key] >= was, f"{key} went from {was} to {new[key]}"


def test_counters_and_histogram_monotonic_across_worker_restarts(make_queue, handled, start_worker, scrape) -> None:
    name = make_queue("wt-record", max_receives=1)
    labels = {"queue": name, "handler": HANDLER}

    first = start_worker(name)
    for n in range(5):
        queues.send(name, {"n": n})
    queues.send(name, {"fail": True})  # max receives 1: dead-lettered on its first failure
    first.wait_until(lambda: handled.count(name) == 5)

    def histogram_count(expected: int) -> Samples | None:
        s = scrape()
        return s if value(s, "mqadmin_handler_duration_seconds_count", **labels) == expected else None

    # Written with the worker's next heartbeat (0.5 s in these tests).
    s1 = first.wait_until(lambda: histogram_count(6))
    first.wait_until(lambda: value(scrape(), "mqadmin_messages_acked_total", queue=name) == 5)
    s1 = scrape()
    assert value(s1, "mqadmin_messages_sent_total", queue=name) == 6
    assert value(s1, "mqadmin_messages_failed_total", queue=name) == 1
    assert value(s1, "mqadmin_messages_dead_lettered_total", queue=name) == 1
    assert value(s1, "mqadmin_workers_online") == 1
    assert value(s1, "mqadmin_handler_duration_seconds_bucket", le="+Inf", **labels) == 6
    worker_labels = next(dict(k[1]) for k in s1 if k[0] == "mqadmin_worker_up")
    assert value(s1, "mqadmin_worker_up", **worker_labels) == 1

    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    s2 = scrape()
    _assert_grew(s1, s2)
    assert value(s2, "mqadmin_worker_up", **worker_labels) == 0
    assert value(s2, "mqadmin_worker_processed_total", **worker_labels) == 5
    assert value(s2, "mqadmin_handler_duration_seconds_count", **labels) == 6  # the stopped row still counts

    second = start_worker(name)
    for n in range(3):
        queues.send(name, {"n": 10 + n})
    second.wait_until(lambda: handled.count(name) == 8)
    s3 = second.wait_until(lambda: histogram_count(9))
    wait_for(lambda: value(scrape(), "mqadmin_messages_acked_total", queue=name) == 8)
    s3 = scrape()
    _assert_grew(s2, s3)
    assert value(s3, "mqadmin_messages_acked_total", queue=name) == 8
    assert value(s3, "mqadmin_messages_sent_total", queue=name) == 9
    assert value(s3, "mqadmin_workers_online") == 1
    assert value(s3, "mqadmin_queue_workers_online", queue=name) == 1
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    _assert_grew(s3, scrape())


def test_pruned_worker_rows_keep_their_durations(make_queue, handled, start_worker, scrape) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from queues.metrics.durations import DurationHistogram
    from queues.models import Worker

    name = make_queue("wt-record")
    old = DurationHistogram()
    for seconds in (0.01, 0.02, 3.0):
        old.observe(name, HANDLER, seconds)
    long_ago = timezone.now() - timedelta(days=2)
    row = Worker.objects.create(name="gone:1:x", host="gone", pid=1, queues=[name], state="stopped",
                                started_at=long_ago, last_beat_at=long_ago, handler_durations=old.snapshot())
    labels = {"queue": name, "handler": HANDLER}
    assert value(scrape(), "mqadmin_handler_duration_seconds_count", **labels) == 3

    worker = start_worker(name, "--prune-interval", "0.5")
    worker.wait_until(lambda: not Worker.objects.filter(pk=row.pk).exists())
    queues.send(name, {"n": 1})
    worker.wait_until(lambda: value(scrape(), "mqadmin_handler_duration_seconds_count", **labels) == 4)
    s = scrape()
    assert value(s, "mqadmin_handler_duration_seconds_bucket", le="0.025", **labels) >= 2
    assert value(s, "mqadmin_handler_duration_seconds_sum", **labels) >= 3.03
