"""Long polling: a waiting receive wakes on LISTEN/NOTIFY within 50 ms of a send elsewhere."""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, Queue

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

import queues
from queues.engine.notify import get_listener
from tests.conftest import wait_for
from tests.engine.conftest import Thread

# serial: wake-up latency is what these measure; make test runs them alone, not beside another test process.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.serial]

TRIALS = 10
# Time for a waiting receiver to get past its first (empty) claim and into its wait.
SETTLE = 0.15


@pytest.fixture
def listening() -> None:
    assert get_listener().wait_connected(10), "the LISTEN connection did not come up"


def test_waiting_receive_wakes_within_50ms_of_a_send_from_another_connection(make_queue, listening):
    queue = make_queue()
    # Hand-offs through queues, not events: the consumer acks and is waiting again within a few ms, and
    # an event it set and cleared before this thread looked would read as a 30 s wait (it once did).
    ready: Queue[int] = Queue()
    results: Queue[tuple[float, list[int]]] = Queue()

    def consumer() -> None:
        for n in range(TRIALS):
            ready.put(n)
            # A long wait: under a loaded machine the test's own send may come seconds late, and a
            # receive that gave up first would put the two threads out of step.
            got = queues.receive(queue, wait=30)
            woke = time.perf_counter()
            for d in got:
                queues.ack(d.receipt)
            results.put((woke, [d.id for d in got]))

    thread = Thread(consumer)
    thread.start()
    latencies, ids = [], []
    for n in range(TRIALS):
        try:
            assert ready.get(timeout=40) == n
        except Empty:
            if not thread.is_alive():
                thread.outcome()  # the consumer's own error, if it died
            pytest.fail("the consumer did not come back to wait within 40 s")
        time.sleep(SETTLE)
        sent_at = time.perf_counter()
        queues.send(queue, {"n": n})  # the test's own connection, not the consumer's
        woke, got = results.get(timeout=40)
        latencies.append(woke - sent_at)
        ids.extend(got)
    thread.outcome()

    assert len(ids) == TRIALS, "a waiting receive returned empty-handed although a message came"
    median = statistics.median(latencies)
    assert median <= 0.050, f"median wake-up {median * 1000:.1f} ms; all: {[round(x * 1000) for x in latencies]}"


def test_waiting_receive_returns_empty_after_the_wait_when_nothing_comes(make_queue, listening):
    queue = make_queue()
    started = time.monotonic()
    assert queues.receive(queue, wait=1.0) == []
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.0


def test_waiting_receive_ignores_sends_to_other_queues(make_queue, listening):
    queue, other = make_queue(), make_queue()
    thread = Thread(lambda: queues.receive(queue, wait=1.0))
    thread.start()
    time.sleep(SETTLE)
    queues.send(other, "not for you")
    assert thread.outcome() == []
    assert queues.queue_stats(other).ready == 1


def test_waiting_receive_picks_up_a_delayed_message_when_it_becomes_ready(make_queue, listening):
    queue = make_queue()
    message_id = queues.send(queue, "later", delay=0.5)
    started = time.monotonic()
    got = queues.receive(queue, wait=5)
    assert [d.id for d in got] == [message_id]
    assert 0.45 <= time.monotonic() - started < 3.0


def test_acking_a_fifo_head_wakes_a_receiver_waiting_for_the_next_of_its_group(make_queue, listening):
    queue = make_queue(kind="fifo")
    latencies = []
    for n in range(5):
        head = queues.send(queue, f"{n}-1", group=f"g{n}")
        second = queues.send(queue, f"{n}-2", group=f"g{n}")
        [held] = queues.receive(queue)  # the group's head, in this (the test's) connection
        assert held.id == head
        waiter = Thread(lambda: queues.receive(queue, wait=5))
        waiter.start()
        time.sleep(SETTLE)  # the waiter found nothing (the group is blocked) and waits
        acked_at = time.perf_counter()
        queues.ack(held.receipt)
        [got] = waiter.outcome()
        latencies.append(time.perf_counter() - acked_at)
        assert got.id == second
        queues.ack(got.receipt)
    # Without a wake-up the waiter would find the next message only at its 1 s fallback poll.
    median = statistics.median(latencies)
    assert median <= 0.2, f"median wake-up {median * 1000:.1f} ms; all: {[round(x * 1000) for x in latencies]}"


