"""The demo behind ``make demo``: its queues, its handlers and its producer.

How the demo's workers find these handlers: ``mq_demo`` starts its child processes with
``DJANGO_SETTINGS_MODULE=mqadmin.demo_settings``, the project's settings plus
``MQADMIN["HANDLERS"]`` naming the handler specs below. The worker's ``autodiscover()`` imports
what ``HANDLERS`` names, so only the demo's workers ever load them; a real deployment that happens
to have an ``orders`` queue never runs demo code.

The handlers do small realistic work: sleep a few milliseconds, fail now and then
(:data:`FAILURE_RATE`, retried with backoff), and fail every time on a *poison* message (a body with
``"poison": true``) so that it ends in the queue's dead-letter queue.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, close_old_connections, connection, connections

import queues
from queues.engine.types import Delivery, Outgoing
from queues.worker.registry import HandlerSpec

# -- queues -----------------------------------------------------------------------------------------
#: The demo's queues and their settings; each gets its dead-letter queue ``<name>.dlq``.
DEMO_QUEUES: dict[str, dict[str, Any]] = {
    "orders": {"visibility_timeout": 30, "max_receives": 4},
    "emails": {"visibility_timeout": 30, "max_receives": 5},
    "reports": {"visibility_timeout": 120, "max_receives": 3},
    "payments.fifo": {"kind": "fifo", "visibility_timeout": 30, "max_receives": 5},
}
#: Order events fan out to emails (only those for the customer) and reports (all of them).
TOPIC = "order-events"
SUBSCRIPTIONS: list[tuple[str, str, dict[str, str] | None]] = [
    (TOPIC, "emails", {"notify": "customer"}),
    (TOPIC, "reports", None),
]
PAYMENT_ACCOUNTS = 8


def setup_queues() -> list[str]:
    """Create the demo's queues (and dead-letter queues) and topic subscriptions if missing.

    Existing queues keep their settings (an operator may have changed them in the dashboard).
    Returns the names of the queues created now.
    """
    existing = {q.name for q in queues.list_queues()}
    created = []
    for name, settings in DEMO_QUEUES.items():
        queues.ensure_queue(name, **settings)
        created += [n for n in (name, name + ".dlq") if n not in existing]
    for topic, queue, header_filter in SUBSCRIPTIONS:
        queues.subscribe(topic, queue, filter=header_filter)
    return created


def all_queue_names() -> list[str]:
    """The demo's queues and their dead-letter queues."""
    return [n for name in DEMO_QUEUES for n in (name, name + ".dlq")]


# -- handlers ---------------------------------------------------------------------------------------
#: Share of deliveries that fail at random (then retried with backoff). Tests set it to 0 or 1.
FAILURE_RATE = 0.02


class SimulatedFailure(RuntimeError):
    """A transient failure the demo makes up (a timeout, a 451 from a mail server)."""


class PoisonMessage(ValueError):
    """A message no retry can fix; it fails every time until it is dead-lettered."""


def _work(low_ms: float, high_ms: float) -> None:
    time.sleep(random.uniform(low_ms, high_ms) / 1000)


def _check(message: Delivery, transient_error: str) -> None:
    body = message.body
    if isinstance(body, dict) and body.get("poison"):
        raise PoisonMessage(f"message {message.id} cannot be processed: {body.get('defect', 'malformed body')} "
                            "(a poison message: it fails every time)")
    if random.random() < FAILURE_RATE:
        raise SimulatedFailure(f"{transient_error} (simulated; attempt {message.receive_count})")


def handle_order(message: Delivery) -> None:
    """Reserve stock and charge the customer for an order."""
    _check(message, "payment provider timed out")
    _work(5, 40)


def handle_email(message: Delivery) -> None:
    """Render and send an email."""
    _check(message, "SMTP server answered 451, try again later")
    _work(10, 60)


def handle_report(message: Delivery) -> None:
    """Update a sales report: slower, heavier work."""
    _check(message, "report database is busy")
    _work(50, 300)


def handle_payment(message: Delivery) -> None:
    """Apply a payment to an account; the fifo queue keeps each account's payments in order."""
    _check(message, "ledger lock wait timed out")
    _work(5, 30)


