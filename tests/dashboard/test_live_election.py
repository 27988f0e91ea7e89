"""Sampler election: however many candidates run, one samples; when it goes, another takes over.

Candidates here are ``SamplerService`` objects in this process, each with its own thread and database
session, which is all the election looks at; test_live_processes.py does the same with daphne processes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from django.db import connection

from queues.metrics.broadcaster import SamplerService
from queues.models import QueueSample

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 0.2


def _candidates(*names: str) -> tuple[list[SamplerService], dict[str, list[dict]]]:
    published: dict[str, list[dict]] = {n: [] for n in names}
    services = []
    for name in names:
        async def publish(sample: dict, name: str = name) -> None:
            published[name].append(sample)

        service = SamplerService(interval=INTERVAL, publish=publish, name=name)
        service.retry_interval = INTERVAL
        services.append(service)
    return services, published


async def _until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


def test_two_candidates_only_one_samples_and_the_other_takes_over(make_queue):
    make_queue("orders")
    services, published = _candidates("a", "b")

    async def scenario():
        for s in services:
            s.start()
        await _until(lambda: sum(len(p) for p in published.values()) >= 10)
        leaders = [s for s in services if s.leading]
        assert len(leaders) == 1
        leader = leaders[0]
        follower = next(s for s in services if s is not leader)
        assert published[follower.election.name] == []

        await leader.stop()  # resigns: the lock is free at once
        before = len(published[follower.election.name])
        await _until(lambda: len(published[follower.election.name]) >= before + 5)
        assert follower.leading
        await follower.stop()
        return leader.election.name, follower.election.name

    first, second = asyncio.run(scenario())

    assert len(published[first]) >= 10 and len(published[second]) >= 5
    rows = list(QueueSample.objects.filter(resolution=1, queue_name="orders").values_list("at", flat=True))
    # One writer at a time: every tick's time appears once per queue, and the ticks are the pushes.
    assert max(Counter(rows).values()) == 1
    pushed = {p["at"] for p in published[first] + published[second]}
    written = {r.timestamp() for r in rows}
    # A tick running in its thread when its sampler stops still commits its row, unpublished.
    assert pushed <= written and len(written - pushed) <= 2


def test_a_leader_whose_database_session_dies_steps_down(make_queue):
    make_queue("orders")
    services, published = _candidates("a", "b")

    async def scenario():
        for s in services:
            s.start()
        await _until(lambda: any(s.leading for s in services) and sum(map(len, published.values())) >= 3)
        leader = next(s for s in services if s.leading)
        other = next(s for s in services if s is not leader)
        # The server ends the leader's session (as on a network cut or a server restart): its lock goes.
        await asyncio.to_thread(_terminate, f"mqadmin sampler {leader.election.name}")
        await _until(lambda: other.leading and len(published[other.election.name]) >= 3)
        # The old leader noticed on its next tick and follows now; it does not write beside the new one.
        await _until(lambda: not leader.leading)
        n = len(published[leader.election.name])
        await asyncio.sleep(5 * INTERVAL)
        assert len(published[leader.election.name]) == n
        for s in services:
            await s.stop()

    asyncio.run(scenario())
    rows = list(QueueSample.objects.filter(resolution=1, queue_name="orders").values_list("at", flat=True))
    assert max(Counter(rows).values()) == 1


def _terminate(application_name: str) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [application_name]
        )
        assert cur.fetchall() == [(True,)]
    connection.close()  # this thread's connection must not outlive the test's loop
