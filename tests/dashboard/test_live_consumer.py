"""The dashboard websocket: who may open it, what it relays, and that sockets cost the database nothing.

Driven through the project's real ASGI stack (origin check, session auth, URL routing) with channels'
``WebsocketCommunicator``, on committed data (``transaction=True``): the consumers' permission checks run
in threads with their own view of the database.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from queues.consumers import CLOSE_FORBIDDEN
from queues.metrics import sampler as sampler_module
from queues.metrics.broadcaster import broadcast
from queues.metrics.sampler import Sampler

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10  # seconds; the machine is shared and slow at times


@pytest.fixture(autouse=True)
def _in_memory_layer(settings):
    """These tests are about one process: the in-memory layer, whatever REDIS_URL says (see test_live_redis)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture(autouse=True)
def _no_latest_sample(monkeypatch):
    """A process remembers the last sample it relayed (for new sockets); each test starts without one."""
    import queues.consumers

    monkeypatch.setattr(queues.consumers, "_latest", None)


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _socket(cookie: bytes | None = None, origin: bytes = b"http://127.0.0.1:8000") -> WebsocketCommunicator:
    from mqadmin.asgi import application

    headers = [(b"origin", origin), (b"host", b"127.0.0.1:8000")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)


async def _refused_with(comm: WebsocketCommunicator) -> int:
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected, "the socket is accepted first so that the browser can read the close code"
    out = await comm.receive_output(timeout=TIMEOUT)
    assert out["type"] == "websocket.close"
    await comm.disconnect(code=out["code"], timeout=TIMEOUT)
    return out["code"]


@pytest.mark.parametrize("who", ["anonymous", "staff", "inactive viewer"])
def test_socket_is_closed_with_4403_without_view_permission(who, make_user):
    if who == "anonymous":
        cookie = None
    elif who == "staff":
        cookie = _cookie(make_user(None, username="staff", staff=True))
    else:
        user = make_user("viewer", username="gone")
        user.is_active = False
        user.save()
        cookie = _cookie(user)

    assert async_to_sync(_refused_with)(_socket(cookie)) == CLOSE_FORBIDDEN


@pytest.mark.parametrize("role", ["viewer", "operator", "superuser"])
def test_users_who_may_view_receive_pushed_samples(role, make_user, make_queue):
    make_queue("orders")
    user = make_user(None, username="root", superuser=True) if role == "superuser" else make_user(role)
    sample = Sampler().tick()
    cookie = _cookie(user)

    async def scenario():
        comm = _socket(cookie)
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected
        await broadcast(sample)
        got = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect()
        return got

    got = async_to_sync(scenario)()
    assert got["type"] == "sample"
    assert got["queues"]["orders"]["ready"] == 0
    assert got["at"] == sample["at"]


def test_socket_from_another_origin_is_refused(make_user):
    cookie = _cookie(make_user("viewer"))

    async def scenario():
        comm = _socket(cookie, origin=b"http://evil.example")
        return await comm.connect(timeout=TIMEOUT)

    connected, _ = async_to_sync(scenario)()
    assert not connected


def test_socket_reads_only_and_ignores_what_the_browser_sends(make_user, make_queue):
    make_queue("orders")
    cookie = _cookie(make_user("viewer"))
    sample = Sampler().tick()

    async def scenario():
        comm = _socket(cookie)
        await comm.connect(timeout=TIMEOUT)
        await comm.send_to(text_data='{"type": "dashboard.sample", "text": "forged"}')
        await comm.send_to(text_data="not json at all")
        await comm.send_to(bytes_data=b"\x00\x01")
        assert await comm.receive_nothing(timeout=0.3)  # nothing echoed, nothing forged, not closed
        await broadcast(sample)
        got = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect()
        return got

    assert async_to_sync(scenario)()["at"] == sample["at"]


def test_new_socket_gets_the_latest_sample_at_once(make_user, make_queue):
    make_queue("orders")
    cookie = _cookie(make_user("viewer"))
    sample = Sampler().tick()

    async def scenario():
        first = _socket(cookie)
        await first.connect(timeout=TIMEOUT)
        await broadcast(sample)
        await first.receive_json_from(timeout=TIMEOUT)
        late = _socket(cookie)
        await late.connect(timeout=TIMEOUT)
        got = await late.receive_json_from(timeout=TIMEOUT)  # no new tick needed
        await first.disconnect()
        await late.disconnect()
        return got

    assert async_to_sync(scenario)()["at"] == sample["at"]


async def in_test_thread(fn):
    """Run ``fn`` on the test's own thread (and database connection), from the async_to_sync loop."""
    return await sync_to_async(fn, thread_sensitive=True)()