# Specs, not @queues.handler: importing this module (mq_demo and the tests do) must not register
# handlers for "orders" and friends in whatever process imports it. The demo's workers get these
# through MQADMIN["HANDLERS"] in mqadmin/demo_settings.py.
ORDER_HANDLER = HandlerSpec(queue="orders", func=handle_order, backoff=0.5, max_backoff=10, timeout=10)
EMAIL_HANDLER = HandlerSpec(queue="emails", func=handle_email, backoff=0.5, max_backoff=10, timeout=10)
REPORT_HANDLER = HandlerSpec(queue="reports", func=handle_report, backoff=1.0, max_backoff=20, timeout=30)
PAYMENT_HANDLER = HandlerSpec(queue="payments.fifo", func=handle_payment, backoff=0.5, max_backoff=10, timeout=10)


# -- producer ---------------------------------------------------------------------------------------
class _Maker:
    """Builds realistic messages; keeps the counters that make ids and fifo sequences believable."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.order_id = int(time.time()) % 1_000_000 * 100
        self.seq: Counter[str] = Counter()

    def order(self, *, poison: bool = False) -> Outgoing:
        rng = self.rng
        self.order_id += 1
        body: dict[str, Any] = {
            "order_id": self.order_id,
            "customer_id": rng.randint(1000, 9999),
            "items": [{"sku": f"SKU-{rng.randint(100, 999)}", "qty": rng.randint(1, 3)}
                      for _ in range(rng.randint(1, 4))],
            "total": round(rng.uniform(9, 400), 2),
            "currency": rng.choice(["EUR", "EUR", "USD", "GBP"]),
        }
        headers = {"source": rng.choice(["web", "web", "mobile", "api"])}
        if poison:
            del body["items"]
            body.update(poison=True, defect="'items' is missing")
            return Outgoing(body=body, headers=headers)
        if rng.random() < 0.05:
            headers["tier"] = "express"
            return Outgoing(body=body, headers=headers, priority=50)
        return Outgoing(body=body, headers=headers)

    def email(self, *, poison: bool = False) -> Outgoing:
        rng = self.rng
        template = rng.choices(["order-confirmation", "shipping-update", "password-reset", "newsletter"],
                               weights=[5, 3, 1, 2])[0]
        body: dict[str, Any] = {"to": f"customer{rng.randint(1000, 9999)}@example.com", "template": template}
        if poison:
            body.update(to="not-an-address", poison=True, defect="recipient 'not-an-address' is not an address")
            return Outgoing(body=body)
        priority = {"password-reset": 20, "newsletter": -10}.get(template, 0)
        # Reminders: sent now, delivered later.
        delay = rng.uniform(10, 90) if rng.random() < 0.15 else None
        return Outgoing(body=body, priority=priority, delay=delay, headers={"template": template})

    def report(self) -> Outgoing:
        rng = self.rng
        return Outgoing(
            body={"report": rng.choice(["daily-sales", "stock-levels", "refunds"]),
                  "date": datetime.now(UTC).date().isoformat()},
            delay=rng.choice([None, None, 30.0]),
        )

    def payment(self) -> Outgoing:
        rng = self.rng
        account = f"account-{rng.randint(1, PAYMENT_ACCOUNTS)}"
        self.seq[account] += 1
        return Outgoing(
            body={"account": account, "seq": self.seq[account], "kind": rng.choice(["charge"] * 4 + ["refund"]),
                  "amount_cents": rng.randint(100, 50_000)},
            group=account,
        )

    def event(self) -> tuple[dict[str, Any], dict[str, str]]:
        rng = self.rng
        event = rng.choice(["order.shipped", "order.delivered", "order.cancelled"])
        notify = "customer" if rng.random() < 0.6 else "none"
        return {"event": event, "order_id": rng.randint(1, self.order_id)}, {"notify": notify, "event": event}


#: Share of the base rate each stream gets (sums to 1 with the topic's share).
STREAM_SHARES = {"orders": 0.4, "emails": 0.25, "reports": 0.03, "payments.fifo": 0.22}
TOPIC_SHARE = 0.1


def run_producer(
    *,
    rate: float = 20.0,
    stopped: Callable[[], bool] = lambda: False,
    duration: float | None = None,
    poison_every: float = 20.0,
    first_poison_after: float = 3.0,
    burst_every: tuple[float, float] = (45.0, 90.0),
    first_burst_after: float = 20.0,
    report_every: float = 10.0,
    say: Callable[[str], None] = print,
    seed: int | None = None,
) -> Counter[str]:
    """Send the demo's traffic until ``stopped()`` or ``duration`` seconds; return messages sent per queue.

    About ``rate`` messages a second in a slow two-minute wave: orders (5% express, priority 50),
    emails (15% delayed reminders, password resets first), a few reports, payments in 8 fifo groups,
    and order events published to the ``order-events`` topic. Every ``poison_every`` seconds one
    poison message (orders and emails by turns); now and then a burst of a few hundred orders.
    Database hiccups are reported and retried, so the producer outlives a database restart.
    """

    rng = random.Random(seed)
    make = _Maker(rng)
    sent: Counter[str] = Counter()
    window: Counter[str] = Counter()
    credit: Counter[str] = Counter()
    makers: dict[str, Callable[[], Outgoing]] = {
        "orders": make.order, "emails": make.email, "reports": make.report, "payments.fifo": make.payment,
    }
    missing_warned: set[str] = set()
    started = last = last_report = time.monotonic()
    next_poison = started + first_poison_after
    next_burst = started + first_burst_after
    poison_turn = 0

    def send(queue: str, batch: list[Outgoing]) -> None:
        try:
            queues.send_batch(queue, batch)
        except queues.QueueNotFound:
            if queue not in missing_warned:
                missing_warned.add(queue)
                say(f"queue {queue!r} is gone (deleted in the dashboard?): not sending to it; "
                    "restart the demo to recreate it")
            return
        missing_warned.discard(queue)
        sent[queue] += len(batch)
        window[queue] += len(batch)

    while not stopped():
        now = time.monotonic()
        if duration is not None and now - started >= duration:
            break
        try:
            dt, last = now - last, now
            wave = 1.0 + 0.5 * math.sin(2 * math.pi * (now - started) / 120.0)
            for queue, share in STREAM_SHARES.items():
                credit[queue] += rate * share * wave * dt
                n = int(credit[queue])
                if n:
                    credit[queue] -= n
                    send(queue, [makers[queue]() for _ in range(n)])
            credit[TOPIC] += rate * TOPIC_SHARE * wave * dt
            while credit[TOPIC] >= 1:
                credit[TOPIC] -= 1
                body, headers = make.event()
                try:
                    copies = queues.publish(TOPIC, body, headers=headers)
                except queues.TopicNotFound:
                    copies = {}
                for queue in copies:
                    sent[queue] += 1
                    window[queue] += 1
            if now >= next_poison:
                next_poison = now + poison_every
                queue = ("orders", "emails")[poison_turn % 2]
                poison_turn += 1
                send(queue, [make.order(poison=True) if queue == "orders" else make.email(poison=True)])
                say(f"sent a poison message to {queue} (it will fail until it lands in {queue}.dlq)")
            if now >= next_burst:
                next_burst = now + rng.uniform(*burst_every)
                size = rng.randint(300, 800)
                send("orders", [make.order() for _ in range(size)])
                say(f"burst: {size} orders at once (a flash sale)")
            if report_every and now - last_report >= report_every:
                total = sum(window.values())
                parts = ", ".join(f"{q} {n}" for q, n in sorted(window.items()))
                say(f"sent {total} messages in the last {now - last_report:.0f} s ({parts or 'none'})")
                window.clear()
                last_report = now
        except DatabaseError as exc:
            say(f"database unavailable ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}); "
                "retrying in 1 s")
            connections.close_all()
            _sleep(stopped, 1.0)
            last = time.monotonic()
            continue
        if not connection.in_atomic_block:  # (tests run it inside a transaction)
            close_old_connections()
        _sleep(stopped, 0.25)
    return sent


def _sleep(stopped: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stopped() and time.monotonic() < deadline:
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
