"""A worker tells "the database refused this statement" from "the database is down", never stalls on a
message's content, keeps quiet about a lost lease, and honours its handlers' backoff and retries.
Real ``mq_worker`` processes on the test database."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.db import connection

import queues
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_nul_in_an_error_neither_stalls_the_worker_nor_loses_the_record(make_queue, handled, start_worker):
    # One message in ten fails with a NUL and a lone surrogate in its exception text.
    make_queue("wt-nul", visibility_timeout=4, max_receives=5)
    ids = queues.send_batch("wt-nul", [{"nul": n % 10 == 0, "n": n} for n in range(40)])
    bad = [i for n, i in enumerate(ids) if n % 10 == 0]
    worker = start_worker("wt-nul", "--concurrency", "4")
    worker.wait_until(lambda: queues.queue_stats("wt-nul.dlq").depth == len(bad), timeout=20)
    worker.wait_until(lambda: queues.queue_stats("wt-nul").depth == 0, timeout=20)
    assert handled.count("wt-nul") == 36
    assert handled.duplicates() == 0, "healthy messages were handled twice"
    dead = {m.id: m for m in queues.peek("wt-nul.dlq")}
    assert set(dead) == set(bad)
    for message_id, message in dead.items():
        # The handler's retries (2) dead-letter it, not the queue's max receives (5) after five leases.
        assert message.receive_count == 2
        assert message.last_error.startswith(f"RuntimeError: bad byte \ufffd and \ufffd in message {message_id}")
    assert "event=db_unavailable" not in worker.output()


@pytest.fixture
def refusing_nacks(transactional_db):
    """A trigger that makes PostgreSQL refuse (SQLSTATE 22000, a data error) any update that records an
    error mentioning 'refuse-me': a database that refuses a statement while staying up."""
    with connection.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION wt_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.last_error LIKE '%%refuse-me%%' THEN "
            "RAISE EXCEPTION 'refused for the test' USING ERRCODE = '22000'; END IF; RETURN NEW; END $$"
        )
        cur.execute("CREATE TRIGGER wt_refuse BEFORE UPDATE ON queues_message FOR EACH ROW "
                    "EXECUTE FUNCTION wt_refuse()")
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute("DROP TRIGGER IF EXISTS wt_refuse ON queues_message")
            cur.execute("DROP FUNCTION IF EXISTS wt_refuse()")


def test_a_refused_nack_still_honours_the_handlers_retries(make_queue, refusing_nacks, start_worker):
    make_queue("wt-refuse", visibility_timeout=3, max_receives=5)
    message = queues.send("wt-refuse", {"order": 1})
    worker = start_worker("wt-refuse")
    worker.wait_until(lambda: queues.queue_stats("wt-refuse.dlq").depth == 1, timeout=20)
    [dead] = queues.peek("wt-refuse.dlq")
    assert (dead.id, dead.receive_count) == (message, 2), "dead-lettered by max receives, retries ignored"
    assert dead.last_error.startswith("[the error text could not be recorded: DataError: refused for the test")
    assert [h["event"] for h in dead.history] == ["nacked", "dead-lettered"]
    log = worker.output()
    assert "event=db_refused where=nack" in log
    assert "event=db_unavailable" not in log


def test_a_delivery_past_the_handlers_retries_is_dead_lettered_without_running(make_queue, handled, start_worker):
    # Two earlier receives whose outcome was never recorded (their consumer vanished).
    make_queue("wt-nul", max_receives=10)
    message = queues.send("wt-nul", {"n": 1})
    for _ in range(2):
        assert queues.receive("wt-nul", visibility_timeout=0.1)
        wait_for(lambda: queues.queue_stats("wt-nul").ready == 1, timeout=5)
    worker = start_worker("wt-nul")
    worker.wait_until(lambda: queues.queue_stats("wt-nul.dlq").depth == 1, timeout=20)
    [dead] = queues.peek("wt-nul.dlq")
    assert (dead.id, dead.receive_count) == (message, 3)
    assert "more than the handler's retries (2)" in dead.last_error
    assert handled.times(message) == 0


def test_a_lost_lease_is_logged_once_and_the_handler_is_told(make_queue, wt_dir, start_worker):
    make_queue("wt-lease", visibility_timeout=1)
    message = queues.send("wt-lease", {"n": 1})
    worker = start_worker("wt-lease")
    worker.wait_until(lambda: (wt_dir / f"started-{message}").exists(), timeout=20)
    # An operator deletes the message while its handler runs: the next extension finds the lease gone.
    assert queues.delete_messages("wt-lease", [message]) == 1
    worker.wait_until(lambda: (wt_dir / f"lost-{message}").exists(), timeout=10)
    worker.wait_until(lambda: (wt_dir / f"done-{message}").exists(), timeout=10)
    # The handler ran on for a second after it was told (10 extension rounds), then returned.
    lines = [line for line in worker.output().splitlines() if "event=lease_lost" in line]
    assert len(lines) == 1, lines
    assert f"message={message}" in lines[0]


def test_retry_delays_follow_the_handlers_backoff_with_jitter(make_queue, start_worker):
    make_queue("wt-backoff", max_receives=10)
    message = queues.send("wt-backoff", {"n": 1})
    start_worker("wt-backoff", "--poll-interval", "0.1")
    wait_for(lambda: queues.queue_stats("wt-backoff.dlq").depth == 1, timeout=30)
    [dead] = queues.peek("wt-backoff.dlq")
    assert dead.id == message and dead.receive_count == 5
    nacks = [h for h in dead.history if h["event"] == "nacked"]
    assert [h["receive_count"] for h in nacks] == [1, 2, 3, 4]
    ratios = []
    for entry in nacks:
        delay = (datetime.fromisoformat(entry["available_at"]) - datetime.fromisoformat(entry["at"])).total_seconds()
        # backoff 0.4 s doubling per attempt, capped at max_backoff 1 s; jitter keeps 50-100% of it.
        ceiling = min(1.0, 0.4 * 2 ** (entry["receive_count"] - 1))
        assert ceiling / 2 - 0.001 <= delay <= ceiling + 0.001, (entry, delay, ceiling)
        ratios.append(delay / ceiling)
    assert len(set(ratios)) == len(ratios), f"no jitter: {ratios}"
    # Each retry came no earlier than it was due.
    received_again = [h["at"] for h in dead.history[1:]]
    for entry, next_at in zip(nacks, received_again, strict=True):
        assert datetime.fromisoformat(next_at) >= datetime.fromisoformat(entry["available_at"])
