"""Queue health (queues/queue_health.py): the rules, the thresholds as settings, and every place that
shows a state: the queue list (sorted worst first), the queue page, the overview's summary, the pushed
samples, ``mq_stats`` and the metrics endpoint."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

import queues
from queues import queue_health, services
from queues.engine import InvalidQueueSettings, QueueStats
from queues.metrics.sampler import Sampler
from queues.models import AuditEvent, Message
from queues.queue_health import Baseline, HealthState, Thresholds, assess

pytestmark = pytest.mark.django_db


def stats(**fields) -> QueueStats:
    base = dict(
        queue="orders",
        kind="standard",
        paused=False,
        ready=0,
        delayed=0,
        in_flight=0,
        dead=0,
        depth=0,
        oldest_ready_age=None,
        sent_total=0,
        acked_total=0,
        failed_total=0,
        dead_lettered_total=0,
    )
    return QueueStats(**{**base, **fields})


def baseline(**fields) -> Baseline:
    base = dict(at=timezone.now() - timedelta(minutes=10), ready=0, dead=0, acked_total=0, failed_total=0)
    return Baseline(**{**base, **fields})


# -- the rules ----------------------------------------------------------------------------------------
def test_a_queue_keeping_up_is_healthy():
    h = assess(
        stats(ready=50, oldest_ready_age=3.0, acked_total=900),
        workers=2,
        progress=baseline(acked_total=100),
        dead_before=baseline(),
    )
    assert (h.state, h.reasons, h.label) == ("healthy", (), "healthy")


def test_ready_work_with_no_live_worker_is_stalled_once_it_waited_the_threshold():
    young = assess(stats(ready=1500, oldest_ready_age=60.0), workers=0)
    assert young.state == HealthState.HEALTHY
    old = assess(stats(ready=1500, oldest_ready_age=720.0), workers=0)
    assert old.state == HealthState.STALLED
    assert "1,500 ready, waiting 12m00s, and no live worker serves it" in old.detail
    # backing up holds too (the oldest waited past 2 min): a reason, not the badge
    assert [r.state for r in old.reasons] == ["stalled", "backing_up"]


def test_nothing_acked_or_failed_since_the_window_is_stalled_even_with_a_worker():
    s = stats(ready=10, oldest_ready_age=400.0, acked_total=70, failed_total=3)
    assert assess(s, workers=1, progress=baseline(acked_total=70, failed_total=3)).state == "stalled"
    assert assess(s, workers=1, progress=baseline(acked_total=69, failed_total=3)).state == "backing_up"
    assert assess(s, workers=1, progress=None).state == "backing_up"  # no history: cannot tell


def test_paused_and_dead_letter_queues_are_never_stalled_or_backing_up():
    waiting = dict(ready=10, oldest_ready_age=4000.0)
    assert assess(stats(paused=True, **waiting), workers=0).state == "healthy"
    assert assess(stats(is_dead_letter_queue=True, **waiting), workers=0).state == "healthy"


def test_dead_letters_growing_compares_with_the_window_start():
    assert assess(stats(dead=12), dead_before=baseline(dead=10)).state == "dead_letters_growing"
    assert assess(stats(dead=10), dead_before=baseline(dead=10)).state == "healthy"
    # a dead-letter queue counts its own messages
    dlq = stats(queue="orders.dlq", ready=45, is_dead_letter_queue=True, oldest_ready_age=1.0)
    h = assess(dlq, dead_before=baseline(ready=0))
    assert h.state == "dead_letters_growing" and "45 more dead letters than 15m ago" in h.detail


def test_retention_risk_when_the_oldest_is_deleted_within_the_warning():
    four_days = Thresholds(retention=4 * 86400)
    h = assess(stats(ready=3, oldest_ready_age=3.5 * 86400, is_dead_letter_queue=True), thresholds=four_days)
    assert h.state == "retention_risk" and "deletes the oldest ready message in 12h00m" in h.detail
    assert (
        assess(stats(ready=3, oldest_ready_age=2 * 86400, is_dead_letter_queue=True), thresholds=four_days).state
        == "healthy"
    )
    # a one-hour retention warns in its last half hour, not always
    hour = Thresholds(retention=3600)
    assert assess(stats(ready=1, oldest_ready_age=600, is_dead_letter_queue=True), thresholds=hour).state == "healthy"
    assert (
        assess(stats(ready=1, oldest_ready_age=2000, is_dead_letter_queue=True), thresholds=hour).state
        == "retention_risk"
    )


def test_the_worst_state_is_the_badge_and_the_summary_counts_badges():
    both = assess(stats(ready=5, oldest_ready_age=3.9 * 86400), workers=0)
    assert both.state == "retention_risk" and {r.state for r in both.reasons} >= {"stalled", "backing_up"}
    healths = [
        queue_health.Health(),
        both,
        assess(stats(ready=5, oldest_ready_age=400.0), workers=0),
        assess(stats(ready=5, oldest_ready_age=400.0), workers=0),
        assess(stats(ready=5, oldest_ready_age=150.0), workers=1),
    ]
    assert queue_health.summary(healths) == "1 retention risk, 2 stalled, 1 backing up"
    assert queue_health.summary([queue_health.Health()]) == "all healthy"


# -- thresholds as settings ---------------------------------------------------------------------------
def test_thresholds_are_queue_settings_with_defaults(make_queue):
    name = make_queue("orders", health_stalled_after=30)
    q = queues.get_queue(name)
    assert q.health_stalled_after == timedelta(seconds=30) and q.health_backing_up_after is None
    t = queue_health.thresholds_of(q)
    assert (t.stalled_after, t.backing_up_after, t.retention_warning) == (30.0, 120.0, 86400.0)
    queues.update_queue(name, health_stalled_after=None, health_retention_warning=timedelta(hours=6))
    q = queues.get_queue(name)
    assert (q.health_stalled_after, q.health_retention_warning) == (None, timedelta(hours=6))
    for bad in (0, -1, float("inf"), "5m", True, 10**30):
        with pytest.raises(InvalidQueueSettings, match="health_stalled_after"):
            queues.update_queue(name, health_stalled_after=bad)


def test_the_settings_form_takes_thresholds_in_human_units_and_audits_the_change(make_queue, client_for):
    name = make_queue("orders")
    form = {
        "kind": "standard",
        "visibility_timeout": "30s",
        "max_receives": "5",
        "dead_letter_queue": "orders.dlq",
        "default_delay": "0s",
        "retention": "4d",
        "max_message_size": "256 KiB",
        "dedup_window": "5m",
        "health_backing_up_after": "",
        "health_stalled_after": "1m30s",
        "health_dead_letter_window": "",
        "health_retention_warning": "12h",
    }
    c = client_for("operator")
    response = c.post(reverse("queues:queue-settings", args=[name]), form)
    assert response.status_code == 302, response.content
    q = queues.get_queue(name)
    assert (q.health_stalled_after, q.health_retention_warning, q.health_backing_up_after) == (
        timedelta(seconds=90),
        timedelta(hours=12),
        None,
    )
    event = AuditEvent.objects.get(action="update_queue_settings", outcome="ok")
    assert event.detail["changes"]["health_stalled_after"] == [None, 90.0]
    page = c.get(reverse("queues:queue-detail", args=[name])).content.decode()
    assert 'value="1m30s"' in page and 'value="4d"' in page and 'value="256KiB"' in page
    assert 'placeholder="2m (default)"' in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("retention", "4x", "Invalid duration &#x27;4x&#x27;: use seconds (30, 2.5) or a number with a unit"),
        ("retention", "-1d", "Use a duration from 1m to 365d, got &#x27;-1d&#x27;"),
        ("retention", "1e400s", "Invalid duration &#x27;1e400s&#x27;"),
        ("retention", "1e400", "Invalid duration &#x27;1e400&#x27;"),
        ("retention", "4\x00d", "Invalid duration &#x27;4\\x00d&#x27;"),
        ("retention", "\u0664d", "Invalid duration &#x27;\u0664d&#x27;"),  # an Arabic-Indic four
        ("retention", "400d", "Use a duration from 1m to 365d, got &#x27;400d&#x27;"),
        ("health_stalled_after", "0s", "Use a duration from 1s to 365d"),
        ("max_message_size", "17 MiB", "Use a size from 16B to 16MiB, got &#x27;17 MiB&#x27;"),
        ("max_message_size", "256 KB!", "Invalid size &#x27;256 KB!&#x27;: use bytes (262144) or a number with a unit"),
    ],
)
def test_bad_units_are_a_400_with_a_clear_form_error(make_queue, client_for, field, value, message):
    name = make_queue("orders")
    form = {
        "kind": "standard",
        "visibility_timeout": "30",
        "max_receives": "5",
        "dead_letter_queue": "",
        "default_delay": "0",
        "retention": "4d",
        "max_message_size": "256KiB",
        "dedup_window": "300",
        field: value,
    }
    response = client_for("operator").post(reverse("queues:queue-settings", args=[name]), form)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert queues.get_queue(name).retention == timedelta(days=4)
    assert AuditEvent.objects.filter(action="update_queue_settings", outcome="error").exists()


def test_mq_queue_sets_and_resets_thresholds(make_queue):
    name = make_queue("orders")
    out = io.StringIO()
    call_command("mq_queue", "update", name, "--health-stalled-after", "2m", "--retention", "5d", stdout=out)
    assert "health-stalled-after=2m" in out.getvalue() and "retention=5d" in out.getvalue()
    assert queues.get_queue(name).health_stalled_after == timedelta(minutes=2)
    call_command("mq_queue", "update", name, "--health-stalled-after", "default", stdout=io.StringIO())
    assert queues.get_queue(name).health_stalled_after is None
    listed = io.StringIO()
    call_command("mq_queue", "list", "--json", stdout=listed)
    assert json.loads(listed.getvalue())[0]["health_stalled_after"] is None


# -- where it shows -----------------------------------------------------------------------------------
@pytest.fixture
def troubled(make_queue, make_worker):
    """orders: 1,500 ready waiting 12 min, no worker (stalled); emails: busy and served (healthy);
    orders.dlq: 3 dead letters (a dead-letter queue, healthy)."""
    make_queue("orders", max_receives=1)
    make_queue("emails")
    queues.send_batch("orders", [{"n": i} for i in range(1503)])
    for d in queues.receive("orders", max_messages=3):
        queues.nack(d.receipt, error="boom")
    Message.objects.filter(queue__name="orders").update(available_at=timezone.now() - timedelta(minutes=12))
    queues.send_batch("emails", [{"n": i} for i in range(2000)])
    make_worker(["emails"])


def badge(html: str, name: str) -> str:
    match = re.search(rf'data-health="{re.escape(name)}" data-health-state="([a-z_]+)"', html)
    assert match, f"no badge for {name}"
    return match.group(1)


def test_queue_list_shows_badges_and_puts_unhealthy_queues_first(troubled, client_for):
    html = client_for("viewer").get(reverse("queues:queue-list")).content.decode()
    assert badge(html, "orders") == "stalled" and badge(html, "emails") == "healthy"
    order = re.findall(r'data-health="([^"]+)"', html)
    assert order[0] == "orders"
    assert "no live worker serves it" in html  # the reasons, in the badge's title
    assert ">dead-letter</td>" in html  # the kind column names a dead-letter queue as such


def test_overview_summarises_health_and_sorts_dead_letter_queues_below_busy_ones(troubled, client_for):
    html = client_for("viewer").get(reverse("queues:overview")).content.decode()
    assert re.search(r"data-health-summary>1 stalled<", html)
    order = re.findall(r'data-health="([^"]+)"', html)
    assert order == ["orders", "emails", "orders.dlq", "emails.dlq"]
    # the failures card leads to the failing messages, not the audit log
    link = re.search(
        r'href="([^"]*/messages/\?q=state%3Adelayed%20state%3Adead)"[^>]*><span class="card-label">'
        r"Failures",
        html,
    )
    assert link
    browser = client_for("viewer").get(link.group(1).replace("&amp;", "&"))
    assert browser.status_code == 200
    for dead in Message.objects.filter(queue__name="orders.dlq").values_list("id", flat=True):
        assert f"/messages/{dead}/" in browser.content.decode()  # each dead letter is listed


def test_queue_page_shows_the_badge_and_its_reasons(troubled, client_for):
    html = client_for("viewer").get(reverse("queues:queue-detail", args=["orders"])).content.decode()
    assert badge(html, "orders") == "stalled"
    assert re.search(r'data-health-reasons="orders">1,500 ready, waiting 12m0\ds, and no live worker', html)


def test_no_progress_in_the_window_comes_from_stored_samples(troubled, make_worker, make_sample):
    make_worker(["orders"])
    s = queues.queue_stats("orders")
    make_sample("orders", ago=400, acked_total=s.acked_total, failed_total=s.failed_total, dead=3)
    make_sample("orders", ago=1000, acked_total=s.acked_total, failed_total=s.failed_total, dead=0)
    [h] = queue_health.assess_all([s]).values()
    assert h.state == "stalled" and "nothing acked or failed for 6m4" in h.detail
    assert "dead_letters_growing" in {r.state for r in h.reasons}  # 3 now, 0 fifteen minutes ago


def test_pushed_samples_carry_each_queues_health_and_the_summary(troubled):
    message = Sampler().tick()
    assert message["queues"]["orders"]["health"]["state"] == "stalled"
    assert message["queues"]["orders"]["health"]["pill"] == "dead"
    assert message["queues"]["emails"]["health"]["state"] == "healthy"
    assert message["health"] == {"summary": "1 stalled", "counts": {"stalled": 1}}


def test_mq_stats_shows_health_in_text_and_json(troubled):
    out = io.StringIO()
    call_command("mq_stats", stdout=out)
    lines = {line.split()[0]: line.split() for line in out.getvalue().splitlines() if line.strip()}
    assert lines["orders"][1] == "standard" and lines["orders"][14] == "stalled"  # after EXPIRED, CANCELLED
    assert lines["orders.dlq"][1] == "dead-letter"
    assert "orders: stalled: 1,500 ready" in out.getvalue()
    out = io.StringIO()
    call_command("mq_stats", "orders", "--json", stdout=out)
    assert json.loads(out.getvalue())[0]["health"]["state"] == "stalled"


def test_metrics_endpoint_has_health_states_and_the_dead_letter_kind(troubled, client_for):
    text = client_for("viewer").get(reverse("queues:metrics")).content.decode()
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert found[("mqadmin_queue_health", (("queue", "orders"), ("state", "stalled")))] == 1
    assert found[("mqadmin_queue_health", (("queue", "orders"), ("state", "healthy")))] == 0
    assert found[("mqadmin_queue_health", (("queue", "emails"), ("state", "healthy")))] == 1
    assert found[("mqadmin_queue_info", (("kind", "dead-letter"), ("queue", "orders.dlq")))] == 1
    assert found[("mqadmin_queue_info", (("kind", "standard"), ("queue", "orders")))] == 1


def test_health_costs_a_fixed_number_of_queries_whatever_the_number_of_queues(troubled, make_queue, client_for):
    c = client_for("viewer")
    with CaptureQueriesContext(connection) as few:
        c.get(reverse("queues:overview"))
    for i in range(10):
        make_queue(f"more{i}")
    with CaptureQueriesContext(connection) as many:
        c.get(reverse("queues:overview"))
    assert len(many) == len(few)


def test_services_reject_bad_thresholds_with_the_settings_name(make_queue, users):
    name = make_queue("orders")
    with pytest.raises(services.ActionFailed, match="health_dead_letter_window"):
        services.update_queue_settings(actor=users["operator"], queue=name, settings={"health_dead_letter_window": -5})
