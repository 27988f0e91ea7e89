"""Behind a TLS-terminating proxy: POSTs pass CSRF, cookies are secure, the audit names the client.

The end-to-end test runs daphne with the environment docs/deploy.md gives and talks to it as the
proxy does: plain HTTP from 127.0.0.1 with ``X-Forwarded-Proto: https`` and ``X-Forwarded-For``.
"""

from __future__ import annotations

import http.client
import re
from http.cookies import SimpleCookie

import pytest
from django.test import Client
from django.urls import reverse

from mqadmin.proxy import forwarded_client
from tests.browser.servers import Daphne

HOST = "mq.example.com"
CLIENT_IP = "203.0.113.42"


class ProxiedBrowser:
    """A browser at ``CLIENT_IP`` seen through one proxy: the requests daphne gets from it."""

    def __init__(self, server: Daphne) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> http.client.HTTPResponse:
        from urllib.parse import urlencode

        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        headers = {
            "Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": f"{CLIENT_IP}",
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
        }
        body = None
        if form is not None:
            body = urlencode(form)
            headers.update({"Content-Type": "application/x-www-form-urlencoded", "Origin": f"https://{HOST}",
                            "Referer": f"https://{HOST}{path}"})
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.text = response.read().decode()  # type: ignore[attr-defined]
        for raw in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(raw).items():
                self.cookies[name] = morsel.value
        conn.close()
        return response

    def csrf_token(self, path: str) -> str:
        page = self.request("GET", path)
        assert page.status == 200, page.text[:500]
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


@pytest.fixture
def operator(transactional_db):
    from django.contrib.auth.models import User

    from queues.permissions import ensure_role_groups

    user = User.objects.create_user("ops", password="ops-password-1")
    user.groups.add(ensure_role_groups()["mq operators"])
    return user


@pytest.fixture
def proxied_server(production_env):
    server = Daphne(production_env).start()
    yield server
    server.stop()
    server.discard_log()


def test_operator_behind_a_tls_proxy_logs_in_acts_and_is_audited_at_their_address(
    proxied_server, operator, make_queue
):
    from queues.models import AuditEvent

    queue = make_queue("orders")
    browser = ProxiedBrowser(proxied_server)
    token = browser.csrf_token(reverse("login"))
    login = browser.request("POST", reverse("login"),
                            {"username": "ops", "password": "ops-password-1", "csrfmiddlewaretoken": token})
    assert login.status == 302, (login.status, login.text[:800])
    assert "sessionid" in browser.cookies

    page_path = reverse("queues:queue-detail", args=[queue])
    page = browser.request("GET", page_path)
    assert page.status == 200
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "no-store" in page.headers["Cache-Control"]

    token = browser.csrf_token(page_path)
    paused = browser.request("POST", reverse("queues:queue-pause", args=[queue]), {"csrfmiddlewaretoken": token})
    assert paused.status == 302, (paused.status, paused.text[:800])
    event = AuditEvent.objects.get(action="pause_queue", queue_name=queue)
    assert event.outcome == "ok"
    assert event.remote_addr == CLIENT_IP  # not the proxy's 127.0.0.1


def test_cookies_behind_a_tls_proxy_are_secure(proxied_server):
    browser = ProxiedBrowser(proxied_server)
    page = browser.request("GET", reverse("login"))
    csrf_cookie = next(c for c in page.headers.get_all("Set-Cookie") if c.startswith("csrftoken="))
    assert "Secure" in csrf_cookie


def test_without_a_proxy_configured_forwarded_for_is_ignored_by_the_audit(db, settings, make_queue):
    from django.contrib.auth.models import User

    from queues.models import AuditEvent

    queue = make_queue("orders")
    c = Client()
    c.force_login(User.objects.create_superuser("root", password="x"))
    c.post(reverse("queues:queue-pause", args=[queue]), HTTP_X_FORWARDED_FOR="192.0.2.1", REMOTE_ADDR="198.51.100.5")
    assert AuditEvent.objects.get(action="pause_queue").remote_addr == "198.51.100.5"


def test_with_one_proxy_the_audit_takes_the_address_the_proxy_appended(db, settings, make_queue):
    from django.contrib.auth.models import User

    from queues.models import AuditEvent

    settings.TRUSTED_PROXY_COUNT = 1
    queue = make_queue("orders")
    c = Client()
    c.force_login(User.objects.create_superuser("root", password="x"))
    # The client wrote "192.0.2.1" itself; the proxy appended the address it really came from.
    c.post(reverse("queues:queue-pause", args=[queue]),
           HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.9", REMOTE_ADDR="10.0.0.2")
    assert AuditEvent.objects.get(action="pause_queue").remote_addr == "203.0.113.9"


@pytest.mark.parametrize(("header", "count", "expected"), [
    ("203.0.113.9", 1, "203.0.113.9"),
    ("192.0.2.1, 203.0.113.9", 1, "203.0.113.9"),          # the client's own entry is ignored
    ("192.0.2.1, 203.0.113.9, 10.0.0.3", 2, "203.0.113.9"),  # two proxies: the second from the right
    ("203.0.113.9", 2, None),                               # did not pass through both proxies
    ("not-an-address", 1, None),
    ("2001:db8::1", 1, "2001:db8::1"),
    ("", 1, None),
    ("203.0.113.9", 0, None),
])
def test_the_forwarded_client_is_counted_from_the_right(header, count, expected):
    assert forwarded_client(header, count) == expected


def test_default_allowed_hosts_do_not_include_testserver(manage, bare_env):
    result = manage("shell", "--no-imports", "-c", "from django.conf import settings; print(settings.ALLOWED_HOSTS)",
                    env={**bare_env, "DJANGO_SECRET_KEY": "k" * 60})
    assert result.returncode == 0, result.stderr
    assert "testserver" not in result.stdout and "localhost" in result.stdout


def test_check_deploy_is_clean_for_the_documented_production_environment(manage, production_env):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
