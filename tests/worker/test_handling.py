"""What a worker does with messages: ack on return, retry and dead-letter on failure, atomic acks,
timeouts, lease extension, weights, NOTIFY wake-ups. Real ``mq_worker`` processes throughout."""

from __future__ import annotations

import time

import pytest
from django.db import connection

import queues
from tests.conftest import wait_for
from tests.worker.conftest import worker_row

pytestmark = pytest.mark.django_db(transaction=True)


def depth(queue: str) -> int:
    return queues.queue_stats(queue).depth


def test_handles_and_acks_every_message_and_beats(make_queue, handled, start_worker):
    make_queue("wt-record")
    ids = queues.send_batch("wt-record", [{"n": i} for i in range(300)])
    worker = start_worker("wt-record", "--concurrency", "3", "--log-interval", "0.5")
    wait_for(lambda: depth("wt-record") == 0, timeout=30)
    assert handled.count("wt-record") == 300
    assert handled.duplicates() == 0
    assert {handled.row(i)["pid"] for i in ids} == {worker.pid}
    stats = queues.queue_stats("wt-record")
    assert (stats.acked_total, stats.failed_total) == (300, 0)
    row = wait_for(lambda: (r := worker_row(worker.pid)) and r.processed == 300 and r)
    assert (row.state, row.queues, row.concurrency) == ("live", ["wt-record"], 3)
    log = worker.wait_for_log("event=stats")
    stats_line = next(line for line in log.splitlines() if "event=stats" in line)
    for key in ("processed=", "rate=", "failed=", "backlog="):
        assert key in stats_line


def test_async_handlers_run_as_tasks(make_queue, handled, start_worker):
    make_queue("wt-async", max_receives=2)
    queues.send_batch("wt-async", [{"n": i, "sleep": 0.05} for i in range(40)])
    poison = queues.send("wt-async", {"fail": True})
    start_worker("wt-async", "--concurrency", "8")
    wait_for(lambda: depth("wt-async") == 0, timeout=30)
    assert handled.count("wt-async") == 40
    [dead] = queues.peek("wt-async.dlq")
    assert (dead.id, dead.receive_count) == (poison, 2)
    assert dead.last_error.startswith(f"RuntimeError: poison message {poison}")


def test_poison_message_is_dead_lettered_while_the_rest_flows(make_queue, handled, start_worker):
    make_queue("wt-record", max_receives=3)
    poison = queues.send("wt-record", {"fail": True})
    good = queues.send_batch("wt-record", [{"n": i} for i in range(200)])
    start_worker("wt-record", "--concurrency", "2")
    wait_for(lambda: queues.queue_stats("wt-record.dlq").depth == 1, timeout=30)
    wait_for(lambda: handled.count() == 200, timeout=30)
    assert all(handled.times(i) == 1 for i in good)
    [dead] = queues.peek("wt-record.dlq")
    assert dead.id == poison and dead.receive_count == 3 and dead.origin_queue == "wt-record"
    assert dead.last_error.startswith(f"RuntimeError: poison message {poison}")
    assert "Traceback" in dead.last_error and "handlers.py" in dead.last_error
    assert [h["event"] for h in dead.history] == ["nacked", "nacked", "dead-lettered"]
    # Handlers record before the worker acks, so the last acks may still be on their way.
    wait_for(lambda: depth("wt-record") == 0)
    assert handled.count() == 200


def test_handler_retries_dead_letter_before_the_queue_limit(make_queue, start_worker):
    make_queue("wt-retries", max_receives=10)
    message = queues.send("wt-retries", {"order": 1})
    start_worker("wt-retries")
    wait_for(lambda: queues.queue_stats("wt-retries.dlq").depth == 1, timeout=30)
    [dead] = queues.peek("wt-retries.dlq")
    assert (dead.id, dead.receive_count) == (message, 2)
    assert dead.last_error.startswith("ValueError: cannot handle {'order': 1}")


def test_reject_dead_letters_at_once(make_queue, start_worker):
    make_queue("wt-reject", max_receives=5)
    queues.send("wt-reject", {"order_id": 7})
    worker = start_worker("wt-reject")
    wait_for(lambda: queues.queue_stats("wt-reject.dlq").depth == 1, timeout=30)
    [dead] = queues.peek("wt-reject.dlq")
    assert dead.receive_count == 1
    assert dead.last_error.startswith("queues.worker.errors.Reject: order 7 does not exist")
    worker.wait_for_log("event=dead_lettered", timeout=10)  # logged after the commit


def test_undecodable_body_is_dead_lettered_with_the_reason(make_queue, handled, start_worker):
    make_queue("wt-decode", max_receives=5)
    good = queues.send("wt-decode", {"order_id": 5})
    bad = queues.send("wt-decode", {"order": "five"})
    worse = queues.send("wt-decode", {"order_id": "five"})
    worker = start_worker("wt-decode")
    wait_for(lambda: queues.queue_stats("wt-decode.dlq").depth == 2, timeout=30)
    wait_for(lambda: handled.times(good) == 1)
    dead = {m.id: m for m in queues.peek("wt-decode.dlq")}
    assert set(dead) == {bad, worse}
    assert dead[bad].receive_count == 1
    assert dead[bad].last_error.startswith("cannot decode the message body: KeyError: 'order_id'")
    assert dead[worse].last_error.startswith("cannot decode the message body: TypeError: order_id must be")
    assert worker.proc.poll() is None, "a bad message must never stop the worker"


