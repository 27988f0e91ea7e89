"""Issue 10's smaller items: the browser's order and total, a message's neighbours, "publish a copy",
fifo-only fields, what workers are busy with and stopping one, bulk pause/resume, the 403 page's ways out,
and the password pages."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied

import queues
from queues import search, selectors, services, workload
from queues.models import AuditEvent, Queue, Worker, WorkerState
from queues.worker import fleet
from tests.conftest import wait_for

# The worker tests' fixtures: a real mq_worker process with the test handlers.
from tests.worker.conftest import (  # noqa: F401
    handled,
    scratch,
    start_worker,
    wait_exit,
    worker_env,
    worker_row,
    wt_dir,
)

pytestmark = pytest.mark.django_db


# -- message browser -----------------------------------------------------------------------------------
def test_browser_walks_newest_first_and_back(make_queue, client_for, settings):
    make_queue("orders")
    ids = queues.send_batch("orders", [{"n": i} for i in range(7)])
    f = search.parse_search("", queue="orders")
    first = selectors.search_messages(f, limit=3, newest_first=True)
    assert [r.id for r in first.rows] == ids[::-1][:3]
    second = selectors.search_messages(f, limit=3, newest_first=True, after=first.next_after)
    assert [r.id for r in second.rows] == ids[::-1][3:6]
    back = selectors.search_messages(f, limit=3, newest_first=True, before=second.prev_before)
    assert [r.id for r in back.rows] == [r.id for r in first.rows]

    html = client_for("viewer").get("/queues/orders/messages/?order=newest").content.decode()
    assert html.index(f">{ids[-1]}</a>") < html.index(f">{ids[0]}</a>")
    assert "7 of 7" in html
    assert client_for("viewer").get("/messages/?order=sideways").status_code == 400


def test_total_uses_the_queue_counters_or_stops_at_the_cap(make_queue, monkeypatch):
    make_queue("orders")
    queues.send_batch("orders", [{"n": i} for i in range(30)])
    f = search.parse_search("", queue="orders")
    stats = selectors.get_queue_stats("orders")
    assert selectors.count_messages(f, stats=stats) == selectors.MessageTotal(count=30)
    monkeypatch.setattr(selectors, "COUNT_CAP", 10)
    capped = selectors.count_messages(search.parse_search("state:ready", queue="orders"))
    assert capped == selectors.MessageTotal(count=10, at_least=True)


def test_total_gives_up_past_its_time_budget(make_queue, monkeypatch):
    make_queue("orders")
    queues.send("orders", {"n": 1})
    monkeypatch.setattr(selectors, "COUNT_BUDGET_MS", 1)
    # pg_sleep inside the counted query stands in for a filter that reads a huge table.
    real = search.message_queryset
    monkeypatch.setattr(selectors, "message_queryset",
                        lambda f: real(f).extra(where=["pg_sleep(0.05) IS NOT NULL"]))
    total = selectors.count_messages(search.parse_search("state:ready", queue="orders"))
    assert total == selectors.MessageTotal(count=None)
    with selectors.conf.db().cursor() as cur:  # the budget did not outlive the count
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone()[0] == "0"


# -- message page ----------------------------------------------------------------------------------------
def test_message_page_links_its_neighbours_in_the_queue(make_queue, client_for):
    make_queue("orders")
    make_queue("other")
    a = queues.send("orders", {"n": 1}, priority=5)
    queues.send("other", {"n": 2})
    b = queues.send("orders", {"n": 3})
    c = queues.send("orders", {"n": 4}, priority=-3)
    q = Queue.objects.get(name="orders")
    assert selectors.get_message_neighbours(q, b) == selectors.Neighbours(previous=a, next=c)
    assert selectors.get_message_neighbours(q, a) == selectors.Neighbours(previous=None, next=b)
    html = client_for("viewer").get(f"/messages/{b}/").content.decode()
    assert f'rel="prev" href="/messages/{a}/"' in html and f'rel="next" href="/messages/{c}/"' in html


def test_publish_a_copy_prefills_the_form_and_is_audited_as_a_publish(make_queue, make_user, client_for):
    make_queue("jobs", kind="fifo")
    original = queues.send("jobs", {"job": 7}, headers={"tenant": "acme"}, group="g1", dedup_id="d1", priority=4)
    publisher = client_for("publisher")
    page = publisher.get(f"/messages/{original}/").content.decode()
    assert f'href="/queues/jobs/publish/?copy={original}"' in page
    form = publisher.get(f"/queues/jobs/publish/?copy={original}").context["form"]
    assert json.loads(form.initial["body"]) == {"job": 7}
    assert json.loads(form.initial["headers"]) == {"tenant": "acme"}
    assert form.initial["group"] == "g1" and form.initial["priority"] == 4 and "dedup_id" not in form.initial
    response = publisher.post("/queues/jobs/publish/", {
        "body": '{"job": 8}', "headers": '{"tenant": "acme"}', "priority": "4", "group": "g1",
        "copied_from": str(original)})
    assert response.status_code == 302
    event = AuditEvent.objects.filter(action="publish_message").latest("id")
    assert event.outcome == "ok" and event.detail["copied_from"] == original
    assert client_for("viewer").get(f"/queues/jobs/publish/?copy={original}").status_code == 403
    assert publisher.get("/queues/jobs/publish/?copy=99999999").status_code == 404


def test_copy_of_a_hidden_body_goes_through_the_audited_reveal(make_queue, client_for, settings):
    settings.MQADMIN = {**settings.MQADMIN, "HIDE_BODIES": True}
    make_queue("orders")
    original = queues.send("orders", {"secret": 1})
    assert client_for("publisher").get(f"/queues/orders/publish/?copy={original}").status_code == 200
    assert AuditEvent.objects.filter(action="reveal_body", outcome="ok").count() == 1


def test_group_key_is_offered_for_fifo_queues_only(make_queue, client_for):
    make_queue("plain")
    make_queue("jobs", kind="fifo")
    publisher = client_for("publisher")
    assert "group" not in publisher.get("/queues/plain/publish/").context["form"].fields
    assert "group" in publisher.get("/queues/jobs/publish/").context["form"].fields
    plain = queues.send("plain", {"n": 1})
    assert "<dt>Group</dt>" not in publisher.get(f"/messages/{plain}/").content.decode()
    fifo = queues.send("jobs", {"n": 1}, group="g")
    assert "<dt>Group</dt>" in publisher.get(f"/messages/{fifo}/").content.decode()


# -- workers -------------------------------------------------------------------------------------------
def test_workers_page_shows_what_each_worker_holds_and_its_utilisation(make_queue, make_worker, client_for):
    make_queue("orders")
    queues.send_batch("orders", [{"n": i} for i in range(3)])
    held = queues.receive("orders", max_messages=3, visibility_timeout=600)
    worker = make_worker(["orders"], concurrency=4, in_flight=3, held_receipts=[d.receipt for d in held])
    [load] = workload.with_load(workload.list_workers())
    assert load.held_count == 3 and load.utilisation == 0.75
    assert [h.id for h in load.held] == sorted(d.id for d in held)
    html = client_for("operator").get("/workers/").content.decode()
    assert f'data-worker-id="{worker.pk}"' in html and 'data-held="3"' in html and "75%" in html
    assert f"/workers/{worker.pk}/stop/" in html
    assert f"/workers/{worker.pk}/stop/" not in client_for("viewer").get("/workers/").content.decode()


def test_stop_worker_is_permission_checked_audited_and_refused_for_stopped_workers(make_worker, users):
    live = make_worker(["orders"])
    stopped = make_worker(["orders"], state="stopped")
    with pytest.raises(PermissionDenied):
        services.stop_worker(actor=users["viewer"], worker_id=live.pk)
    assert services.stop_worker(actor=users["operator"], worker_id=live.pk) == live.name
    assert Worker.objects.get(pk=live.pk).stop_requested_at is not None
    with pytest.raises(services.ActionFailed, match="not running"):
        services.stop_worker(actor=users["operator"], worker_id=stopped.pk)
    with pytest.raises(services.NotFound):
        services.stop_worker(actor=users["operator"], worker_id=987654)
    outcomes = list(AuditEvent.objects.filter(action="stop_worker").order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["denied", "ok", "error", "error"]


@pytest.mark.django_db(transaction=True)
def test_worker_asked_to_stop_finishes_what_it_holds_and_exits(make_queue, handled, start_worker, wt_dir):  # noqa: F811
    make_queue("wt-record", visibility_timeout=60)
    [held] = queues.send_batch("wt-record", [{"mark": True, "gate": True}])
    worker = start_worker("wt-record", "--concurrency", "2")
    wait_for(lambda: (wt_dir / f"started-{held}").exists(), timeout=20)
    row = worker_row(worker.pid)
    assert fleet.request_stop(row.pk)
    worker.wait_for_log("event=stop_requested", timeout=10)  # read on its next beat
    later = queues.send("wt-record", {"n": 2})
    assert worker.proc.poll() is None, "it waits for the message it holds"
    (wt_dir / f"release-{held}").touch()
    code, _ = wait_exit(worker, timeout=20)
    assert code == 0, worker.output()
    assert handled.times(held) == 1 and handled.times(later) == 0, "finished what it held, claimed nothing new"
    assert worker_row(worker.pid).state == WorkerState.STOPPED
    assert not fleet.request_stop(row.pk), "a stopped worker cannot be asked again"


# -- queue list: bulk pause/resume -------------------------------------------------------------------
def test_bulk_pause_and_resume_go_through_the_services(make_queue, client_for):
    for name in ("a", "b", "c"):
        make_queue(name)
    operator = client_for("operator", csrf=False)
    response = operator.post("/bulk-queues/", {"action": "pause", "name": ["a", "b"]})
    assert response.status_code == 302
    assert sorted(Queue.objects.filter(paused=True).values_list("name", flat=True)) == ["a", "b"]
    assert AuditEvent.objects.filter(action="pause_queue", outcome="ok").count() == 2
    operator.post("/bulk-queues/", {"action": "resume", "name": ["a"]})
    assert list(Queue.objects.filter(paused=True).values_list("name", flat=True)) == ["b"]
    # An unknown name changes nothing at all.
    assert operator.post("/bulk-queues/", {"action": "pause", "name": ["c", "nope"]}).status_code == 404
    assert not Queue.objects.get(name="c").paused
    assert operator.post("/bulk-queues/", {"action": "pause"}).status_code == 400
    assert client_for("viewer").post("/bulk-queues/", {"action": "pause", "name": ["c"]}).status_code == 403
    assert AuditEvent.objects.filter(action="pause_queue", outcome="denied").count() == 1
    html = operator.get("/queues/").content.decode()
    assert 'form="queue-bulk"' in html
    assert 'form="queue-bulk"' not in client_for("viewer").get("/queues/").content.decode()


def test_bulk_pause_needs_csrf(make_queue, client_for):
    make_queue("a")
    response = client_for("operator", csrf=True).post("/bulk-queues/", {"action": "pause", "name": ["a"]})
    assert response.status_code == 403
    assert not Queue.objects.get(name="a").paused


# -- 403 and password pages --------------------------------------------------------------------------
def test_forbidden_page_offers_ways_out_that_are_not_the_same_403(make_user, client):
    nobody = make_user(None)
    client.force_login(nobody)
    response = client.get("/queues/")
    html = response.content.decode()
    assert response.status_code == 403
    assert "Log in as someone else" in html and 'action="/accounts/logout/"' in html
    assert 'href="/">Overview' not in html


def test_password_reset_pages_use_the_dashboards_look(client, db):
    for path in ("/accounts/password_reset/", "/accounts/password_reset/done/", "/accounts/reset/x/y/",
                 "/accounts/reset/done/"):
        html = client.get(path, follow=True).content.decode()
        assert "queues/dashboard.css" in html, path
        assert "admin/css" not in html, path
