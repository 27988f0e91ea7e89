"""The sampler in real processes: daphne samples, other commands never do; a killed leader is replaced."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest
from django.db import connection
from django.test import Client

from queues.metrics import broadcaster
from queues.models import QueueSample
from tests.browser.servers import Daphne, WSClient
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _leaders() -> list[str]:
    """application_name of the sessions holding the sampler lock on the test database."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'mqadmin sampler %%'"
        )
        return [r[0] for r in cur.fetchall()]


@pytest.fixture
def servers(subprocess_env):
    started: list[Daphne] = []

    def start(**overrides) -> Daphne:
        server = Daphne(subprocess_env, overrides=overrides)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()
        server.discard_log()


def test_neither_tests_nor_management_commands_start_the_sampler(run_manage, make_queue):
    make_queue("orders")
    assert broadcaster.current() is None  # this very process (pytest) imports daphne but never samples
    result = run_manage("shell", "-c", "import time; time.sleep(3)")
    assert result.returncode == 0, result.stderr
    assert not QueueSample.objects.exists()
    assert _leaders() == []


def test_daphne_samples_once_a_second_and_pushes_to_its_sockets(servers, make_queue, make_user):
    make_queue("orders")
    client = Client()
    client.force_login(make_user("viewer"))
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    web = servers()

    async def scenario():
        ws = await WSClient().connect(web.url.replace("http", "ws") + "/ws/dashboard/", cookie=cookie)
        samples = [await ws.next_sample(timeout=20) for _ in range(3)]
        await ws.close()
        return samples

    samples = asyncio.run(scenario())
    gaps = [b["at"] - a["at"] for a, b in pairwise(samples)]
    # Ticks keep a fixed schedule, so a late tick (the first pays for its connection) shortens the next gap.
    assert all(0.2 < g < 3 for g in gaps), gaps
    assert samples[-1]["queues"]["orders"]["rate_in"] == 0.0
    assert QueueSample.objects.filter(queue_name="orders", resolution=1).count() >= 3


def test_killed_leader_is_replaced_by_another_web_process(servers, make_queue):
    make_queue("orders")
    first, second = servers(), servers()
    by_pid = {first.pid: first, second.pid: second}
    [leader_name] = wait_for(lambda: _leaders() or None, timeout=30)
    leader = by_pid[int(leader_name.rsplit(":", 1)[1])]
    other = second if leader is first else first

    leader.kill()  # SIGKILL: no resign, no cleanup; PostgreSQL ends the session and the lock with it

    wait_for(lambda: _leaders() == [f"mqadmin sampler {_name_of(other)}"], timeout=30)
    count = QueueSample.objects.filter(queue_name="orders").count()
    wait_for(lambda: QueueSample.objects.filter(queue_name="orders").count() >= count + 2, timeout=15)


def _name_of(server: Daphne) -> str:
    import socket

    return f"{socket.gethostname()}:{server.pid}"
