"""The dead-letter view in a real browser: a poison burst grouped by error, and "redrive this group".

One server and one browser for the whole path, to keep the suite's time down.
"""

from __future__ import annotations

import queues
from queues.models import Message
from queues.testing import drain
from queues.worker import registry


def _poison(message: queues.Delivery) -> None:
    """A handler that fails two ways, by the body's kind, with ids in the text that the signature folds."""
    body = message.body
    if body["kind"] == "sku":
        raise KeyError(f"unknown SKU {body['n']}")
    raise RuntimeError(f"503 from the payment gateway (request {body['n']})")


def _dead(signature_start: str) -> int:
    return Message.objects.filter(
        queue__name="orders.dlq", dead_at__isnull=False, error_signature__startswith=signature_start
    ).count()


def test_a_poison_burst_is_grouped_by_error_and_one_group_is_redriven(login, server, make_queue, artifacts):
    make_queue("orders.dlq")
    make_queue("orders", dead_letter_queue="orders.dlq", max_receives=3)
    queues.send_batch(
        "orders", [{"kind": "sku", "n": 1000 + i} for i in range(6)] + [{"kind": "pay", "n": 50 + i} for i in range(3)]
    )
    registry.register("orders", _poison, retries=1, backoff=0.01)
    try:
        result = drain("orders", max_seconds=30)
    finally:
        registry.unregister("orders")
    assert result.dead_lettered == 9
    assert (_dead("KeyError"), _dead("RuntimeError")) == (6, 3)

    page = login("operator")
    page.goto(f"{server.url}/queues/orders.dlq/")
    groups = page.locator("#dead-letter-groups table.dead-letter-groups tbody tr")
    assert groups.count() == 2
    assert "6 ×" in groups.nth(0).inner_text() and "KeyError: 'unknown SKU #'" in groups.nth(0).inner_text()
    assert "3 ×" in groups.nth(1).inner_text() and "503 from the payment gateway" in groups.nth(1).inner_text()
    # A dead-letter queue is not published to or consumed: no Publish button, no "start a worker".
    assert page.locator("a:has-text('Publish')").count() == 0
    assert "mq_worker orders.dlq" not in page.content()
    page.screenshot(path=str(artifacts / "dead-letter-queue-1400.png"), full_page=True)

    with page.expect_navigation():
        groups.nth(0).locator("a", has_text="KeyError").click()
    assert page.locator("table.dead-letters tbody tr").count() == 6
    page.screenshot(path=str(artifacts / "dead-letters-group-1400.png"), full_page=True)
    with page.expect_navigation():
        page.click("a:has-text('Redrive this group to orders')")
    assert "Redrive 6 dead letters" in page.inner_text("h1")
    with page.expect_navigation():
        page.click("button:has-text('Redrive 6 dead letters')")
    assert "Sent 6 dead letters back to orders" in page.content()

    # Exactly that group moved: six messages ready in orders, the three 503s still dead.
    assert queues.queue_stats("orders").ready == 6
    assert (_dead("KeyError"), _dead("RuntimeError")) == (0, 3)
    assert page.locator("table.dead-letter-groups tbody tr").count() == 1

    # The source queue's page links to its dead letters with the count.
    page.goto(f"{server.url}/queues/orders/")
    assert page.inner_text("a[data-dead-link]").startswith("3 dead letters")
    page.set_viewport_size({"width": 400, "height": 900})
    page.goto(f"{server.url}/queues/orders/dead-letters/")
    page.screenshot(path=str(artifacts / "dead-letters-400.png"), full_page=True)
