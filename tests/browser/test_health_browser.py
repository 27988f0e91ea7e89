"""Health badges in a real browser: a queue that loses its worker turns "stalled" without a reload.

One daphne and one browser page for the whole path: a real ``mq_worker`` serves the queue (healthy),
is killed with SIGKILL as in a crash, work keeps arriving, and the queue list's badge, the overview's
summary and the queue page's reasons follow within a few seconds. Short per-queue thresholds
(``health_stalled_after`` 2 s) and fast heartbeats (0.5 s, so a silent worker stops counting after 1 s)
keep it fast.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import queues
from tests.browser.servers import Daphne
from tests.conftest import wait_for
from tests.worker.conftest import handled, scratch, start_worker, worker_env, wt_dir  # noqa: F401

QUEUE = "wt-record"  # a queue the test workers have a handler for (tests/worker/handlers.py)


@pytest.fixture
def server(subprocess_env: dict[str, str]) -> Iterator[Daphne]:
    """daphne with the workers' heartbeat interval, so a killed worker stops counting within a second."""
    server = Daphne(subprocess_env, overrides={"HEARTBEAT_INTERVAL": 0.5}).start()
    yield server
    server.stop()
    server.discard_log()


def badge_state(page: Any, queue: str) -> str:
    return page.get_attribute(f'[data-health="{queue}"]', "data-health-state") or ""


def test_a_queue_that_loses_its_worker_gets_the_stalled_badge_live(
    login,
    server,
    make_queue,
    start_worker,  # noqa: F811 (the fixture imported above)
    handled,  # noqa: F811
    artifacts,
):
    make_queue(QUEUE, health_stalled_after=2, health_backing_up_after=3600)
    worker = start_worker(QUEUE)
    ids = queues.send_batch(QUEUE, [{"n": i} for i in range(5)])
    worker.wait_until(lambda: handled.count() >= len(ids))

    page = login("viewer")
    page.goto(f"{server.url}/queues/")
    page.wait_for_selector("#live-status[data-state=live]")
    assert badge_state(page, QUEUE) == "healthy"
    page.evaluate("window.mqNotReloaded = true")

    worker.kill()  # SIGKILL: no goodbye, its heartbeat row just goes silent
    killed = time.monotonic()
    queues.send_batch(QUEUE, [{"n": i} for i in range(20)])  # producers carry on
    page.wait_for_selector(f'[data-health="{QUEUE}"][data-health-state="stalled"]', timeout=15_000)
    took = time.monotonic() - killed
    print(f"stalled badge {took:.1f}s after the worker was killed")
    assert page.evaluate("window.mqNotReloaded") is True  # the push changed it, not a reload
    assert page.inner_text(f'[data-health="{QUEUE}"]') == "stalled"
    assert "no live worker serves it" in page.get_attribute(f'[data-health="{QUEUE}"]', "title")
    # 1 s until the heartbeat is stale, 2 s of waiting work, a sample a second: well within 10 s
    assert took < 10, f"the badge took {took:.1f}s"
    page.screenshot(path=str(artifacts / "health-stalled-queue-list.png"), full_page=True)

    page.goto(f"{server.url}/")
    wait_for(lambda: page.inner_text("[data-health-summary]") == "1 stalled", timeout=10)
    assert page.locator("[data-health]").first.get_attribute("data-health") == QUEUE  # unhealthy first

    page.goto(f"{server.url}/queues/{QUEUE}/")
    assert badge_state(page, QUEUE) == "stalled"
    assert "20 ready" in page.inner_text(f'[data-health-reasons="{QUEUE}"]')

    # A worker again: the queue drains and the badge goes back to healthy, still without a reload.
    page.evaluate("window.mqNotReloaded = true")
    start_worker(QUEUE)
    page.wait_for_selector(f'[data-health="{QUEUE}"][data-health-state="healthy"]', timeout=15_000)
    assert page.evaluate("window.mqNotReloaded") is True
    assert page.is_hidden(f'[data-health-reasons="{QUEUE}"]')
