"""The dashboard follows its mount: any URL prefix, a proxy's SCRIPT_NAME, a host without admin or logout."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import clear_url_caches, set_script_prefix

from queues.routing import build_websocket_urlpatterns, dashboard_websocket_path

PAGES = ["", "queues/", "messages/", "workers/", "audit/"]


@pytest.fixture
def mounted(settings):
    """The host's URLconf of tests/hostsite: mqadmin under /ops/queues/."""
    settings.ROOT_URLCONF = "tests.hostsite.urls"
    settings.LOGIN_URL = "host-login"
    clear_url_caches()
    yield
    clear_url_caches()


def _urls_in(html: str) -> list[str]:
    return re.findall(r'(?:href|action|data-[a-z-]*url|data-ws-path)="(/[^"]*)"', html)


@pytest.mark.parametrize("page", PAGES)
def test_every_link_form_and_socket_follows_the_prefix(mounted, users, page, make_queue):
    make_queue("orders")
    client = Client()
    client.force_login(users["admin"])
    response = client.get(f"/ops/queues/{page}")
    assert response.status_code == 200
    html = response.content.decode()
    urls = [u for u in _urls_in(html) if not u.startswith("/static/")]
    assert urls, "the page links somewhere"
    assert all(u.startswith("/ops/queues/") for u in urls), [u for u in urls if not u.startswith("/ops/queues/")]
    assert 'data-ws-path="/ops/queues/ws/dashboard/"' in html


def test_a_host_without_admin_or_logout_gets_pages_without_those_links(mounted, users):
    client = Client()
    client.force_login(users["admin"])  # staff: the admin link would show if the host had an admin
    html = client.get("/ops/queues/").content.decode()
    assert ">Admin<" not in html and "Log out" not in html


def test_the_hosts_login_page_is_where_anonymous_users_go(mounted):
    response = Client().get("/ops/queues/queues/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/ops/queues/queues/")


def test_behind_a_proxy_links_carry_its_script_name(mounted, users):
    client = Client()
    client.force_login(users["admin"])
    # What Django's WSGI and ASGI handlers do with SCRIPT_NAME / root_path (the test client does not).
    set_script_prefix("/proxied/")
    try:
        html = client.get("/ops/queues/").content.decode()
    finally:
        set_script_prefix("/")
    assert 'data-ws-path="/proxied/ops/queues/ws/dashboard/"' in html
    assert all(u.startswith("/proxied/") for u in _urls_in(html) if not u.startswith("/static/"))


def test_websocket_routes_are_derived_from_the_mount(mounted):
    assert dashboard_websocket_path() == "ops/queues/ws/dashboard/"
    assert [str(p.pattern) for p in build_websocket_urlpatterns()] == ["ops/queues/ws/dashboard/"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("root_path", ["", "/proxied"])
def test_the_prefixed_socket_connects_through_the_helper(mounted, settings, make_user, root_path):
    from django.core.asgi import get_asgi_application

    from queues.asgi import dashboard_application

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    user = make_user("viewer")
    login = Client()
    login.force_login(user)
    cookie = f"sessionid={login.cookies['sessionid'].value}".encode()
    application = dashboard_application(get_asgi_application())

    async def scenario():
        comm = WebsocketCommunicator(
            application, f"{root_path}/ops/queues/ws/dashboard/",
            headers=[(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"), (b"cookie", cookie)],
        )
        comm.scope["root_path"] = root_path
        connected, _ = await comm.connect(timeout=10)
        await comm.disconnect()
        return connected

    assert async_to_sync(scenario)()


def test_plain_http_to_the_socket_address_says_what_it_is(mounted):
    response = Client().get("/ops/queues/ws/dashboard/")
    assert response.status_code == 426
    assert b"WebSocket" in response.content


@pytest.mark.parametrize("path", ["/no-such-page/", "/queues/no-such-queue/"])
def test_the_demo_sites_error_pages_link_back_through_the_proxy(users, make_queue, path):
    # The demo site's own 404 (templates/404.html) is reached before any dashboard view: its links are
    # reversed too, so a proxy's SCRIPT_NAME keeps them inside the site.
    client = Client()
    client.force_login(users["admin"])
    set_script_prefix("/proxied/")
    try:
        response = client.get(path)
    finally:
        set_script_prefix("/")
    assert response.status_code == 404
    urls = [u for u in _urls_in(response.content.decode()) if not u.startswith("/static/")]
    assert urls and all(u.startswith("/proxied/") for u in urls), urls
