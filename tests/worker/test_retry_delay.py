"""A handler raising ``queues.Retry(delay=...)`` chooses its next attempt: a nack with that delay, one receive."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

import queues
from queues.worker.outcomes import decide_nack
from queues.worker.registry import HandlerSpec


def test_retry_takes_seconds_or_a_timedelta_and_refuses_a_bad_delay():
    assert queues.Retry(delay=timedelta(minutes=2)).delay == 120
    assert queues.Retry(delay=5, reason="rate limited upstream").delay == 5
    for bad in (-1, float("nan"), "5", 16 * 86400, None):
        with pytest.raises(ValueError, match="delay"):
            queues.Retry(delay=bad)


def test_retry_is_a_nack_with_its_delay_unless_retries_are_used_up():
    spec = HandlerSpec("q", print, retries=3, backoff=1000)
    nack = decide_nack(spec, 1, queues.Retry(delay=7))
    assert (nack.delay, nack.dead_letter) == (7, False)
    assert "retry in 7s" in nack.error
    assert decide_nack(spec, 3, queues.Retry(delay=7)).dead_letter


@pytest.mark.django_db(transaction=True)
def test_a_worker_delays_the_message_as_the_handler_asked(make_queue, start_worker, handled):
    queues.create_queue("wt-retry")
    message_id = queues.send("wt-retry", {"retry": 600})
    worker = start_worker("wt-retry")

    def row() -> tuple | None:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT receive_count, receipt, available_at - clock_timestamp(), last_error "
                "FROM queues_message WHERE id = %s AND last_error <> ''",
                [message_id],
            )
            return cur.fetchone()

    receive_count, receipt, wait, error = worker.wait_until(row, timeout=30)
    assert receive_count == 1, "Retry consumed more than the one receive"
    assert receipt is None
    assert timedelta(seconds=590) < wait <= timedelta(seconds=600)
    assert "retry in 600s: not yet" in error
    assert handled.times(message_id) == 0
    assert "event=retry" in worker.output()
