"""Which commits wait for the WAL flush (``ASYNC_COMMIT_LEASES``): sends always; leases, acks, nacks,
extends and releases only inside the caller's transaction, or with the setting off. What a server
crash then does is proven in ``test_server_crash.py``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction

import queues
from queues.engine import sql

pytestmark = pytest.mark.django_db(transaction=True)

_SWITCH = "set_config('synchronous_commit', 'off', true)"


@contextmanager
def commit_modes() -> Iterator[list[tuple[str, bool | None]]]:
    """Each statement the engine runs meanwhile: (its first words, its async_commit parameter or None)."""
    seen: list[tuple[str, bool | None]] = []

    def record(execute, query, params, many, context):
        if _SWITCH in query:
            seen.append((" ".join(query.split()[:3]), params["async_commit"]))
        elif "INSERT INTO queues_message" in query:
            seen.append(("send", None))
        return execute(query, params, many, context)

    with connection.execute_wrapper(record):
        yield seen


def _every_lease_change(queue: str) -> None:
    """Send, then receive, extend, nack, receive again, release, receive again and ack."""
    queues.send(queue, "a")
    queues.send_batch(queue, ["b"])
    first = queues.receive(queue, max_messages=2)
    queues.extend(first[0].receipt, visibility_timeout=60)
    queues.nack(first[0].receipt)
    queues.release_batch([first[1].receipt])
    again = queues.receive(queue, max_messages=2)
    queues.ack_batch([d.receipt for d in again])
    assert queues.queue_stats(queue).depth == 0


def test_leases_and_acks_outside_a_transaction_commit_without_waiting_for_the_flush(make_queue):
    queue = make_queue()
    with commit_modes() as seen:
        _every_lease_change(queue)
    # 2 sends, then receive, extend, nack, release, receive, ack.
    assert [mode for _, mode in seen] == [None, None, True, True, True, True, True, True]
    with connection.cursor() as cur:
        cur.execute("SHOW synchronous_commit")
        assert cur.fetchone() == ("on",)  # the connection's own setting is untouched


def test_an_ack_inside_the_callers_transaction_waits_for_the_flush_with_its_writes(make_queue):
    # What an atomic=True handler does: its writes and its ack commit together, durably.
    queue = make_queue()
    queues.send(queue, "a")
    with commit_modes() as seen, transaction.atomic():
        [delivery] = queues.receive(queue)
        queues.ack(delivery.receipt)
        with connection.cursor() as cur:
            cur.execute("SHOW synchronous_commit")
            assert cur.fetchone() == ("on",)
    assert [mode for _, mode in seen] == [False, False]
    assert queues.queue_stats(queue).depth == 0


def test_without_autocommit_every_commit_waits_for_the_flush(make_queue):
    queue = make_queue()
    queues.send(queue, "a")
    transaction.set_autocommit(False)
    try:
        with commit_modes() as seen:
            [delivery] = queues.receive(queue)
            queues.ack(delivery.receipt)
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    assert [mode for _, mode in seen] == [False, False]


def test_with_the_setting_off_every_commit_waits_for_the_flush(make_queue, settings):
    settings.MQADMIN = {"ASYNC_COMMIT_LEASES": False}
    queue = make_queue()
    with commit_modes() as seen:
        _every_lease_change(queue)
    assert [mode for _, mode in seen] == [None, None, False, False, False, False, False, False]


@pytest.mark.parametrize(
    "name", ["RECEIVE_STANDARD", "RECEIVE_FIFO_FIRST", "ACK", "NACK", "EXTEND", "RELEASE"]
)
@pytest.mark.parametrize("async_commit", [True, False])
def test_the_statement_switches_the_flush_off_for_its_own_transaction_only(make_queue, name, async_commit):
    kind = "fifo" if name.startswith("RECEIVE_FIFO") else "standard"
    queue = make_queue(kind=kind)
    queues.send(queue, "a", group="g" if kind == "fifo" else None)
    [delivery] = queues.receive(queue, visibility_timeout=60) if not name.startswith("RECEIVE") else [None]
    message_id, token = queues.parse_receipt(delivery.receipt) if delivery else (0, None)
    params = {
        "queue_id": queues.get_queue(queue).id, "limit": 1, "vt": None, "after": None, "floor": 0, "max_groups": 10,
        "ids": [message_id], "held": f'{{"{message_id}": ["{token.hex if token else ""}"]}}', "delay": 0,
        "dead_letter": False,
        "error": "", "seconds": 30, "refund": False, "async_commit": async_commit,
    }
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SHOW synchronous_commit")
        assert cur.fetchone() == ("on",)
        cur.execute(getattr(sql, name), params)
        assert len(cur.fetchall()) == 1  # it changed a message
        cur.execute("SHOW synchronous_commit")
        assert cur.fetchone() == ("off" if async_commit else "on",)
    with connection.cursor() as cur:
        cur.execute("SHOW synchronous_commit")
        assert cur.fetchone() == ("on",)
