"""docs/quickstart.md, followed literally in a fresh project on the built wheel, in both database set-ups.

``host`` is a ``django-admin startproject mysite`` with an app ``orders``, given every marked snippet
of the doc (tests/packaging/host.py); ``dedicated`` adds the doc's optional queue database. The
commands the doc leaves running (workers, daphne) are started here: workers in their ``--burst`` form.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, _why_no_browser
from tests.browser.servers import free_port
from tests.conftest import stop_process
from tests.packaging.conftest import HostVenv, PgServer, wait_until_serving
from tests.packaging.host import HOST_404, HOST_BASE, HOST_LOGIN, PASSWORD, USERNAME, HostProject, build_host

PREFIX = "/ops/queues/"


@pytest.fixture(scope="module", params=["default", "dedicated"])
def host(
    request: pytest.FixtureRequest, host_venv: HostVenv, pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostProject]:
    """The quickstart's project; its databases are dropped at the end (after ending their sessions)."""
    base = tmp_path_factory.mktemp(f"host-{request.param}")
    created: list[str] = []
    try:
        yield build_host(host_venv, base, pg_server, request.param, created)
    finally:
        for name in created:
            pg_server.drop(name)
        shutil.rmtree(base, ignore_errors=True)


class Server:
    """The doc's ``daphne`` command, on a free port."""

    def __init__(self, host: HostProject, log: Path) -> None:
        self.port = free_port()
        argv = host.daphne_command()
        # The doc's command, told where to listen: `daphne -b ADDR -p PORT APP`.
        argv = [argv[0], "-b", "127.0.0.1", "-p", str(self.port), *argv[1:]]
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=host.dir, env=host.venv.env(), stdout=out, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def server(host: HostProject) -> Iterator[Server]:
    """daphne serving the host's ``mysite.asgi:application``."""
    srv = Server(host, host.dir / "daphne.log")
    try:
        wait_until_serving(f"{srv.url}/accounts/login/", srv.proc, srv.log)
        yield srv
    finally:
        srv.stop()


