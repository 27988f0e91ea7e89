"""A queue's rate limit: at most N deliveries per period across every claimer, with a burst; bad settings
refused with the value named and nothing written."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction

import queues
from queues.engine.errors import InvalidQueueSettings
from queues.engine.limits import flow_status, parse_rate
from queues.models import Queue
from tests.conftest import wait_for
from tests.engine.conftest import Thread

# The worker tests' fixtures, for the test with real worker processes.
from tests.worker.conftest import WorkerProcess, handled, scratch, worker_env, wt_dir  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.django_db(transaction=False)
@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("100/s", 100, 1),
        ("5000/min", 5000, 60),
        ("10/h", 10, 3600),
        ("1/day", 1, 86400),
        (" 7 / m ", 7, 60),
    ],
)
def test_rates_are_read_from_their_text(text, count, period):
    rate = parse_rate(text)
    assert (rate.count, rate.period) == (count, period)


BAD_RATES = [
    "0/s",
    "-1/s",
    "1e400/s",
    "5/fortnight",
    "1.5/s",
    "10",
    "/s",
    "10/",
    "1\x00/s",
    "\u0665/s",
    "\uff15/s",
    "10000001/s",
    100,
    1.5,
]


def test_a_bad_rate_is_refused_naming_it_and_nothing_changes(make_queue):
    queue = make_queue(rate_limit="10/s")
    for bad in BAD_RATES:
        with pytest.raises(InvalidQueueSettings, match="rate_limit") as caught:
            queues.update_queue(queue, rate_limit=bad, visibility_timeout=99)
        assert repr(bad) in str(caught.value) or str(bad) in str(caught.value)
    row = Queue.objects.get(name=queue)
    assert (row.rate_limit, row.rate_period) == (10, timedelta(seconds=1))
    assert row.visibility_timeout == timedelta(seconds=30)


def test_bad_burst_and_concurrency_are_refused(make_queue):
    queue = make_queue(rate_limit="10/s")
    for setting, bad in [
        ("rate_burst", 0),
        ("rate_burst", -1),
        ("rate_burst", True),
        ("rate_burst", "5"),
        ("rate_burst", 10**7),
        ("concurrency_limit", 0),
        ("concurrency_limit", 1.0),
        ("concurrency_limit", 10**5),
    ]:
        with pytest.raises(InvalidQueueSettings, match=setting):
            queues.update_queue(queue, **{setting: bad})
    row = Queue.objects.get(name=queue)
    assert (row.rate_burst, row.concurrency_limit) == (None, None)


def test_limits_are_refused_on_fifo_queues_and_burst_needs_a_rate(make_queue):
    with pytest.raises(InvalidQueueSettings, match="fifo"):
        queues.create_queue("limited-fifo", kind="fifo", rate_limit="10/s")
    assert not Queue.objects.filter(name__startswith="limited-fifo").exists(), "half-created"
    queue = make_queue()
    with pytest.raises(InvalidQueueSettings, match="rate_burst needs a rate_limit"):
        queues.update_queue(queue, rate_burst=5)


def test_the_burst_then_the_rate(make_queue):
    queue = make_queue(rate_limit="2/s", rate_burst=4)
    queues.send_batch(queue, list(range(50)))
    assert len(queues.receive(queue, max_messages=50)) == 4
    started = time.monotonic()
    assert queues.receive(queue, max_messages=50) == []
    got = wait_for(lambda: queues.receive(queue, max_messages=50), timeout=5)
    assert len(got) == 1
    assert time.monotonic() - started >= 0.4  # a token takes 500 ms to come back
    status = flow_status(Queue.objects.get(name=queue).id)
    assert status.taken == 5


def test_a_claim_that_waited_spends_only_the_tokens_left(make_queue):
    queue = make_queue(rate_limit="5/min", rate_burst=5)
    queues.send_batch(queue, list(range(20)))
    pid: list[int] = []
    started = threading.Event()

    def second_claim() -> list[queues.Delivery]:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid.append(cur.fetchone()[0])
        started.set()
        return queues.receive(queue, max_messages=20)

    with transaction.atomic():
        assert len(queues.receive(queue, max_messages=3)) == 3
        thread = Thread(second_claim)
        thread.start()
        assert started.wait(30)

        def waiting() -> bool:
            with connection.cursor() as cur:
                cur.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid[0]])
                return cur.fetchone()[0] == "Lock"

        wait_for(waiting, timeout=10)
    assert len(thread.outcome(30)) == 2


def test_per_group_each_group_key_has_its_own_bucket(make_queue):
    queue = make_queue(rate_limit="3/min", rate_burst=3, limits_per_group=True)
    queues.send_batch(queue, [queues.Outgoing(body=i, group=f"customer-{i % 3}") for i in range(30)] + [0, 1, 2, 3])
    got = queues.receive(queue, max_messages=50)
    by_group: dict[str | None, int] = {}
    for delivery in got:
        by_group[delivery.group] = by_group.get(delivery.group, 0) + 1
    assert by_group == {"customer-0": 3, "customer-1": 3, "customer-2": 3, None: 3}
    assert queues.receive(queue, max_messages=50) == []
    queues.send(queue, "new customer", group="customer-new")
    [fresh] = queues.receive(queue, max_messages=50)
    assert fresh.group == "customer-new", "a new group waits for nobody else's bucket"


@pytest.mark.slow
def test_fifty_per_second_under_four_workers_trying_to_go_faster(make_queue, worker_env, scratch, handled):  # noqa: F811
    """4 worker processes that could handle hundreds a second; 20 s past the first second hold 49-51/s."""
    queues.create_queue("wt-rate", rate_limit="50/s")
    queues.send_batch("wt-rate", [{}] * 2000)
    workers = [
        WorkerProcess(("wt-rate", "--concurrency", "8"), worker_env, scratch / f"rate-{i}.log") for i in range(4)
    ]
    try:
        for worker in workers:
            worker.started(timeout=120)  # four Django processes starting at once on a busy machine
        # Skip the first second (the bucket starts full: one second's worth), then count 20 s.
        with connection.cursor() as cur:
            cur.execute("SELECT clock_timestamp() + interval '1 second'")
            start = cur.fetchone()[0]
        time.sleep(22)  # the measured span itself: nothing to poll for
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM wt_handled WHERE queue = 'wt-rate' AND handled_at >= %s "
                "AND handled_at < %s + interval '20 seconds'",
                [start, start],
            )
            count = cur.fetchone()[0]
    finally:
        for worker in workers:
            worker.kill()
    rate = count / 20
    assert 49 <= rate <= 51, f"{rate}/s over 20 s with a limit of 50/s"


def test_idle_group_rows_are_pruned_and_come_back_full(make_queue):
    from queues import upkeep

    per_group = make_queue(rate_limit="1/h", limits_per_group=True)
    per_queue = make_queue(rate_limit="1/h")
    queues.send_batch(per_group, [queues.Outgoing(body=i, group=f"g{i}") for i in range(3)])
    assert len(queues.receive(per_group, max_messages=10)) == 3
    with connection.cursor() as cur:
        # An hour and ten minutes later, as far as the rows can tell: every bucket is full again.
        cur.execute("UPDATE queues_flow SET refilled_at = refilled_at - interval '70 minutes'")
    assert upkeep.sweep(only=["flow_groups"]).counts == {"idle_flow_groups": 3}
    assert flow_status(Queue.objects.get(name=per_queue).id) is not None, "a per-queue row is never pruned"
    queues.send(per_group, "again", group="g0")
    assert len(queues.receive(per_group, max_messages=10)) == 1