def _queries_per_tick(clients: int, cookie: bytes, sampler: Sampler) -> tuple[int, list[str]]:
    """Open ``clients`` sockets, then count every query of one tick + push + delivery to all of them."""

    import queues.consumers

    queues.consumers._latest = None  # no "latest sample" greeting: count what one tick brings

    async def scenario():
        socks = [_socket(cookie) for _ in range(clients)]
        for comm in socks:
            connected, _ = await comm.connect(timeout=TIMEOUT)
            assert connected
        # Consumers' database work runs on this (the test's) thread under async_to_sync, and the tick
        # is run there too: one connection sees every query of the process.
        captured = CaptureQueriesContext(connection)
        await in_test_thread(captured.__enter__)
        try:
            sample = await in_test_thread(sampler.tick)
            await broadcast(sample)
            received = await asyncio.gather(*(c.receive_json_from(timeout=TIMEOUT) for c in socks))
            assert await socks[-1].receive_nothing(timeout=0.2)
        finally:
            await in_test_thread(lambda: captured.__exit__(None, None, None))
        assert all(r["at"] == sample["at"] for r in received)
        assert len(received) == clients
        for comm in socks:
            await comm.disconnect()
        return await in_test_thread(lambda: [q["sql"] for q in captured.captured_queries])

    sqls = async_to_sync(scenario)()
    return len(sqls), sqls


@pytest.mark.slow
def test_hundred_sockets_cost_the_database_what_one_costs(make_user, make_queue, monkeypatch):
    for name in ("orders", "emails", "reports"):
        make_queue(name)
    cookie = _cookie(make_user("viewer"))
    sampler = Sampler()
    sampler.tick()  # warm up: the first tick after an election also downsamples and prunes
    # The sampler's clock-driven chores are not what a socket costs: the upkeep sweep of each new minute
    # (a measured tick that crossed one counted 36 queries) and the failures card's re-read every 10 s.
    monkeypatch.setattr(sampler_module.upkeep, "sweep", lambda: None)
    monkeypatch.setattr(sampler_module, "FAILURES_EVERY", float("inf"))

    one, one_sql = _queries_per_tick(1, cookie, sampler)
    hundred, hundred_sql = _queries_per_tick(100, cookie, sampler)

    # the engine's stats + the sampler's RECORD + the queues' health inputs (queue_health.INPUTS)
    assert one == hundred == 3, (one_sql, hundred_sql)
    assert "queues_counter" in hundred_sql[0] and "INSERT INTO queues_sample" in hundred_sql[1]
    assert "progress_since" in hundred_sql[2]


def test_sample_text_is_json_with_the_documented_fields(make_user, make_queue):
    make_queue("orders")
    sample = Sampler().tick()
    text = json.dumps(sample)
    for field in ("ready", "in_flight", "delayed", "dead", "depth", "oldest_ready_age", "rate_in", "rate_out",
                  "workers"):
        assert field in sample["queues"]["orders"] and field in sample["total"], field
    assert json.loads(text) == sample


async def _pushes_then_closes(cookie: bytes, sample: dict, change) -> tuple[dict, int]:
    """Open a socket, get one push, apply ``change`` (on committed data), push again: return the first
    push and the close code of what came after it."""
    comm = _socket(cookie)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    await broadcast(sample)
    first = await comm.receive_json_from(timeout=TIMEOUT)  # re-checked already (interval 0), still allowed
    await in_test_thread(change)
    await broadcast(sample)
    out = await comm.receive_output(timeout=TIMEOUT)
    assert out["type"] == "websocket.close", f"a sample was pushed after the user lost access: {out}"
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect(code=out["code"], timeout=TIMEOUT)
    return first, out["code"]


@pytest.mark.parametrize("how", ["permission revoked", "deactivated", "password changed", "logged out"])
def test_open_socket_is_closed_when_the_user_loses_access(how, make_user, make_queue, settings):
    from django.contrib.sessions.models import Session

    settings.MQADMIN = {"SOCKET_RECHECK_INTERVAL": 0}
    make_queue("orders")
    user = make_user("viewer")
    cookie = _cookie(user)
    sample = Sampler().tick()

    def change() -> None:
        if how == "permission revoked":
            user.groups.clear()
        elif how == "deactivated":
            user.is_active = False
            user.save()
        elif how == "password changed":
            user.set_password("changed elsewhere")
            user.save()
        else:
            Session.objects.all().delete()

    first, code = async_to_sync(_pushes_then_closes)(cookie, sample, change)
    assert first["at"] == sample["at"]
    assert code == CLOSE_FORBIDDEN


def test_socket_is_not_rechecked_before_the_interval(make_user, make_queue, settings):
    settings.MQADMIN = {"SOCKET_RECHECK_INTERVAL": 3600}
    make_queue("orders")
    user = make_user("viewer")
    cookie = _cookie(user)
    sample = Sampler().tick()

    async def scenario():
        comm = _socket(cookie)
        await comm.connect(timeout=TIMEOUT)
        await in_test_thread(user.groups.clear)
        await broadcast(sample)
        got = await comm.receive_json_from(timeout=TIMEOUT)  # no database work per push
        await comm.disconnect()
        return got

    assert async_to_sync(scenario)()["at"] == sample["at"]


def test_each_database_has_its_own_valid_dashboard_group(monkeypatch):
    from channels.layers import BaseChannelLayer

    from queues.metrics import group

    layer = BaseChannelLayer()
    seen = set()
    for name in ("mqadmin", "mq-prod.eu", "site 2", "база", "x" * 90, "site_2"):
        monkeypatch.setitem(connection.settings_dict, "NAME", name)
        g = group()
        assert layer.require_valid_group_name(g), g
        seen.add(g)
    assert len(seen) == 6  # "site 2" and "site_2" too: an unsafe name carries a digest of itself
    monkeypatch.setitem(connection.settings_dict, "NAME", "mqadmin")
    assert group() == "mq.dashboard.mqadmin"