def test_handler_past_its_timeout_is_abandoned_and_its_message_retried(make_queue, handled, start_worker):
    make_queue("wt-timeout")
    message = queues.send("wt-timeout", {"n": 1})
    # One thread only: the retry can run only if a fresh thread replaced the hung one.
    worker = start_worker("wt-timeout", "--concurrency", "1")
    wait_for(lambda: handled.times(message) == 1, timeout=20)
    assert handled.row(message)["receive_count"] == 2
    wait_for(lambda: depth("wt-timeout") == 0)  # the ack follows the record
    assert queues.queue_stats("wt-timeout").failed_total == 1
    assert "event=timeout queue=wt-timeout" in worker.output()


def test_long_handler_keeps_its_lease_extended(make_queue, handled, start_worker):
    # A 7 s handler on a 3 s lease: without extension the message would be redelivered to the
    # worker's other idle threads and handled twice.
    make_queue("wt-record", visibility_timeout=3)
    message = queues.send("wt-record", {"sleep": 7})
    start_worker("wt-record", "--concurrency", "3")
    wait_for(lambda: handled.times(message) == 1, timeout=20)
    wait_for(lambda: depth("wt-record") == 0)
    assert handled.row(message)["receive_count"] == 1
    assert handled.times(message) == 1


def test_atomic_handler_commits_its_writes_with_the_ack(make_queue, handled, start_worker):
    make_queue("wt-atomic")
    ids = queues.send_batch("wt-atomic", [{"n": i} for i in range(50)])
    start_worker("wt-atomic")
    wait_for(lambda: depth("wt-atomic") == 0, timeout=30)
    assert [handled.times(i) for i in ids] == [1] * 50
    assert queues.queue_stats("wt-atomic").acked_total == 50


@pytest.mark.parametrize("how", ["expired", "redelivered"])
def test_atomic_handler_that_lost_its_lease_rolls_back(how, make_queue, handled, start_worker, wt_dir):
    make_queue("wt-atomic", visibility_timeout=60)
    message = queues.send("wt-atomic", {"gate": True})
    worker = start_worker("wt-atomic")
    wait_for(lambda: (wt_dir / f"started-{message}").exists(), timeout=20)
    # Mid-handler, the lease runs out; with "redelivered" another consumer takes the message too.
    if how == "expired":
        # Keep the worker's own idle polls from claiming it again before the refused ack is seen
        # (pausing stops claims, not acks).
        queues.pause("wt-atomic")
    with connection.cursor() as cur:
        cur.execute("UPDATE queues_message SET leased_until = now() - interval '1 second' WHERE id = %s", [message])
    other = queues.receive("wt-atomic", visibility_timeout=60) if how == "redelivered" else []
    (wt_dir / f"release-{message}").touch()
    worker.wait_for_log(f"event=lease_lost queue=wt-atomic message={message}", timeout=20)
    assert handled.times(message) == 0, "the handler's writes must roll back with the refused ack"
    [info] = queues.peek("wt-atomic")
    assert info.id == message
    if how == "redelivered":
        queues.ack(other[0].receipt)  # the new holder's lease is intact
        assert depth("wt-atomic") == 0
    assert worker.proc.poll() is None


def test_weights_share_claims_between_busy_queues(make_queue, handled, start_worker):
    make_queue("wt-a")
    make_queue("wt-b")
    queues.send_batch("wt-a", [{"sleep": 0.005} for _ in range(400)])
    queues.send_batch("wt-b", [{"sleep": 0.005} for _ in range(400)])
    start_worker("wt-a:3", "wt-b:1", "--concurrency", "1", "--prefetch", "4")
    wait_for(lambda: handled.count() >= 160, timeout=40)
    a, b = handled.count("wt-a"), handled.count("wt-b")
    assert b >= 25, f"the lighter queue starved: a={a} b={b}"
    assert 2.0 <= a / b <= 4.5, f"claims did not follow the 3:1 weights: a={a} b={b}"


def test_notify_wakes_an_idle_worker_long_before_its_next_poll(make_queue, handled, start_worker):
    make_queue("wt-record")
    start_worker("wt-record", "--poll-interval", "60")
    # Let it go idle: its poll backoff (0.1 s doubling to 60 s) is then at >= 3.2 s between polls.
    time.sleep(3.5)
    sent_at = time.monotonic()
    message = queues.send("wt-record", {"n": 1})
    wait_for(lambda: handled.times(message) == 1, timeout=10, interval=0.01)
    assert time.monotonic() - sent_at < 1.5


def test_worker_prunes_expired_messages(make_queue, handled, start_worker):
    make_queue("wt-record")
    make_queue("wt-other", retention=60)
    old = queues.send("wt-other", {"n": 1})
    fresh = queues.send("wt-other", {"n": 2})
    with connection.cursor() as cur:
        cur.execute("UPDATE queues_message SET enqueued_at = now() - interval '2 days',"
                    " available_at = now() - interval '2 days' WHERE id = %s", [old])
    worker = start_worker("wt-record", "--prune-interval", "0.5")
    worker.wait_until(lambda: [m.id for m in queues.peek("wt-other")] == [fresh], timeout=20)
    worker.wait_for_log("event=pruned expired_messages=1", timeout=10)  # logged after the commit
