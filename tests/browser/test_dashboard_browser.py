"""The dashboard in a real browser: live numbers, operator actions per role, escaping, screenshots."""

from __future__ import annotations

import json
import time
from typing import Any

import queues
from queues.models import Queue
from tests.conftest import wait_for

TRACK_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = function (url, protocols) {
    const s = protocols === undefined ? new Native(url) : new Native(url, protocols);
    window.__sockets.push(s);
    s.addEventListener("close", (e) => { s.__closeCode = e.code; });
    return s;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();
"""


def _live(page: Any, timeout: float = 15_000) -> None:
    page.wait_for_selector('#live-status[data-state="live"]', timeout=timeout)


def _text(page: Any, key: str) -> str:
    return page.locator(f'[data-live="{key}"]').first.inner_text().strip()


def _open_sockets(page: Any) -> int:
    return page.evaluate("window.__sockets.filter(s => s.readyState === WebSocket.OPEN).length")


# -- live numbers ------------------------------------------------------------------------------------
def test_message_sent_from_python_appears_in_the_overview_within_two_seconds(login, make_queue, artifacts):
    make_queue("orders")
    page = login("viewer")
    _live(page)
    assert _text(page, "orders.ready") == "0"
    page.evaluate("window.__notReloaded = true")

    queues.send_batch("orders", [{"n": i} for i in range(3)])
    sent_at = time.monotonic()
    page.wait_for_function(
        "() => document.querySelector('[data-live=\"orders.ready\"]').textContent.trim() === '3'", timeout=2_000
    )
    took = time.monotonic() - sent_at

    assert page.evaluate("window.__notReloaded === true")
    assert _text(page, "_total.ready") == "3"
    assert took < 2.0
    # The throughput chart drew from /api/series/ and keeps growing with the pushes.
    page.wait_for_selector(".chart[data-chart=throughput] canvas")
    n = page.evaluate("window.mqCharts[0].data[0].length")
    page.wait_for_function(f"() => window.mqCharts[0].data[0].length > {n}")
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)


def test_refresh_choice_off_closes_the_socket_and_a_hidden_tab_pauses(login, context, make_queue):
    make_queue("orders")
    context.add_init_script(TRACK_SOCKETS)
    page = login("viewer")
    _live(page)
    assert _open_sockets(page) == 1

    page.select_option("#live-status select", "off")
    page.wait_for_selector('#live-status[data-state="off"]')
    page.wait_for_function("() => window.__sockets.every(s => s.readyState === WebSocket.CLOSED)")
    queues.send("orders", {"while": "off"})
    page.wait_for_timeout(2_500)
    assert _text(page, "orders.ready") == "0"  # nothing applied while off

    page.select_option("#live-status select", "5")
    _live(page)
    page.wait_for_function("() => document.querySelector('[data-live=\"orders.ready\"]').textContent.trim() === '1'")
    # 5 s: samples still arrive every second, but the page applies at most one per 5 s.
    page.evaluate("window.__applied = 0; document.addEventListener('mq:sample', () => window.__applied++)")
    page.wait_for_timeout(7_000)
    assert 1 <= page.evaluate("window.__applied") <= 2
    page.reload()
    assert page.input_value("#live-status select") == "5"  # remembered per browser

    _live(page)
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {value: true, configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_selector('#live-status[data-state="paused"]')
    page.wait_for_function("() => window.__sockets.every(s => s.readyState === WebSocket.CLOSED)")
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {value: false, configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    _live(page)
    assert _open_sockets(page) == 1


def test_lost_connection_is_retried_until_the_server_is_back(login, server, make_queue):
    make_queue("orders")
    page = login("viewer")
    _live(page)
    port = server.port

    server.stop()
    page.wait_for_selector('#live-status[data-state="reconnecting"]')
    server.start(port=port)
    _live(page, timeout=45_000)
    queues.send("orders", {"after": "restart"})
    page.wait_for_function("() => document.querySelector('[data-live=\"orders.ready\"]').textContent.trim() === '1'")


# -- actions per role --------------------------------------------------------------------------------
def test_operator_pauses_then_resumes_from_the_queue_page(login, server, make_queue):
    make_queue("orders")
    page = login("operator")
    page.goto(f"{server.url}/queues/orders/")
    page.click("button:has-text('Pause')")
    page.wait_for_selector("button:has-text('Resume')")
    assert Queue.objects.get(name="orders").paused
    assert page.locator(".flash").inner_text().startswith("Paused orders")

    page.click("button:has-text('Resume')")
    page.wait_for_selector("button:has-text('Pause')")
    assert not Queue.objects.get(name="orders").paused


def test_superuser_purges_after_typing_the_queue_name(login, server, make_queue):
    make_queue("orders")
    queues.send_batch("orders", [{"n": i} for i in range(4)])
    page = login("superuser", username="root")
    page.goto(f"{server.url}/queues/orders/")
    _live(page)
    page.click("a:has-text('Purge…')")
    page.fill("#id_confirm", "order")  # a typo must not purge
    page.click("button:has-text('Purge')")
    assert queues.queue_stats("orders").depth == 4
    page.fill("#id_confirm", "orders")
    page.click("button:has-text('Purge')")
    page.wait_for_url(f"{server.url}/queues/orders/")
    assert queues.queue_stats("orders").depth == 0
    page.wait_for_function("() => document.querySelector('[data-live=\"orders.ready\"]').textContent.trim() === '0'")


def test_operator_redrives_dead_letters_and_sees_them_come_back_live(login, server, make_queue):
    make_queue("orders", max_receives=1)
    queues.send_batch("orders", [{"n": i} for i in range(2)])
    for d in queues.receive("orders", max_messages=10):
        queues.nack(d.receipt, error="boom")
    assert queues.queue_stats("orders").dead == 2
    page = login("operator")
    page.goto(f"{server.url}/queues/orders/")
    _live(page)
    assert _text(page, "orders.dead") == "2"
    page.evaluate("window.__notReloaded = true")

    with page.expect_navigation():
        page.click("a:has-text('Redrive to orders')")
    page.click("button:has-text('Start redrive')")
    page.wait_for_load_state()
    wait_for(lambda: queues.queue_stats("orders").ready == 2, timeout=20)
    page.goto(f"{server.url}/queues/orders/")
    page.evaluate("window.__notReloaded = true")
    queues.send("orders", {"n": 3})  # and the live numbers keep following without a reload
    page.wait_for_function("() => document.querySelector('[data-live=\"orders.ready\"]').textContent.trim() === '3'")
    assert _text(page, "orders.dead") == "0"
    assert page.evaluate("window.__notReloaded === true")


def test_a_replayed_sample_older_than_the_page_does_not_turn_its_numbers_back(login, server, make_queue):
    # A new socket first gets the server's newest sample, up to a few seconds old: read before the two
    # messages died, it says dead 0 where the page was rendered with 2. The socket here is the test's,
    # so the order is certain: the old sample first, then a newer one that must be applied.
    make_queue("orders", max_receives=1)
    queues.send_batch("orders", [{"n": i} for i in range(2)])
    for d in queues.receive("orders", max_messages=10):
        queues.nack(d.receipt, error="boom")
    page = login("operator")
    sockets: list[Any] = []
    page.route_web_socket("**/ws/dashboard/", lambda ws: sockets.append(ws))  # a builtin cannot be a handler

    def sample(at: float, dead: int) -> str:
        row = {"ready": 0, "in_flight": 0, "delayed": 0, "dead": dead, "depth": 0, "workers": 0}
        return json.dumps({"type": "sample", "at": at, "interval": 1, "queues": {"orders": row}, "total": row})

    page.goto(f"{server.url}/queues/orders/")
    wait_for(lambda: sockets, timeout=10)
    rendered_at = float(page.locator("#live-status").get_attribute("data-rendered-at"))
    assert abs(rendered_at - time.time()) < 60
    page.evaluate("window.__applied = 0; document.addEventListener('mq:sample', () => window.__applied++)")
    sockets[0].send(sample(rendered_at - 2, dead=0))
    sockets[0].send(sample(rendered_at + 1, dead=5))
    page.wait_for_function("() => window.__applied === 1")
    assert _text(page, "orders.dead") == "5"
    # And a later push is applied even if its clock reads earlier: only a socket's first message is a replay.
    sockets[0].send(sample(rendered_at - 3, dead=7))
    page.wait_for_function("() => document.querySelector('[data-live=\"orders.dead\"]').textContent.trim() === '7'")


ACTIONS = [
    ("post", "/queues/orders/pause/"),
    ("post", "/queues/orders/resume/"),
    ("post", "/queues/orders/settings/"),
    ("get", "/queues/orders/purge/"),
    ("post", "/queues/orders/purge/"),
    ("get", "/queues/orders/delete/"),
    ("post", "/queues/orders/delete/"),
    ("get", "/queues/orders/publish/"),
    ("post", "/queues/orders/publish/"),
    ("get", "/queues/orders.dlq/redrive/"),
    ("post", "/queues/orders.dlq/redrive/"),
    ("get", "/new-queue/"),
    ("post", "/new-queue/"),
    ("post", "/messages/bulk/"),
]


def test_viewer_gets_403_on_every_action_and_its_socket_only_reads(login, server, make_queue):
    make_queue("orders")
    queues.send("orders", {"keep": "me"})
    page = login("viewer")
    page.goto(f"{server.url}/queues/orders/")
    _live(page)
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": token, "Referer": f"{server.url}/"}
    form = {"confirm": "orders", "body": "{}", "action": "delete", "scope": "selected", "id": "1", "name": "x"}
    statuses = {}
    for method, path in ACTIONS:
        url = server.url + path
        r = page.request.post(url, form=form, headers=headers) if method == "post" else page.request.get(url)
        statuses[(method, path)] = r.status
    assert set(statuses.values()) == {403}, statuses
    assert not Queue.objects.get(name="orders").paused
    assert queues.queue_stats("orders").depth == 1

    # Whatever the viewer's socket sends changes nothing, and the socket keeps relaying.
    page.evaluate("""() => {
        const s = new WebSocket(`ws://${location.host}/ws/dashboard/`);
        window.__viewerSocket = s;
        s.onopen = () => { s.send(JSON.stringify({type: "queue.pause", queue: "orders"})); s.send("purge orders"); };
        s.onmessage = (e) => { window.__viewerGot = (window.__viewerGot || 0) + 1; };
    }""")
    page.wait_for_function("() => (window.__viewerGot || 0) >= 2")
    assert not Queue.objects.get(name="orders").paused
    assert queues.queue_stats("orders").depth == 1


def test_socket_of_a_user_without_view_permission_is_refused(login, server):
    page = login("nobody")  # logged in, no permission: every dashboard page is a 403
    assert "Not allowed" in page.content()
    code = page.evaluate("""() => new Promise((resolve) => {
        const s = new WebSocket(`ws://${location.host}/ws/dashboard/`);
        s.onmessage = () => resolve("got a message");
        s.onclose = (e) => resolve(e.code);
    })""")
    assert code == 4403


# -- escaping and screenshots ------------------------------------------------------------------------
def test_script_in_a_message_body_renders_as_text(login, server, make_queue, artifacts):
    make_queue("orders")
    evil = "<script>alert(1)</script>"
    message_id = queues.send("orders", evil, headers={"x-note": '<img src=x onerror="alert(2)">'})
    page = login("superuser", username="root")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    page.goto(f"{server.url}/queues/orders/messages/")
    assert evil in page.locator("main").inner_text()
    page.goto(f"{server.url}/messages/{message_id}/")
    _live(page)
    assert evil in page.locator("#body-json").inner_text()
    assert '<img src=x onerror="alert(2)">' in page.locator("main").inner_text()
    assert page.locator("main script").count() == 0 and page.locator("main img").count() == 0
    page.wait_for_timeout(1_500)  # a few live pushes land too
    assert dialogs == []
    page.screenshot(path=str(artifacts / "message-detail.png"), full_page=True)


def test_queue_detail_draws_its_history_charts(login, server, make_queue, artifacts):
    make_queue("orders")
    queues.send_batch("orders", [{"n": i} for i in range(5)])
    page = login("viewer")
    page.goto(f"{server.url}/queues/orders/")
    _live(page)
    for kind in ("depth", "rates", "age"):
        page.wait_for_selector(f".chart[data-chart={kind}] canvas")
    page.wait_for_function("() => window.mqCharts.every(c => c.data && c.data[0].length >= 2)")
    ready = page.evaluate("window.mqCharts.find(c => c.kind === 'depth').data[1].at(-1)")
    assert ready == 5
    page.screenshot(path=str(artifacts / "queue-detail.png"), full_page=True)
    page.goto(f"{server.url}/queues/")
    page.wait_for_selector(".sparkline canvas")


# -- production settings -----------------------------------------------------------------------------
def test_a_whole_page_of_selected_messages_is_deleted_past_the_form_field_limit(
    context, make_user, subprocess_env, make_queue
):
    """1,200 ticked boxes (more than Django's 1,000 form fields) go as one field, under the CSP."""
    from tests.browser.servers import Daphne

    make_queue("big")
    ids = queues.send_batch("big", [{"n": i} for i in range(1_200)])
    server = Daphne(subprocess_env, overrides={"PAGE_SIZE": 1_500}).start()
    try:
        make_user("superuser", username="root")
        page = context.new_page()
        page.goto(f"{server.url}/accounts/login/")
        page.fill("#id_username", "root")
        page.fill("#id_password", "pw-root")
        page.click("button[type=submit]")
        page.goto(f"{server.url}/queues/big/messages/")
        page.check("#select-all")  # shown and wired by static/queues/pages.js
        page.select_option("#id_action", "delete")
        page.click("button:has-text('Selected…')")
        page.wait_for_selector("h1:has-text('Delete 1,200 messages?')")
        assert queues.queue_stats("big").depth == len(ids)  # the preview changed nothing
        page.click("button:has-text('Delete 1,200 messages')")
        page.wait_for_selector(".flash:has-text('Deleted 1,200 messages.')")
        assert queues.queue_stats("big").depth == 0
    finally:
        server.stop()
        server.discard_log()


def test_admin_message_detail_and_error_pages_work_under_the_csp(login, server, make_queue):
    """Pages with scripts of their own: the admin's, the copy button, the error page's "Go back"."""
    make_queue("orders")
    [mid] = queues.send_batch("orders", [{"order_id": 7}])
    page = login("superuser", username="root")
    for path in ("/admin/", "/admin/queues/queue/", "/admin/queues/message/", "/admin/queues/auditevent/"):
        response = page.goto(f"{server.url}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
    page.goto(f"{server.url}/admin/queues/queue/")
    page.check("input[name='_selected_action']")  # the admin's own actions.js runs
    assert page.locator(".action-counter").inner_text().startswith("1 of ")

    page.goto(f"{server.url}/messages/{mid}/")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy-body")
    page.wait_for_selector("#copy-body:has-text('Copied')")

    page.goto(f"{server.url}/queues/orders/")
    page.goto(f"{server.url}/queues/orders/?window=7")  # 400: unknown chart window
    page.click("a[data-history-back]")
    page.wait_for_url(f"{server.url}/queues/orders/")
