"""queues.worker.outcomes: what a failed attempt means for its message. Pure: no database, no worker."""

from __future__ import annotations

import pytest

from queues.worker import Reject
from queues.worker.config import WorkerConfig, parse_queue_weight
from queues.worker.errors import WorkerConfigError
from queues.worker.outcomes import (
    ERROR_MAX_CHARS,
    RetriesUsedUp,
    decide_nack,
    describe_error,
    past_retries,
    retry_delay,
    timeout_error,
)
from queues.worker.registry import HandlerSpec


def handler(message: object) -> None:
    """A handler for the specs below."""


def spec(**options: object) -> HandlerSpec:
    return HandlerSpec(queue="orders", func=handler, **options)


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as a handler's failure has one."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_a_failure_is_retried_after_a_backoff_that_doubles_with_jitter():
    backoff = spec(backoff=2.0, max_backoff=300.0)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 300.0)]:
        delays = [retry_delay(backoff, attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
    nack = decide_nack(backoff, 1, raised(RuntimeError("down")))
    assert not nack.dead_letter and 1.0 <= nack.delay <= 2.0
    assert nack.error.startswith("RuntimeError: down\n") and "Traceback" in nack.error


def test_reject_and_used_up_retries_dead_letter_at_once():
    assert decide_nack(spec(), 1, Reject("no such order")).dead_letter
    last = decide_nack(spec(retries=3), 3, ValueError("still bad"))
    assert last.dead_letter and last.delay == 0.0
    assert not decide_nack(spec(retries=3), 2, ValueError("bad")).dead_letter


def test_the_caller_can_dead_letter_with_a_reason():
    nack = decide_nack(spec(), 1, ValueError("not json"), reason="cannot decode the message body", dead_letter=True)
    assert nack.dead_letter and nack.error.startswith("cannot decode the message body: ValueError: not json")


def test_a_delivery_past_its_handlers_retries_is_not_run_again():
    assert past_retries(spec(), 99) is None
    assert past_retries(spec(retries=3), 3) is None
    error = past_retries(spec(retries=3), 4)
    assert isinstance(error, RetriesUsedUp)
    assert describe_error(error).startswith(
        "queues.worker.outcomes.RetriesUsedUp: received 4 times, more than the handler's retries (3)"
    )


def test_error_text_is_bounded_and_safe_to_store():
    huge = describe_error(raised(RuntimeError("x" * 50_000)))
    assert len(huge) <= ERROR_MAX_CHARS and "[... traceback trimmed ...]" in huge
    assert "\x00" not in describe_error(RuntimeError("nul \x00 and a lone \ud800 surrogate"))
    assert describe_error(raised(KeyError("k"))).startswith("KeyError: 'k'\nTraceback")


def test_timeout_error_names_the_handler_and_its_timeout():
    assert str(timeout_error(spec(timeout=2.5))) == (
        f"handler {spec().name} ran longer than its timeout of 2.5s and was abandoned"
    )


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"queues": []}, "name at least one queue"),
        ({"queues": [("a", 1), ("a", 2)]}, "queue 'a' is named twice"),
        ({"queues": [("a", 1)], "concurrency": 0}, "concurrency must be at least 1"),
        ({"queues": [("a", 1)], "prefetch": True}, "prefetch must be a whole number"),
        ({"queues": [("a", 1)], "visibility_timeout": float("nan")}, "visibility timeout must be a number"),
    ],
)
def test_bad_worker_options_say_what_to_fix(options, words):
    with pytest.raises(WorkerConfigError, match=words):
        WorkerConfig(**options)


def test_queue_weights_parse():
    assert parse_queue_weight("orders") == ("orders", 1)
    assert parse_queue_weight("orders:3") == ("orders", 3)
    with pytest.raises(WorkerConfigError, match="the weight must be from 1 to 1000"):
        parse_queue_weight("orders:0")
