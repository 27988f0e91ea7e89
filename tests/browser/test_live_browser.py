"""Everything that looks live is live, and one clock: a real browser in Asia/Kolkata against daphne.

One server and one browser context for all the checks (browser tests are the suite's slowest).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import queues
from queues import schedules
from queues.models import Redrive
from tests.browser.conftest import ROLE_PERMISSIONS
from tests.conftest import ROOT, stop_process, wait_for

ZONE = "Asia/Kolkata"

# Every text the live pill ever shows, from the first script on: a page must never flash "no samples".
RECORD_PILL = """
window.__pills = [];
new MutationObserver(() => {
  const pill = document.querySelector("#live-status .live-state");
  const text = pill && pill.textContent;
  if (text && window.__pills[window.__pills.length - 1] !== text) window.__pills.push(text);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""

# Every time on the page as the reader sees it (a relative time's absolute form is its tooltip), and
# the zone each chart says its axis is in.
TIMES = """() => ({
  zone: window.mqClock.zoneName(),
  times: [...document.querySelectorAll("time[datetime]")].map(
    (t) => t.dataset.when === "ago" ? t.title : t.textContent),
  charts: [...document.querySelectorAll(".chart[data-chart]:not(.sparkline)")].map((c) => c.dataset.zone || ""),
})"""


@pytest.fixture
def kolkata(browser: Any) -> Iterator[Any]:
    """A browser context whose clock is in Asia/Kolkata (UTC+05:30); fails the test on CSP violations."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id=ZONE)
    ctx.set_default_timeout(15_000)
    ctx.add_init_script(RECORD_PILL)
    violations: list[str] = []
    ctx.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    ctx.on("page", lambda page: page.on("pageerror", lambda error: violations.append(f"script error: {error}")))
    yield ctx
    ctx.close()
    assert not violations, violations


def _one_zone(page: Any, *, charts: int | None, some: bool = True) -> list[str]:
    seen = page.evaluate(TIMES)
    assert seen["zone"] in ("IST", "GMT+5:30"), seen
    assert seen["times"] or not some, f"no <time> on {page.url}"
    assert all(t.endswith(" " + seen["zone"]) for t in seen["times"]), seen
    assert charts is None or len(seen["charts"]) == charts, seen
    assert all(z == seen["zone"] for z in seen["charts"]), seen
    return seen["times"]


def test_live_parts_move_without_reload_and_every_time_is_in_the_browsers_zone(
    kolkata, server, make_user, make_queue, subprocess_env, artifacts
):
    make_queue("orders", max_receives=1)
    make_queue("jobs")
    queues.send_batch("orders", [{"n": i} for i in range(20)])
    for d in queues.receive("orders", max_messages=20):
        queues.nack(d.receipt, error="boom")
    assert queues.queue_stats("orders").dead == 20
    user = make_user("operator")
    assert "operate_queues" in ROLE_PERMISSIONS["operator"]
    page = kolkata.new_page()
    page.goto(f"{server.url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", f"pw-{user.username}")
    page.click("button[type=submit]")
    page.wait_for_selector('#live-status[data-state="live"]')
    # The first state shown is "live", from the numbers the page was rendered with: no flash.
    assert page.evaluate("window.__pills")[0] == "live"
    assert not [t for t in page.evaluate("window.__pills") if "no samples" in t]

    # The pages that render times from the database (dead letters, browser, message, schedules,
    # database) show them in the same zone as everything else.
    schedules.schedule("nightly", cron="0 3 * * *", queue="jobs")
    dead_id = queues.peek("orders.dlq", limit=1)[0].id
    for path in (
        "/queues/orders.dlq/dead-letters/",
        "/messages/?q=queue:orders.dlq",
        f"/messages/{dead_id}/",
        "/schedules/",
        "/database/",
    ):
        page.goto(f"{server.url}{path}")
        _one_zone(page, charts=None, some=path != "/database/")
        if path == "/schedules/":  # the next run in the schedule's own zone stays in the tooltip
            assert "in UTC, the zone its cron reads" in page.locator("[data-time-note] time").get_attribute("title")

    # A paced redrive: its moved/total moves on the page that started it, without a reload.
    page.goto(f"{server.url}/queues/orders.dlq/redrive/?to=orders")
    page.fill("#id_rate", "4")
    page.click("button:has-text('Start redrive')")
    page.wait_for_load_state()
    assert page.url.endswith("/queues/orders/")
    assert page.locator("#dead-letters tbody tr").count() == 10
    page.evaluate("window.__notReloaded = true")
    cell = page.locator("[data-redrive-moved]").first
    first = cell.inner_text()
    page.wait_for_function(
        "(first) => { const t = document.querySelector('[data-redrive-moved]').textContent;"
        " return t !== first && t !== '20 / 20'; }",
        arg=first,
        timeout=10_000,
    )
    page.wait_for_function(
        "() => document.querySelector('[data-redrive-moved]').textContent === '20 / 20'", timeout=20_000
    )
    page.wait_for_function("() => document.querySelector('[data-redrive-state]').textContent === 'finished'")
    # The dead-letter list of the same page follows its count: emptied by the redrive, without a reload.
    page.wait_for_function("() => document.querySelector('#dead-letters').textContent.includes('No dead letters')")
    assert page.evaluate("window.__notReloaded === true")

    # A redrive started on another page appears on this open queue page, and moves, without a reload.
    for d in queues.receive("orders", max_messages=20):
        queues.nack(d.receipt, error="boom again")
    elsewhere = kolkata.new_page()
    elsewhere.goto(f"{server.url}/queues/orders.dlq/redrive/?to=orders")
    elsewhere.fill("#id_rate", "5")
    elsewhere.click("button:has-text('Start redrive')")
    elsewhere.wait_for_load_state()
    second = Redrive.objects.latest("pk").pk
    elsewhere.close()
    page.wait_for_selector(f'tr[data-redrive="{second}"]', timeout=15_000)
    page.wait_for_function(
        f"() => document.querySelector('tr[data-redrive=\"{second}\"] [data-redrive-state]').textContent"
        " === 'finished'",
        timeout=20_000,
    )
    assert page.evaluate("window.__notReloaded === true")

    # One zone on every page: the server's times and the charts' axes.
    page.goto(f"{server.url}/queues/orders/")
    page.wait_for_selector(".chart-zone")
    page.wait_for_function("() => document.querySelectorAll('.chart[data-chart][data-zone]').length === 3")
    _one_zone(page, charts=3)
    page.screenshot(path=str(artifacts / "live-queue-detail-kolkata.png"), full_page=True)
    # The log toggle redraws every chart on the other scale.
    page.locator(".chart-scale").first.click()
    assert page.locator(".chart-scale").all_inner_texts() == ["log scale: on"] * 3
    assert page.locator(".chart[data-chart] canvas").count() == 3
    page.screenshot(path=str(artifacts / "live-queue-detail-log-scale.png"))
    # Sparklines share one scale, shown in their column's header: the largest depth among them.
    page.goto(f"{server.url}/queues/")
    page.wait_for_function("() => (document.querySelector('.spark-scale') || {}).textContent === '0–20'")
    page.screenshot(path=str(artifacts / "live-queue-list-sparklines.png"))
    page.goto(f"{server.url}/")
    page.wait_for_function("() => document.querySelectorAll('.chart[data-chart][data-zone]').length === 1")
    seen = page.evaluate(TIMES)
    assert seen["charts"] == [seen["zone"]]
    page.goto(f"{server.url}/audit/")
    times = _one_zone(page, charts=0)
    page.screenshot(path=str(artifacts / "live-audit-kolkata.png"))
    assert all(t.split(" ")[-2].count(".") == 1 for t in times), times  # milliseconds: 14:02:35.123
    # Another zone picked in the top bar applies to every time at once, and is remembered.
    page.select_option("#mq-zone", "UTC")
    assert all(t.endswith(" UTC") for t in page.evaluate(TIMES)["times"])
    page.reload()
    assert page.evaluate("window.mqClock.zone()") == "UTC"
    page.select_option("#mq-zone", "")

    # The workers page follows a worker that starts and stops, without a reload.
    page.goto(f"{server.url}/workers/")
    page.wait_for_selector('#live-status[data-state="live"]')
    page.evaluate("window.__notReloaded = true")
    env = {
        **subprocess_env,
        "MQADMIN_SETTINGS": json.dumps(
            {"HANDLERS": {"jobs": "tests.worker.handlers.record"}, "HEARTBEAT_INTERVAL": 1.0}
        ),
    }
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "mq_worker", "jobs", "--prune-interval", "0"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        page.wait_for_selector('tr[data-worker-status="live"]', timeout=30_000)
        assert page.evaluate("window.__notReloaded === true")
        page.screenshot(path=str(artifacts / "live-workers-kolkata.png"))
    finally:
        stop_process(worker)
    wait_for(lambda: not page.locator('tr[data-worker-status="live"]').count(), timeout=15)
    assert page.evaluate("window.__notReloaded === true")