def fetch(url: str) -> tuple[int, str]:
    """GET ``url`` without following anything: (status, body)."""
    try:
        with urllib.request.urlopen(url, timeout=15) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def run_worker(host: HostProject, queue: str) -> str:
    """The doc's worker command for ``queue`` in its ``--burst`` form; what it printed."""
    argv = host.worker_command(queue)
    proc = subprocess.run(
        [*argv, "--burst"], cwd=host.dir, env=host.venv.env(), capture_output=True, text=True, timeout=180
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def test_quickstart_check_is_clean(host: HostProject) -> None:
    assert "System check identified no issues" in host.outputs["python manage.py check"], host.outputs


SEND_THROUGH_THE_VIEW = """
import json
import queues
from django.test import Client

def sent():
    return queues.stats("orders")[0].sent_total

client = Client(raise_request_exception=False)
before = sent()
ok = client.post("/orders/place/", {"order_id": "7"})
after_ok = sent()
failed = client.post("/orders/place/", {"order_id": "8", "fail": "1"})
print(json.dumps({"ok": [ok.status_code, ok.json()], "failed": failed.status_code,
                  "sent": [before, after_ok, sent()]}))
"""


def test_view_sends_inside_the_hosts_transaction(host: HostProject) -> None:
    result: Any = host.shell(SEND_THROUGH_THE_VIEW)
    status, body = result["ok"]
    assert status == 200 and isinstance(body["message_id"], int), result
    assert result["failed"] == 500, result
    before, after_ok, after_failed = result["sent"]
    assert after_ok == before + 1, result
    if host.mode == "default":
        assert after_failed == after_ok, "the rolled-back view's message was sent"
    else:
        # The documented trade-off of a queue database of its own: the send commits on its own.
        assert after_failed == after_ok + 1, result


def test_worker_runs_the_hosts_handler(host: HostProject) -> None:
    host.shell('import queues; queues.send("orders", {"order_id": 7}); print(1)')
    out = run_worker(host, "orders")
    # Workers log to the console in any project: the handler's own logger line shows.
    assert "order 7 paid" in out, out[-4000:]
    stats: Any = host.shell(
        'import json, queues; s = queues.stats("orders")[0]; print(json.dumps([s.ready, s.in_flight, s.acked_total]))'
    )
    assert stats[:2] == [0, 0] and stats[2] >= 1, stats


def test_task_runs_and_its_result_is_read_back(host: HostProject) -> None:
    result_id = host.shell(
        "import json; from orders.tasks import send_receipt; print(json.dumps(send_receipt.enqueue(42).id))"
    )
    run_worker(host, "tasks.default")
    status, value = host.shell(  # type: ignore[misc]
        f"import json; from orders.tasks import send_receipt; r = send_receipt.get_result({result_id!r}); "
        "print(json.dumps([str(r.status.value), r.return_value]))"
    )
    assert (status, value) == ("SUCCESSFUL", "receipt for order 42")


def test_hosts_own_test_passes_and_its_databases_are_dropped(host: HostProject, pg_server: PgServer) -> None:
    """The doc's orders/tests.py with pytest-django; teardown must drop the test databases cleanly."""
    proc = subprocess.run(
        [str(host.venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "orders/tests.py"],
        cwd=host.dir,
        env=host.venv.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "1 passed" in out and "error" not in out.lower(), out[-6000:]
    assert "being accessed by other users" not in out
    for name in host.databases.values():
        assert not pg_server.exists(f"test_{name}"), f"the host's test database test_{name} was left behind"


def test_queue_tables_live_only_where_mqadmin_is_told(host: HostProject, pg_server: PgServer) -> None:
    default = pg_server.tables(host.databases["default"])
    assert "auth_user" in default
    if host.mode == "default":
        assert {"queues_queue", "queues_message"} <= default, sorted(default)
        return
    queue_db = pg_server.tables(host.databases["queues"])
    assert {"queues_queue", "queues_message"} <= queue_db, sorted(queue_db)
    assert not [t for t in default if t.startswith("queues_")], sorted(default)
    assert not [t for t in queue_db if not t.startswith(("queues_", "django_migrations"))], sorted(queue_db)


def test_hosts_login_page_and_404_are_its_own(host: HostProject, server: Server) -> None:
    status, body = fetch(f"{server.url}/accounts/login/")
    assert status == 200 and HOST_LOGIN in body and HOST_BASE in body, body[:2000]
    status, body = fetch(f"{server.url}/no-such-page/")
    assert status == 404 and HOST_404 in body and HOST_BASE in body, body[:2000]
    # The dashboard sends anonymous visitors to the host's login page.
    status, body = fetch(f"{server.url}{PREFIX}")
    assert status == 200 and HOST_LOGIN in body, body[:2000]


def test_dashboard_goes_live_under_the_prefix_in_a_browser(host: HostProject, server: Server, artifacts: Path) -> None:
    reason = _why_no_browser()
    if reason:
        print(f"\n{'!' * 100}\n{reason}\n{'!' * 100}")
        pytest.skip(reason)
    # deferred: playwright is only needed (and importable) where a browser runs; the test skips otherwise
    from playwright.sync_api import sync_playwright

    sockets: list[str] = []
    static: dict[str, int] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(20_000)
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.on("response", lambda r: static.__setitem__(r.url, r.status) if "/static/" in r.url else None)

            page.goto(f"{server.url}{PREFIX}")
            assert "/accounts/login/" in page.url and HOST_LOGIN in page.content()
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}{PREFIX}")
            page.wait_for_selector("#live-status[data-state=live]", timeout=30_000)
            page.screenshot(path=str(artifacts / f"packaging-dashboard-{host.mode}.png"), full_page=True)
            html = page.content()
            urls: list[str] = page.eval_on_selector_all(
                "a[href], form[action]", "els => els.map(e => e.getAttribute('href') || e.getAttribute('action'))"
            )
            ws_path = page.get_attribute("#live-status", "data-ws-path")
            api_urls: list[str] = page.eval_on_selector_all(
                "[data-series-url]", "els => els.map(e => e.getAttribute('data-series-url'))"
            )

            page.goto(f"{server.url}{PREFIX}queues/")
            queue_names = page.locator("table").inner_text()
        finally:
            browser.close()

    assert HOST_BASE not in html, "the dashboard rendered the host's base.html"
    assert ws_path == f"{PREFIX}ws/dashboard/"
    assert api_urls == [f"{PREFIX}api/series/"], api_urls
    assert sockets and all(u.startswith(f"ws://127.0.0.1:{server.port}{PREFIX}") for u in sockets), sockets
    local = [u for u in urls if u.startswith("/")]
    host_urls = {"/admin/", "/accounts/logout/"}  # the optional links, there because this host has them
    assert local and all(u.startswith(PREFIX) or u in host_urls for u in local), local
    assert "orders" in queue_names and "orders.dlq" in queue_names, queue_names
    chart = [u for u in static if u.endswith("uPlot.iife.min.js")]
    assert chart and all(status == 200 for status in static.values()), json.dumps(static, indent=1)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("CHANNEL_LAYERS = {}", ["queues.W020"]),
        ('CHANNEL_LAYERS = {"default": {"BACKEND": "no.such.Layer"}}', ["queues.E020"]),
        ('MQADMIN = {"HIDE_BODY": True}', ["queues.E010", "Did you mean 'HIDE_BODIES'"]),
    ],
)
@pytest.mark.parametrize("host", ["default"], indirect=True)  # the checks read settings: one set-up is enough
def test_check_reports_misconfiguration(host: HostProject, override: str, expected: list[str]) -> None:
    module = f"settings_check_{abs(hash(override))}"
    (host.dir / "mysite" / f"{module}.py").write_text(f"from mysite.settings import *  # noqa: F403\n{override}\n")
    proc = host.manage("check", f"--settings=mysite.{module}", check=False)
    out = proc.stdout + proc.stderr
    for text in expected:
        assert text in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert proc.returncode == (1 if any(".E" in e for e in expected) else 0), out[-3000:]
