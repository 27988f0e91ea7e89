"""Several web processes: with REDIS_URL, channels-redis carries each sample to every process's sockets.

Real daphne processes and a real Redis (127.0.0.1:6379, or REDIS_URL). Skipped, saying so, only when
no Redis answers.
"""

from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import urlsplit

import pytest
from django.test import Client

from queues.metrics.broadcaster import broadcast
from tests.browser.servers import Daphne, WSClient
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_url() -> str:
    parts = urlsplit(REDIS_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3).close()
    except OSError as exc:
        pytest.skip(f"REDIS NOT REACHABLE at {REDIS_URL} ({exc}): the multi-process channel layer is NOT tested")
    return REDIS_URL


@pytest.fixture
def viewer_cookie(make_user) -> str:
    client = Client()
    client.force_login(make_user("viewer"))
    return f"sessionid={client.cookies['sessionid'].value}"


@pytest.fixture
def servers(subprocess_env, redis_url):
    started: list[Daphne] = []

    def start(**overrides) -> Daphne:
        server = Daphne(subprocess_env, overrides=overrides, extra_env={"REDIS_URL": redis_url})
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()
        server.discard_log()


def test_group_send_from_one_process_reaches_a_socket_of_another(servers, viewer_cookie, redis_url, make_queue):
    make_queue("orders")
    web = servers(SAMPLER_ENABLED=False)  # nobody samples: the only pushes are ours
    from channels_redis.core import RedisChannelLayer

    async def scenario():
        client = await WSClient().connect(web.url.replace("http", "ws") + "/ws/dashboard/", cookie=viewer_cookie)
        layer = RedisChannelLayer(hosts=[redis_url])
        sample = {"type": "sample", "at": 123.5, "interval": 1.0, "queues": {"orders": {"ready": 42}},
                  "total": {"ready": 42}}
        await broadcast(sample, layer=layer)
        got = await client.next_sample(timeout=15)
        await client.close()
        await layer.close_pools()
        return got

    got = asyncio.run(scenario())
    assert got["at"] == 123.5 and got["queues"]["orders"]["ready"] == 42


def test_a_sample_of_another_database_sharing_the_redis_never_reaches_this_dashboard(
    servers, viewer_cookie, redis_url, make_queue, monkeypatch
):
    # Two sites on one Redis (staging and production, or the two processes of make test's second pass).
    make_queue("orders")
    web = servers(SAMPLER_ENABLED=False)
    from channels_redis.core import RedisChannelLayer
    from django.db import connection

    def sample(at: float) -> dict:
        return {"type": "sample", "at": at, "interval": 1.0, "queues": {"orders": {"ready": int(at)}}, "total": {}}

    async def scenario():
        client = await WSClient().connect(web.url.replace("http", "ws") + "/ws/dashboard/", cookie=viewer_cookie)
        layer = RedisChannelLayer(hosts=[redis_url])
        with monkeypatch.context() as m:
            m.setitem(connection.settings_dict, "NAME", "another_site")
            await broadcast(sample(1.0), layer=layer)  # the other site's sampler
        await broadcast(sample(2.0), layer=layer)  # this database's
        got = await client.next_sample(timeout=15)
        await client.close()
        await layer.close_pools()
        return got

    assert asyncio.run(scenario())["at"] == 2.0


def test_two_web_processes_one_sampler_every_socket_gets_every_sample(servers, viewer_cookie, make_queue):
    make_queue("orders")
    first = servers()
    second = servers()

    async def scenario():
        clients = [
            await WSClient().connect(server.url.replace("http", "ws") + "/ws/dashboard/", cookie=viewer_cookie)
            for server in (first, second)
        ]
        # Both sockets see the same ticks, although only one of the processes samples.
        a = [await clients[0].next_sample(timeout=20) for _ in range(3)]
        b_ats = set()
        while a[-1]["at"] not in b_ats:
            b_ats.add((await clients[1].next_sample(timeout=20))["at"])
        for c in clients:
            await c.close()
        return a, b_ats

    a, b_ats = asyncio.run(scenario())
    assert a[-1]["at"] in b_ats
    from django.db import connection

    def leaders() -> list[str]:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE 'mqadmin sampler %%'"
            )
            return [r[0] for r in cur.fetchall()]

    assert wait_for(lambda: len(leaders()) == 1)
    assert leaders()[0].endswith((f":{first.pid}", f":{second.pid}"))
