"""``/api/series/``: history for the charts, at the resolution that suits the window; errors as JSON."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from queues.models import QueueSample

URL = "/api/series/"


def _db_now():
    with connection.cursor() as cur:
        cur.execute("SELECT statement_timestamp()")
        return cur.fetchone()[0]


@pytest.mark.parametrize("role", ["anonymous", "staff"])
def test_series_needs_the_view_permission(role, client_for, make_queue):
    make_queue("orders")
    response = client_for(role).get(URL, {"queue": "orders", "window": "300"})
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"window": "abc"}, 400, "whole number of seconds"),
        ({"window": "5"}, 400, "from 10 to"),
        ({"window": str(400 * 86400)}, 400, "the history kept"),
        ({"window": "300", "queue": "Bad Name!"}, 400, "queue"),
        ({"window": "300", "queue": "nope"}, 404, "does not exist"),
    ],
)
def test_bad_parameters_get_a_json_error(params, status, words, client_for):
    response = client_for("viewer").get(URL, params)
    assert response.status_code == status
    assert words in response.json()["error"]


def test_only_get_is_allowed(client_for):
    response = client_for("viewer").post(URL, {"window": "300"})
    assert response.status_code == 405
    assert response["Allow"] == "GET"


@pytest.mark.parametrize(
    ("window", "resolution"), [(300, 1), (3600, 1), (86400, 60), (7 * 86400, 3600)]
)
def test_window_picks_the_resolution(window, resolution, client_for, make_queue):
    make_queue("orders")
    body = client_for("viewer").get(URL, {"queue": "orders", "window": window}).json()
    assert body["resolution"] == resolution
    assert body["window"] == window


def test_queue_series_has_counts_and_rates_from_consecutive_counters(client_for, make_queue):
    make_queue("orders")
    now = _db_now()
    for i, (sent, acked) in enumerate([(100, 50), (110, 52), (130, 52)]):
        QueueSample.objects.create(queue_name="orders", at=now - timedelta(seconds=30 - 2 * i), resolution=1,
                                   ready=5 + i, in_flight=1, delayed=2, dead=3, oldest_ready_age=1.5 * i,
                                   sent_total=sent, acked_total=acked)
    QueueSample.objects.create(queue_name="orders", at=now - timedelta(seconds=600), resolution=1, ready=99)
    QueueSample.objects.create(queue_name="emails", at=now - timedelta(seconds=20), resolution=1, ready=77)

    body = client_for("viewer").get(URL, {"queue": "orders", "window": 300}).json()

    s = body["series"]
    assert len(body["t"]) == 3  # the 10-minute-old sample is outside the window; emails is another queue
    assert body["t"] == sorted(body["t"])
    assert s["ready"] == [5, 6, 7]
    assert s["depth"] == [8, 9, 10]
    assert s["dead"] == [3, 3, 3]
    assert s["oldest_ready_age"] == [0.0, 1.5, 3.0]
    assert s["rate_in"] == [None, 5.0, 10.0]  # (110-100)/2 s, (130-110)/2 s
    assert s["rate_out"] == [None, 1.0, 0.0]


def test_totals_add_ordinary_queues_and_count_dead_letters_as_the_dlqs_depth(client_for, make_queue):
    make_queue("a", dead_letter_queue="shared.dlq")
    make_queue("b", dead_letter_queue="shared.dlq")
    now = _db_now()
    for at, sent_a in ((now - timedelta(seconds=2), 10), (now - timedelta(seconds=1), 14)):
        QueueSample.objects.create(queue_name="a", at=at, ready=3, dead=4, sent_total=sent_a, oldest_ready_age=9.0)
        QueueSample.objects.create(queue_name="b", at=at, ready=2, dead=4, sent_total=0, oldest_ready_age=2.0)
        QueueSample.objects.create(queue_name="shared.dlq", at=at, ready=4, sent_total=0, oldest_ready_age=500.0)

    body = client_for("viewer").get(URL, {"window": 300}).json()

    s = body["series"]
    assert body["queue"] == ""
    assert s["ready"] == [5, 5]  # a + b; the dead letters are not "ready" work
    assert s["dead"] == [4, 4]  # once, not once per source queue
    assert s["depth"] == [9, 9]
    assert s["oldest_ready_age"] == [9.0, 9.0]  # the dead-letter queue's old messages are not a backlog
    assert s["rate_in"] == [None, 4.0]


def test_a_gap_in_the_history_gives_no_rate(client_for, make_queue):
    make_queue("orders")
    now = _db_now()
    QueueSample.objects.create(queue_name="orders", at=now - timedelta(seconds=100), sent_total=0)
    QueueSample.objects.create(queue_name="orders", at=now - timedelta(seconds=10), sent_total=900)
    body = client_for("viewer").get(URL, {"queue": "orders", "window": 300}).json()
    assert body["series"]["rate_in"] == [None, None]
