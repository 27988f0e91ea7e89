"""Every page at a desktop width and a phone width: no horizontal page scroll, navigation that folds.

One server, one browser, one test: each page is loaded once per width (the suite's time is scarce).
"""

from __future__ import annotations

from typing import Any

import queues
from queues.engine.types import Outgoing
from queues.models import WorkerState
from queues.worker import fleet

WIDTHS = (1400, 400)

# How far the page may scroll sideways: none (a rounding pixel is not a scroll bar).
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


def _seed() -> dict[str, Any]:
    """A standard queue with retries and dead letters, a fifo queue, a worker holding messages."""
    queues.create_queue("orders", max_receives=2)
    queues.create_queue("jobs.fifo", kind="fifo")
    ids = queues.send_batch(
        "orders",
        [
            Outgoing(body={"order": i, "note": "x" * 300}, headers={"tenant": "acme-corporation-" + "y" * 60})
            for i in range(6)
        ],
    )
    for _ in range(3):  # two failures each: the third receive moves them to orders.dlq
        for d in queues.receive("orders", max_messages=3):
            queues.nack(d.receipt, error="KeyError: 'unknown SKU ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789' " * 3)
    queues.send("jobs.fifo", {"job": 1}, group="customer-7", dedup_id="job-1")
    held = queues.receive("orders", max_messages=1)
    row = fleet.register("worker-host.example.com:4242:abcdef", queues=["orders", "jobs.fifo"], concurrency=4)
    fleet.beat(
        row,
        state=WorkerState.LIVE,
        processed=1234,
        failed=5,
        held_receipts=[d.receipt for d in held],
        handler_durations=[],
    )
    dead = queues.peek("orders.dlq", limit=1)
    return {"message": ids[-1], "dead": dead[0].id if dead else ids[0]}


def test_every_page_fits_at_1400_and_400_pixels(login, server, browser, make_user, artifacts):
    seeded = _seed()
    page = login("superuser")
    # Audit rows and a redrive, so those tables have content.
    page.goto(f"{server.url}/queues/orders/")
    page.click("button:has-text('Pause')")
    page.wait_for_load_state()
    paths = [
        "/",
        "/queues/",
        "/queues/orders/",
        "/queues/jobs.fifo/",
        "/queues/orders.dlq/",
        "/messages/",
        "/queues/orders/messages/",
        f"/messages/{seeded['message']}/",
        f"/messages/{seeded['dead']}/",
        "/queues/orders/publish/",
        "/queues/jobs.fifo/publish/",
        "/new-queue/",
        "/queues/orders/purge/",
        "/queues/orders/delete/",
        "/queues/orders.dlq/redrive/",
        "/workers/",
        "/audit/",
        "/database/",
        "/messages/?q=nonsense:1",
    ]
    failures = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for path in paths:
            response = page.goto(f"{server.url}{path}")
            assert response is not None and response.status < 500, (path, response and response.status)
            overflow = page.evaluate(OVERFLOW)
            if overflow > 0:
                failures.append(f"{path} at {width}px scrolls sideways by {overflow}px")
        if width == 400:
            page.goto(f"{server.url}/queues/orders/")
            page.screenshot(path=str(artifacts / "phone-queue-400.png"), full_page=True)
            nav = page.locator("nav.mainnav")
            assert not nav.is_visible(), "at 400 px the navigation folds behind the menu button"
            page.click("label.menu-button")
            assert nav.is_visible()
            with page.expect_navigation():
                page.click("nav.mainnav a:has-text('Workers')")
            assert page.url.endswith("/workers/")

    assert not failures, failures

    # Pages of someone who may not see the dashboard, and of nobody logged in.
    make_user("nobody")
    outsider = browser.new_context(viewport={"width": 400, "height": 900})
    try:
        other = outsider.new_page()
        for path in ("/accounts/login/", "/accounts/password_reset/"):
            other.goto(f"{server.url}{path}")
            if other.evaluate(OVERFLOW) > 0:
                failures.append(f"{path} at 400px (anonymous) scrolls sideways")
        other.goto(f"{server.url}/accounts/login/")
        other.fill("#id_username", "nobody")
        other.fill("#id_password", "pw-nobody")
        other.click("button[type=submit]")
        other.wait_for_load_state()
        response = other.goto(f"{server.url}/queues/")
        assert response is not None and response.status == 403
        if other.evaluate(OVERFLOW) > 0:
            failures.append("the 403 page at 400px scrolls sideways")
        # A way out that is not the same 403: log out, or log in as someone else.
        assert other.locator(".error-page button:has-text('Log out')").count() == 1
        other.click("a:has-text('Log in as someone else')")
        other.wait_for_load_state()
        assert "/accounts/login/" in other.url
    finally:
        outsider.close()
    assert not failures, failures
