"""``/metrics``: the figures, read back with prometheus_client's own parser, and who may scrape."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

import queues
from queues.metrics import durations
from queues.metrics.sampler import Sampler
from queues.models import HandlerDurationTotal, Worker
from tests.observability.conftest import value

TOKEN = "s3cret-token-for-prometheus-0123456789"


def _fill(make_queue) -> str:
    """A queue with 2 acked, 1 nacked, 1 dead-lettered, 1 in flight, 2 ready and 1 delayed message."""
    name = make_queue("orders", max_receives=5)
    for n in range(7):
        queues.send(name, {"n": n})
    queues.send(name, {"later": True}, delay=3600)
    first = queues.receive(name, max_messages=5)
    queues.ack(first[0].receipt)
    queues.ack(first[1].receipt)
    queues.nack(first[2].receipt, delay=3600, error="boom")
    queues.nack(first[3].receipt, dead_letter=True, error="poison")
    # first[4] stays in flight
    return name


def test_metrics_parsed_by_prometheus_client(make_queue, scrape) -> None:
    name = _fill(make_queue)
    s = scrape()
    assert value(s, "mqadmin_queue_ready", queue=name) == 2
    assert value(s, "mqadmin_queue_in_flight", queue=name) == 1
    assert value(s, "mqadmin_queue_delayed", queue=name) == 2  # the delayed send and the nacked retry
    assert value(s, "mqadmin_queue_dead", queue=name) == 1
    assert value(s, "mqadmin_queue_dead", queue=f"{name}.dlq") == 0
    assert value(s, "mqadmin_queue_oldest_ready_age_seconds", queue=name) >= 0
    assert value(s, "mqadmin_messages_sent_total", queue=name) == 8
    assert value(s, "mqadmin_messages_acked_total", queue=name) == 2
    assert value(s, "mqadmin_messages_failed_total", queue=name) == 2
    assert value(s, "mqadmin_messages_dead_lettered_total", queue=name) == 1
    assert value(s, "mqadmin_messages_sent_total", queue=f"{name}.dlq") == 1
    assert value(s, "mqadmin_queue_is_dead_letter_queue", queue=f"{name}.dlq") == 1
    assert value(s, "mqadmin_workers_online") == 0
    assert value(s, "mqadmin_db_table_live_tuples", table="queues_message") is not None
    assert value(s, "mqadmin_db_table_size_bytes", table="queues_message") > 0
    assert value(s, "mqadmin_db_oldest_snapshot_age_seconds") is not None


def test_metric_families_follow_prometheus_conventions(make_queue, client_for) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    _fill(make_queue)
    text = client_for("viewer").get(reverse("queues:metrics")).content.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, family in families.items():
        assert name.startswith("mqadmin_"), name
        assert family.documentation, name
    for counter in ("mqadmin_messages_sent", "mqadmin_messages_acked", "mqadmin_messages_failed",
                    "mqadmin_messages_dead_lettered", "mqadmin_worker_processed", "mqadmin_worker_failed"):
        assert families[counter].type == "counter", counter
        assert all(s.name == f"{counter}_total" for s in families[counter].samples)
    assert families["mqadmin_handler_duration_seconds"].type == "histogram"


def test_gauges_come_from_the_stored_sample_without_touching_the_message_table(make_queue, scrape) -> None:
    name = make_queue("sampled")
    queues.send(name, {"n": 1})
    Sampler().tick()  # stores the 1 s sample: ready 1
    queues.send(name, {"n": 2})  # not sampled yet: a live read would say 2
    with CaptureQueriesContext(connection) as queries:
        s = scrape()
    assert value(s, "mqadmin_queue_ready", queue=name) == 1
    # The counters are live (the counter rows), the gauges the sample's: no statement reads the backlog.
    assert value(s, "mqadmin_messages_sent_total", queue=name) == 2
    assert not [q["sql"] for q in queries.captured_queries if re.search(r"(FROM|JOIN)\s+queues_message\b", q["sql"])]
    assert 0 <= value(s, "mqadmin_sample_age_seconds") < 5


def test_gauges_are_read_live_when_the_sampler_is_not_running(make_queue, scrape) -> None:
    name = make_queue("unsampled")
    queues.send(name, {"n": 1})
    Sampler().tick()
    with connection.cursor() as cur:  # the sampler stopped a minute ago
        cur.execute("UPDATE queues_sample SET at = at - interval '60 seconds'")
    queues.send(name, {"n": 2})
    s = scrape()
    assert value(s, "mqadmin_queue_ready", queue=name) == 2
    assert value(s, "mqadmin_sample_age_seconds") == 0


def _durations(queue: str, handler: str, seconds: list[float]) -> list[dict]:
    h = durations.DurationHistogram()
    for x in seconds:
        h.observe(queue, handler, x)
    return h.snapshot()


def test_handler_histogram_sums_every_worker_row_and_survives_pruning(make_queue, scrape, make_user) -> None:
    from django.utils import timezone

    now = timezone.now()
    rows = []
    for n, secs in enumerate(([0.003, 0.2, 0.2], [0.7, 400.0])):
        rows.append(Worker.objects.create(
            name=f"h:{n}", host="h", pid=n, queues=["orders"], state="stopped", started_at=now, last_beat_at=now,
            handler_durations=_durations("orders", "app.handle", secs)))
    s = scrape()
    labels = {"queue": "orders", "handler": "app.handle"}
    assert value(s, "mqadmin_handler_duration_seconds_count", **labels) == 5
    assert value(s, "mqadmin_handler_duration_seconds_sum", **labels) == pytest.approx(401.103)
    assert value(s, "mqadmin_handler_duration_seconds_bucket", le="0.005", **labels) == 1
    assert value(s, "mqadmin_handler_duration_seconds_bucket", le="0.25", **labels) == 3
    assert value(s, "mqadmin_handler_duration_seconds_bucket", le="1.0", **labels) == 4
    assert value(s, "mqadmin_handler_duration_seconds_bucket", le="300.0", **labels) == 4
    assert value(s, "mqadmin_handler_duration_seconds_bucket", le="+Inf", **labels) == 5

    assert durations.fold_and_delete([rows[0].pk]) == 1
    assert not Worker.objects.filter(pk=rows[0].pk).exists()
    assert HandlerDurationTotal.objects.count() == 1
    after = scrape()
    for le in ("0.005", "0.25", "1.0", "+Inf"):
        assert value(after, "mqadmin_handler_duration_seconds_bucket", le=le, **labels) == value(
            s, "mqadmin_handler_duration_seconds_bucket", le=le, **labels)
    durations.fold_and_delete([rows[1].pk])  # folding into an existing total adds up
    assert value(scrape(), "mqadmin_handler_duration_seconds_count", **labels) == 5


def test_histogram_rows_written_with_other_bounds_are_left_out(scrape) -> None:
    from django.utils import timezone

    now = timezone.now()
    foreign = [{"queue": "orders", "handler": "x", "bounds": [1.0], "counts": [3, 1], "sum": 9.0, "count": 4}]
    Worker.objects.create(name="old", host="h", pid=1, queues=[], started_at=now, last_beat_at=now,
                          handler_durations=foreign)
    assert value(scrape(), "mqadmin_handler_duration_seconds_count", queue="orders", handler="x") is None


def test_worker_series(make_queue, scrape) -> None:
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    Worker.objects.create(name="w-live", host="a", pid=1, queues=["orders", "mail"], started_at=now, last_beat_at=now,
                          processed=12, failed=3, in_flight=2)
    Worker.objects.create(name="w-dead", host="b", pid=2, queues=["orders"], state="dead", started_at=now,
                          last_beat_at=now - timedelta(seconds=40), processed=5)
    s = scrape()
    assert value(s, "mqadmin_worker_up", worker="w-live", host="a") == 1
    assert value(s, "mqadmin_worker_up", worker="w-dead", host="b") == 0
    assert value(s, "mqadmin_worker_processed_total", worker="w-live", host="a") == 12
    assert value(s, "mqadmin_worker_failed_total", worker="w-live", host="a") == 3
    assert value(s, "mqadmin_worker_in_flight", worker="w-live", host="a") == 2
    assert value(s, "mqadmin_worker_last_heartbeat_age_seconds", worker="w-dead", host="b") >= 39
    assert value(s, "mqadmin_workers_online") == 1
    assert value(s, "mqadmin_queue_workers_online", queue="orders") == 1
    assert value(s, "mqadmin_queue_workers_online", queue="mail") == 1


def test_redrives_in_progress(make_queue, scrape) -> None:
    from queues.models import Queue, Redrive

    name = make_queue("orders")
    dlq = Queue.objects.get(name=f"{name}.dlq")
    Redrive.objects.create(source=dlq, state="running", total=10, moved=4)
    Redrive.objects.create(source=dlq, state="finished", total=3, moved=3)
    s = scrape()
    assert value(s, "mqadmin_redrives_in_progress", queue=dlq.name) == 1
    assert value(s, "mqadmin_redrive_remaining_messages", queue=dlq.name) == 6


# -- who may scrape ---------------------------------------------------------------------------------
def _get(client: Client, **headers: str):
    return client.get(reverse("queues:metrics"), headers=headers)


def test_anonymous_scrape_refused_with_a_bearer_challenge(db, settings) -> None:
    settings.MQADMIN = {"METRICS_TOKEN": TOKEN}
    response = _get(Client())
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"METRICS_TOKEN" in response.content
    assert b"mqadmin_queue_ready" not in response.content


def test_scrape_with_the_token_allowed(db, settings) -> None:
    settings.MQADMIN = {"METRICS_TOKEN": TOKEN}
    response = _get(Client(), Authorization=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert b"mqadmin_workers_online" in response.content


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}"])
def test_scrape_with_a_wrong_token_refused(db, settings, header: str) -> None:
    settings.MQADMIN = {"METRICS_TOKEN": TOKEN}
    response = _get(Client(), Authorization=header)
    assert response.status_code == 401
    assert b"mqadmin_" not in response.content


def test_no_token_configured_refuses_every_bearer(db, settings) -> None:
    settings.MQADMIN = {}
    assert _get(Client(), Authorization="Bearer ").status_code == 401
    assert _get(Client(), Authorization="Bearer None").status_code == 401


def test_scrape_as_viewer_allowed_and_without_permission_forbidden(client_for, settings) -> None:
    settings.MQADMIN = {"METRICS_TOKEN": TOKEN}
    assert _get(client_for("viewer")).status_code == 200
    response = _get(client_for("staff"))
    assert response.status_code == 403
    assert b"view_dashboard" in response.content


def test_public_flag_opens_the_endpoint(db, settings) -> None:
    settings.MQADMIN = {"METRICS_PUBLIC": True}
    assert _get(Client()).status_code == 200


def test_without_prometheus_client_only_the_endpoint_says_what_to_install(client_for, monkeypatch) -> None:
    import importlib
    import sys

    from queues.metrics import views

    # As if the optional extra "prometheus" were not installed.
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.exposition", None)
    monkeypatch.setitem(sys.modules, "queues.metrics.prometheus", None)
    importlib.reload(views)  # the module that queues.urls imports does not need it
    viewer = client_for("viewer")
    response = _get(viewer)
    assert response.status_code == 501
    assert b"django-mqadmin[prometheus]" in response.content
    assert viewer.get(reverse("queues:database")).status_code == 200
    assert _get(Client()).status_code == 401  # still refused before anything else


def test_post_not_allowed(client_for) -> None:
    assert client_for("viewer").post(reverse("queues:metrics")).status_code == 405


def test_openmetrics_negotiated(client_for) -> None:
    response = _get(client_for("viewer"), Accept="application/openmetrics-text; version=1.0.0")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_metrics_settings_checked_at_start(settings) -> None:
    from queues.checks import check_mqadmin_settings

    settings.MQADMIN = {"METRICS_TOKEN": "short", "METRICS_PUBLIC": "yes", "DB_SNAPSHOT_WARN_AFTER": 0}
    errors = check_mqadmin_settings()
    assert sorted(e.msg.split("'")[1] for e in errors) == ["DB_SNAPSHOT_WARN_AFTER", "METRICS_PUBLIC", "METRICS_TOKEN"]
    assert {e.id for e in errors} == {"queues.E011"}
    settings.MQADMIN = {"METRICS_TOKEN": TOKEN, "METRICS_PUBLIC": False, "DB_SNAPSHOT_WARN_AFTER": 60}
    assert check_mqadmin_settings() == []



def test_every_metric_family_is_documented(make_queue, client_for) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.conftest import ROOT

    _fill(make_queue)
    Worker.objects.create(name="w", host="h", pid=1, queues=[], started_at=timezone.now(),
                          last_beat_at=timezone.now(), handler_durations=_durations("orders", "h", [0.1]))
    text = client_for("viewer").get(reverse("queues:metrics")).content.decode()
    docs = (ROOT / "docs" / "observability.md").read_text()
    names = {f.name + ("_total" if f.type == "counter" else "") for f in text_string_to_metric_families(text)}
    assert len(names) >= 29
    assert sorted(n for n in names if f"`{n}`" not in docs) == []


def test_example_alert_rules_pass_promtool() -> None:
    import shutil
    import subprocess

    from tests.conftest import ROOT

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("!!! promtool (Debian's prometheus package) is not installed: the alert rules are NOT checked")
    result = subprocess.run([promtool, "check", "rules", str(ROOT / "docs" / "prometheus" / "mqadmin-alerts.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
