"""Handlers that the worker tests run inside real ``mq_worker`` processes.

The tests hand ``MQADMIN_SETTINGS={"HANDLERS": HANDLERS}`` to the workers. Every handler records what
it did in the table ``wt_handled`` (one row per message id, ``times`` counts repeats), so tests see
effects through the database. What a handler does is driven by the message body:

- ``sleep``: seconds to sleep first; ``sleep_first``: sleep only on the first receive;
- ``fail``: raise ``RuntimeError`` (a poison message);
- ``mark``: touch ``$WT_DIR/started-<id>`` when it starts; ``gate``: also wait for ``$WT_DIR/release-<id>``.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection

import queues
from queues.worker import Reject, registry

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS wt_handled (
    id bigint PRIMARY KEY, queue text NOT NULL, times int NOT NULL DEFAULT 1, pid int NOT NULL,
    receive_count int NOT NULL, handled_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def record(message: queues.Delivery) -> None:
    """Insert the message's id into wt_handled, counting repeats."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO wt_handled (id, queue, pid, receive_count) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET times = wt_handled.times + 1, pid = EXCLUDED.pid, "
            "receive_count = EXCLUDED.receive_count",
            [message.id, message.queue, os.getpid(), message.receive_count],
        )


def _marks(message: queues.Delivery) -> None:
    body = message.body if isinstance(message.body, dict) else {}
    if body.get("mark") or body.get("gate"):
        folder = Path(os.environ["WT_DIR"])
        (folder / f"started-{message.id}").touch()
        if body.get("gate"):
            release = folder / f"release-{message.id}"
            deadline = time.monotonic() + 60
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.01)


def _behave(message: queues.Delivery) -> None:
    body: dict[str, Any] = message.body if isinstance(message.body, dict) else {}
    _marks(message)
    if body.get("sleep"):
        time.sleep(body["sleep"])
    if body.get("sleep_first") and message.receive_count == 1:
        time.sleep(body["sleep_first"])
    if body.get("fail"):
        raise RuntimeError(f"poison message {message.id}")


@queues.handler("wt-a")
@queues.handler("wt-b")
@queues.handler("wt-chaos")
@queues.handler("wt-record", backoff=0.05)
def plain(message: queues.Delivery) -> None:
    """Behave as the body says, then record."""
    _behave(message)
    record(message)


@queues.handler("wt-atomic", atomic=True)
def atomic(message: queues.Delivery) -> None:
    """Record inside the worker's transaction: the row commits with the ack or not at all."""
    _behave(message)
    record(message)


@queues.handler("wt-timeout", timeout=1.0, backoff=0.05)
def times_out_first(message: queues.Delivery) -> None:
    """Hang far past the timeout on the first receive, then succeed."""
    if message.receive_count == 1:
        time.sleep(30)
    record(message)


@queues.handler("wt-retries", retries=2, backoff=0.05)
def always_fails(message: queues.Delivery) -> None:
    """Fail every time: the handler's retries (2) dead-letter it before the queue's max receives."""
    raise ValueError(f"cannot handle {message.body!r}")


@queues.handler("wt-reject")
def rejects(message: queues.Delivery) -> None:
    """Dead-letter at once: the message can never succeed."""
    raise Reject(f"order {message.body.get('order_id')} does not exist")


def parse_order(body: Any) -> int:
    """The decode step of wt-decode: a body must be {"order_id": <int>}."""
    order_id = body["order_id"]
    if not isinstance(order_id, int):
        raise TypeError(f"order_id must be an integer, got {order_id!r}")
    return order_id


@queues.handler("wt-decode", decode=parse_order)
def decoded(message: queues.Delivery) -> None:
    """Sees the decoded body (an int)."""
    assert isinstance(message.body, int)
    record(message)


@queues.handler("wt-async", backoff=0.05)
async def async_record(message: queues.Delivery) -> None:
    """An async handler: awaits, then records through the ORM's thread."""
    body = message.body if isinstance(message.body, dict) else {}
    await asyncio.sleep(body.get("sleep", 0))
    if body.get("fail"):
        raise RuntimeError(f"poison message {message.id}")
    await sync_to_async(record)(message)


@queues.handler("wt-nul", retries=2, backoff=0.05)
def fails_with_nul(message: queues.Delivery) -> None:
    """Bodies with ``nul`` fail with a NUL and a lone surrogate in the error text; the rest record."""
    body = message.body if isinstance(message.body, dict) else {}
    if body.get("nul"):
        raise RuntimeError(f"bad byte \x00 and \ud800 in message {message.id}")
    _behave(message)
    record(message)


@queues.handler("wt-refuse", retries=2, backoff=0.05)
def fails_refusably(message: queues.Delivery) -> None:
    """Fail with a text that the test's trigger makes PostgreSQL refuse in a nack."""
    raise RuntimeError(f"refuse-me {message.id}")


@queues.handler("wt-backoff", retries=5, backoff=0.4, max_backoff=1.0)
def fails_with_backoff(message: queues.Delivery) -> None:
    """Always fail: the nacks' delays follow backoff 0.4 s doubling, capped at 1 s, with jitter."""
    raise RuntimeError(f"try again later ({message.receive_count})")


@queues.handler("wt-lease")
def watches_its_lease(message: queues.Delivery) -> None:
    """Run until the worker says the lease is lost (at most 15 s); write ``lost-<id>`` if it did."""
    folder = Path(os.environ["WT_DIR"])
    (folder / f"started-{message.id}").touch()
    deadline = time.monotonic() + 15
    while not message.lease_lost and time.monotonic() < deadline:
        time.sleep(0.02)
    if message.lease_lost:
        (folder / f"lost-{message.id}").touch()
        time.sleep(1.0)  # keep running a while after: a lost lease must stay quiet meanwhile
    (folder / f"done-{message.id}").touch()


@queues.handler("wt-cancel", backoff=0.05)
def stops_when_cancelled(message: queues.Delivery) -> None:
    """Record; with ``wait_cancel`` in the body, run until cancelled (at most 15 s), writing
    ``cancelled-<id>`` when ``check_cancelled()`` raises (and letting it propagate)."""
    record(message)
    body = message.body if isinstance(message.body, dict) else {}
    if not body.get("wait_cancel"):
        return
    folder = Path(os.environ["WT_DIR"])
    (folder / f"started-{message.id}").touch()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            message.check_cancelled()
        except queues.Cancelled:
            (folder / f"cancelled-{message.id}").touch()
            raise
        time.sleep(0.02)


@queues.handler("wt-badsig")
def takes_nothing() -> None:
    """Cannot take a message: the worker refuses to start on its queue."""


@queues.handler("wt-badatomic", atomic=True)
async def async_and_atomic(message: queues.Delivery) -> None:
    """async + atomic cannot work (a transaction cannot span awaits): refused at start."""


@queues.handler("wt-rate")
@queues.handler("wt-conc")
def limited(message: queues.Delivery) -> None:
    """The flow-limit tests' queues: behave as the body says, then record."""
    _behave(message)
    record(message)


@queues.handler("wt-retry", backoff=0.05)
def retries_later(message: queues.Delivery) -> None:
    """On the first receive ask for the next attempt in ``retry`` seconds (``queues.Retry``); then record."""
    if message.receive_count == 1:
        raise queues.Retry(delay=message.body["retry"], reason="not yet")
    record(message)


HANDLERS = {
    queue: f"{spec.func.__module__}.{spec.func.__qualname__}"
    for queue, spec in registry.all_handlers().items()
    if queue.startswith("wt-")
}
