"""What the pages show: live numbers with their data-live hooks, rates and failures from samples,
worker states, message details, hidden bodies, the audit log, and the admin."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied
from django.test import override_settings
from django.urls import reverse

import queues
from queues import services
from queues.models import AuditEvent

pytestmark = pytest.mark.django_db


def live(html: str, key: str) -> str:
    """Text of the first element with ``data-live="key"``."""
    match = re.search(rf'data-live="{re.escape(key)}"[^>]*>([^<]*)<', html)
    assert match, f"no data-live={key}"
    return match.group(1).strip()


@pytest.fixture
def busy(make_queue):
    make_queue("orders", max_receives=1)
    make_queue("emails")
    queues.send_batch("orders", [{"n": i} for i in range(1500)])
    [d] = queues.receive("orders")
    queues.nack(d.receipt, error="boom")  # one dead letter
    queues.receive("orders", max_messages=2, visibility_timeout=600)
    queues.send("emails", {"e": 1}, delay=600)
    return "orders"


def test_overview_cards_and_backlog_carry_live_hooks(busy, client_for, make_worker):
    make_worker(["orders"])
    make_worker(["orders"], beat_ago=600)  # stale: not online
    html = client_for("viewer").get(reverse("queues:overview")).content.decode()
    assert live(html, "_total.ready") == "1,497"
    assert live(html, "_total.in_flight") == "2"
    assert live(html, "_total.delayed") == "1"
    assert live(html, "_total.dead") == "1"
    assert live(html, "_total.workers") == "1"
    assert live(html, "orders.ready") == "1,497"
    assert live(html, "orders.dead") == "1"
    assert live(html, "orders.workers") == "1"
    assert 'data-chart="throughput" data-queue="" data-window="300"' in html
    assert 'id="live-status" data-ws-path="/ws/dashboard/"' in html


def test_rates_come_from_the_last_two_samples(busy, client_for, make_sample):
    make_sample("orders", ago=2, sent_total=100, acked_total=50, failed_total=1)
    make_sample("orders", ago=1, sent_total=130, acked_total=60, failed_total=1)
    html = client_for("viewer").get(reverse("queues:queue-list")).content.decode()
    assert live(html, "orders.rate_in") == "30.0/s"
    assert live(html, "orders.rate_out") == "10.0/s"
    assert live(html, "emails.rate_in") == "—"


def test_stale_samples_give_no_rate(busy, client_for, make_sample):
    make_sample("orders", ago=600, sent_total=100)
    make_sample("orders", ago=599, sent_total=130)
    html = client_for("viewer").get(reverse("queues:queue-list")).content.decode()
    assert live(html, "orders.rate_in") == "—"


def test_failures_in_the_last_hour_come_from_samples(busy, client_for, make_sample):
    # live failed_total of orders is 1 (the nack); an hour-old baseline of 0 means 1 failure
    make_sample("orders", ago=7200, resolution=60, failed_total=-50)  # outside the window: ignored
    make_sample("orders", ago=3000, resolution=60, failed_total=0)
    make_sample("emails", ago=3000, resolution=60, failed_total=0)
    html = client_for("viewer").get(reverse("queues:overview")).content.decode()
    assert re.search(r"Failures \(1 h\)</span><span class=\"card-value\"[^>]*>1<", html)


def test_queue_list_sorts_and_filters(busy, make_queue, client_for):
    make_queue("zeta")
    c = client_for("viewer")

    def order(query: str) -> list[str]:
        html = c.get(reverse("queues:queue-list") + query).content.decode()
        return re.findall(r'data-live="([^".]+(?:\.[a-z]+)*)\.ready"', html)

    assert order("") == sorted(order(""))
    assert order("?sort=-ready")[0] == "orders"
    assert order("?sort=-delayed")[0] == "emails"
    assert order("?name=dlq") == ["emails.dlq", "orders.dlq", "zeta.dlq"]
    assert c.get(reverse("queues:queue-list") + "?sort=color").status_code == 400


def test_queue_page_has_charts_settings_workers_and_dead_letters(busy, client_for, make_worker):
    make_worker(["orders"], concurrency=8)
    c = client_for("operator")
    html = c.get(reverse("queues:queue-detail", args=["orders"]) + "?window=86400").content.decode()
    for chart in ("depth", "rates", "age"):
        assert f'data-chart="{chart}" data-queue="orders" data-window="86400"' in html
    assert 'name="visibility_timeout"' in html and "Save settings" in html
    assert ">8<" in html  # the worker's concurrency
    assert "Redrive to orders" in html
    assert c.get(reverse("queues:queue-detail", args=["orders"]) + "?window=12").status_code == 400


def test_worker_states(client_for, make_worker, make_queue):
    make_queue("orders")
    make_worker(["orders"], beat_ago=1)
    make_worker(["orders"], beat_ago=60)  # > 2 heartbeats of 5 s
    make_worker(["orders"], state="stopped", beat_ago=300)
    make_worker(["orders"], state="dead", beat_ago=900)
    html = client_for("viewer").get(reverse("queues:workers")).content.decode()
    states = re.findall(r'<tr class="worker-([a-z]+)"', html)
    assert sorted(states) == ["dead", "live", "stale", "stopped"]


def test_message_page_escapes_content_and_collapses_large_bodies(make_queue, client_for):
    make_queue("orders")
    small = queues.send("orders", {"name": "<script>alert(1)</script>"}, headers={"x": "<b>"})
    large = queues.send("orders", {"rows": ["x" * 50] * 100})
    c = client_for("viewer")
    html = c.get(reverse("queues:message-detail", args=[small])).content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;" in html and "<details" not in html.split("Body</h2>")[1].split("</section>")[0]
    assert 'id="copy-body"' in html
    big = c.get(reverse("queues:message-detail", args=[large])).content.decode()
    assert '<details class="body-details">' in big


def test_message_page_shows_attempts_and_errors(make_queue, client_for):
    make_queue("orders", max_receives=2)
    message_id = queues.send("orders", {"n": 1})
    for attempt in range(2):
        [d] = queues.receive("orders")
        queues.nack(d.receipt, error=f"KeyError: attempt {attempt}")
    html = client_for("viewer").get(reverse("queues:message-detail", args=[message_id])).content.decode()
    assert "KeyError: attempt 0" in html and "KeyError: attempt 1" in html
    assert "dead-lettered" in html and "Receive count</dt><dd>2" in html


@override_settings(MQADMIN={"HIDE_BODIES": True})
def test_hidden_bodies_are_revealed_on_request_and_the_reveal_is_audited(make_queue, client_for):
    make_queue("orders")
    message_id = queues.send("orders", {"secret": "s3cr3t"})
    c = client_for("viewer")
    assert b"s3cr3t" not in c.get(reverse("queues:messages")).content
    page = c.get(reverse("queues:message-detail", args=[message_id])).content
    assert b"s3cr3t" not in page and b"Reveal body" in page
    revealed = c.post(reverse("queues:message-reveal", args=[message_id]))
    assert revealed.status_code == 200 and b"s3cr3t" in revealed.content
    event = AuditEvent.objects.get(action="reveal_body")
    assert (event.actor_name, event.queue_name, event.message_ids, event.outcome) == (
        "viewer", "orders", [message_id], "ok")


def test_audit_log_filters(make_queue, users, client_for):
    make_queue("orders")
    make_queue("emails")
    services.pause_queue(actor=users["operator"], queue="orders", remote_addr="10.1.2.3")
    services.pause_queue(actor=users["admin"], queue="emails")
    with pytest.raises(PermissionDenied):
        services.purge_queue(actor=users["operator"], queue="orders", confirm="orders")
    c = client_for("viewer")

    def rows(query: str) -> int:
        html = c.get(reverse("queues:audit") + query).content.decode()
        # Human names shown, the stored value kept in the title.
        return html.count('title="pause_queue">Paused queue<') + html.count('title="purge_queue">Purged queue<')

    assert rows("") == 3
    assert rows("?actor=operator") == 2
    assert rows("?queue=emails") == 1
    assert rows("?action=purge_queue&outcome=denied") == 1
    assert b"10.1.2.3" in c.get(reverse("queues:audit") + "?actor=operator").content
    assert c.get(reverse("queues:audit") + "?action=explode").status_code == 400


def test_redrive_progress_is_on_the_queue_page(make_queue, users, client_for):
    make_queue("orders", max_receives=1)
    queues.send_batch("orders", [{"n": i} for i in range(3)])
    for d in queues.receive("orders", max_messages=3):
        queues.nack(d.receipt)
    services.start_redrive(actor=users["operator"], queue="orders.dlq", background=False)
    html = client_for("viewer").get(reverse("queues:queue-detail", args=["orders"])).content.decode()
    assert '<progress max="3" value="3">' in html and "finished" in html
