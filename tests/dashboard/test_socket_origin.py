"""The dashboard socket opens only from the dashboard's own origin (scheme, host and port) or a trusted one.

Through the project's ASGI application, like a browser's handshake: an origin that differs from the
page only in port or scheme is another site, and the session cookie it carries must not open the socket.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from queues.origin import SameOriginValidator

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10


@pytest.fixture(autouse=True)
def _in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def cookie(make_user) -> bytes:
    client = Client()
    client.force_login(make_user("viewer"))
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _opens(cookie: bytes, origin: bytes | None, *, host: bytes = b"127.0.0.1:8000", scheme: str = "ws",
           extra: list[tuple[bytes, bytes]] | None = None) -> bool:
    from mqadmin.asgi import application

    headers = [(b"host", host), (b"cookie", cookie), *(extra or [])]
    if origin is not None:
        headers.append((b"origin", origin))

    async def scenario() -> bool:
        comm = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)
        comm.scope["scheme"] = scheme
        connected, _ = await comm.connect(timeout=TIMEOUT)
        if connected:
            await comm.disconnect()
        return connected

    return async_to_sync(scenario)()


def test_socket_opens_from_its_own_origin(cookie):
    assert _opens(cookie, b"http://127.0.0.1:8000")


@pytest.mark.parametrize("origin", [
    b"http://127.0.0.1:9999",    # another port of the same host: another site
    b"https://127.0.0.1:8000",   # another scheme
    b"http://127.0.0.1",         # the default port is 80, not 8000
    b"http://localhost:8000",    # an allowed host, but not the one the request went to
    b"null",                     # sandboxed frames, file: pages
    b"ftp://127.0.0.1:8000",
    b"http://127.0.0.1:notaport",
])
def test_socket_from_another_origin_that_differs_only_in_port_or_scheme_is_refused(cookie, origin):
    assert not _opens(cookie, origin)


def test_socket_without_an_origin_is_refused(cookie):
    assert not _opens(cookie, None)


def test_host_outside_allowed_hosts_is_refused_even_with_a_matching_origin(cookie):
    assert not _opens(cookie, b"http://rebound.example:8000", host=b"rebound.example:8000")


@pytest.mark.parametrize("trusted, origin", [
    ("http://127.0.0.1:9999", b"http://127.0.0.1:9999"),
    ("https://*.example.com", b"https://ops.example.com"),
])
def test_csrf_trusted_origins_may_open_the_socket(cookie, settings, trusted, origin):
    settings.CSRF_TRUSTED_ORIGINS = [trusted]
    assert _opens(cookie, origin)


def test_wildcard_trust_keeps_its_scheme(cookie, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    assert not _opens(cookie, b"http://ops.example.com")


def test_behind_a_tls_proxy_the_forwarded_scheme_counts(cookie, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proto = [(b"x-forwarded-proto", b"https")]
    assert _opens(cookie, b"https://127.0.0.1:8000", host=b"127.0.0.1:8000", extra=proto)
    assert not _opens(cookie, b"http://127.0.0.1:8000", host=b"127.0.0.1:8000", extra=proto)


def test_wss_scheme_is_https(cookie):
    assert _opens(cookie, b"https://127.0.0.1:8000", scheme="wss")
    assert not _opens(cookie, b"http://127.0.0.1:8000", scheme="wss")


def test_validator_passes_other_connection_types_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    async_to_sync(SameOriginValidator(app))({"type": "http", "headers": []}, None, None)
    assert seen == ["http"]


@pytest.mark.slow
def test_real_daphne_refuses_a_foreign_port_and_serves_its_own_origin(subprocess_env, make_user, make_queue):
    """The same rule on a real server, through a real WebSocket client, as a browser would connect."""
    import asyncio

    from websockets.exceptions import InvalidStatus

    from tests.browser.servers import Daphne, WSClient

    make_queue("orders")
    client = Client()
    client.force_login(make_user("viewer", username="wsviewer"))
    session = f"sessionid={client.cookies['sessionid'].value}"
    web = Daphne(subprocess_env).start()
    url = web.url.replace("http", "ws") + "/ws/dashboard/"

    async def scenario() -> tuple[int, dict]:
        try:
            await WSClient().connect(url, cookie=session, origin=f"http://127.0.0.1:{web.port + 1}")
        except InvalidStatus as exc:
            refused = exc.response.status_code
        else:
            refused = 101
        ws = await WSClient().connect(url, cookie=session)  # the page's own origin
        sample = await ws.next_sample(timeout=20)
        await ws.close()
        return refused, sample

    try:
        refused, sample = asyncio.run(scenario())
    finally:
        web.stop()
        web.discard_log()
    assert refused == 403
    assert sample["type"] == "sample"