async def _async_latencies(queue: str, sender: ThreadPoolExecutor) -> tuple[list[float], list[int]]:
    loop = asyncio.get_running_loop()
    latencies, ids = [], []
    for n in range(TRIALS):
        task = asyncio.create_task(queues.areceive(queue, wait=5))
        await asyncio.sleep(SETTLE)
        sent_at = time.perf_counter()
        await loop.run_in_executor(sender, queues.send, queue, {"n": n})
        got = await task
        latencies.append(time.perf_counter() - sent_at)
        ids.extend(d.id for d in got)
        for d in got:
            await queues.aack(d.receipt)
    return latencies, ids


def test_areceive_wakes_within_50ms_of_a_send_from_another_connection(make_queue, listening):
    queue = make_queue()
    with ThreadPoolExecutor(max_workers=1) as sender:  # one thread: one connection of its own
        try:
            latencies, ids = asyncio.run(_async_latencies(queue, sender))
        finally:
            sender.submit(connections.close_all).result()
            asyncio.run(sync_to_async(connections.close_all)())
    assert len(ids) == TRIALS
    median = statistics.median(latencies)
    assert median <= 0.050, f"median wake-up {median * 1000:.1f} ms; all: {[round(x * 1000) for x in latencies]}"


def test_areceive_returns_empty_after_the_wait_when_nothing_comes(make_queue, listening):
    queue = make_queue()

    async def run() -> tuple[list, float]:
        started = time.monotonic()
        try:
            return await queues.areceive(queue, wait=1.0), time.monotonic() - started
        finally:
            await sync_to_async(connections.close_all)()

    got, elapsed = asyncio.run(run())
    assert got == []
    assert 1.0 <= elapsed < 3.0


def test_areceive_does_not_miss_a_send_landing_right_after_its_first_empty_claim(make_queue, listening, monkeypatch):
    """Regression: areceive once read the wake-up count only after its first claim, so a send in
    between was noticed only by the next poll, a second later."""
    from queues.engine import aio

    queue = make_queue()
    listener = get_listener()
    real_claim = aio._claim_once
    calls = 0

    async def claim_then_send(*args):
        nonlocal calls
        queue_id, got = await real_claim(*args)
        calls += 1
        if calls == 1:
            assert got == []
            seen = listener.seq(queue_id)
            await asyncio.get_running_loop().run_in_executor(sender, queues.send, queue, "just in time")
            deadline = time.monotonic() + 5
            while listener.seq(queue_id) == seen:  # the notification has reached this process
                assert time.monotonic() < deadline, "the send's notification never arrived"
                await asyncio.sleep(0.002)
        return queue_id, got

    async def run() -> tuple[list, float]:
        started = time.perf_counter()
        try:
            return await queues.areceive(queue, wait=5), time.perf_counter() - started
        finally:
            await sync_to_async(connections.close_all)()

    monkeypatch.setattr(aio, "_claim_once", claim_then_send)
    with ThreadPoolExecutor(max_workers=1) as sender:
        try:
            got, elapsed = asyncio.run(run())
        finally:
            sender.submit(connections.close_all).result()
    assert [d.body for d in got] == ["just in time"]
    assert elapsed < 0.5, f"the wake-up was missed: areceive took {elapsed:.2f}s"


def test_receive_inside_a_transaction_does_not_wait(make_queue):
    from django.db import transaction

    queue = make_queue()
    started = time.monotonic()
    with transaction.atomic():
        assert queues.receive(queue, wait=3) == []
    assert time.monotonic() - started < 1.0, "a waiting receive held the caller's transaction open"


def test_a_settings_change_from_another_process_reaches_this_processs_cache_at_once(
    make_queue, listening, monkeypatch
):
    from queues.engine import connection as engine_connection

    queue = make_queue(max_message_size=1000)
    assert engine_connection.config(queue).max_message_size == 1000
    monkeypatch.setattr(engine_connection, "CONFIG_TTL", 3600.0)  # only the notification can refresh it

    def other_connection_changes_it() -> None:  # its own connection, behind the engine's back
        with connections["default"].cursor() as cur:
            cur.execute("UPDATE queues_queue SET max_message_size = 2000 WHERE name = %s", [queue])
        connections["default"].close()

    changer = Thread(other_connection_changes_it)
    changer.start()
    changer.outcome()
    wait_for(lambda: engine_connection.config(queue).max_message_size == 2000, timeout=5)
