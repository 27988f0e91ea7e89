"""Periodic schedules (queues/schedules.py): occurrences across DST, catch-up, pause, exactly-once under
concurrent schedulers, declared schedules, and the dashboard page and actions."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client
from django.urls import reverse

import queues
from queues import conf, schedules, services
from queues.engine.types import JSONText
from queues.models import AuditEvent, Message, Schedule
from queues.permissions import CommandLineActor
from queues.tasks import periodic
from tests.tasks.tasks import add

CLI = CommandLineActor("cli:test@host")


@pytest.fixture
def reports(db) -> str:
    # No dedup window: a second send of one occurrence would be stored, so the tests see every send.
    queues.create_queue("reports", dedup_window=0)
    return "reports"


def _due(name: str, ago: float) -> None:
    """Make the schedule's next occurrence ``ago`` seconds in the past (on its cron grid: a whole minute)."""
    row = Schedule.objects.get(name=name)
    when = schedules.next_occurrence(row.cron, row.timezone, schedules.database_now() - timedelta(seconds=ago + 60))
    Schedule.objects.filter(name=name).update(next_run_at=when)


# -- occurrences --------------------------------------------------------------------------------------
def test_a_time_skipped_by_spring_forward_runs_at_the_first_minute_after_it():
    # Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; there is no 02:30 that day.
    first = schedules.next_occurrence("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert first == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    second = schedules.next_occurrence("30 2 * * *", "Europe/Berlin", first)
    assert second == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST, back on time


def test_a_time_repeated_by_fall_back_runs_once():
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice; the schedule runs at the first.
    first = schedules.next_occurrence("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC))
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert schedules.next_occurrence("30 2 * * *", "Europe/Berlin", first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_six_fields_give_seconds_and_utc_is_the_default_zone():
    after = datetime(2026, 1, 1, 0, 0, 1, 500, tzinfo=UTC)
    assert schedules.next_occurrence("*/2 * * * * *", "UTC", after) == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    assert schedules.describe("0 3 * * *") == "At 03:00 every day"


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"cron": "61 * * * *"}, "'61 * * * *' is not valid"),
        ({"cron": "* * *"}, "has 3 fields"),
        ({"cron": "0 3 * * *\x00"}, "NUL"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "0 3 * * *", "queue": "nosuch"}, "queue 'nosuch' does not exist"),
        ({"cron": "0 3 * * *", "body": JSONText("{nope")}, "not valid JSON"),
        ({"cron": "0 3 * * *", "body": float("nan")}, "not JSON-serialisable"),
        ({"cron": "0 3 * * *", "task": "tests.tasks.tasks.add"}, "either a queue"),
        ({"cron": "0 3 * * *", "queue": None, "task": "no.such.task"}, "cannot be imported"),
    ],
)
def test_bad_input_names_the_value_and_writes_nothing(reports, kwargs, says):
    spec = {"queue": reports, **kwargs}
    with pytest.raises(schedules.InvalidSchedule, match=re.escape(says)) as raised:
        schedules.schedule("nightly", **spec)
    assert isinstance(raised.value, ValueError)
    assert not Schedule.objects.exists()


def test_a_name_too_long_is_refused(reports):
    with pytest.raises(ValueError, match="invalid schedule name"):
        schedules.schedule("x" * 81, cron="0 3 * * *", queue=reports)
    assert not Schedule.objects.exists()


# -- running -----------------------------------------------------------------------------------------
def test_a_due_occurrence_is_sent_once_with_its_dedup_id(reports):
    # Once a day, at the minute of five seconds ago: exactly one occurrence is due, whatever second of
    # the minute the test runs at (a minutely cron has two due in the first seconds of a minute).
    at = schedules.database_now() - timedelta(seconds=5)
    schedules.schedule("nightly", cron=f"{at.minute} {at.hour} * * *", queue=reports, body={"kind": "daily"})
    assert schedules.run_due() == []  # not due yet: today's occurrence had passed when it was made
    Schedule.objects.filter(name="nightly").update(next_run_at=at.replace(second=0, microsecond=0))
    [fired] = schedules.run_due()
    assert fired.message_id and fired.skipped == 0
    message = Message.objects.get(id=fired.message_id)
    assert message.body == {"kind": "daily"}
    assert message.headers["schedule-occurrence"] == fired.occurrence.isoformat()
    assert schedules.dedup_id("nightly", fired.occurrence) == f"schedule:nightly:{fired.occurrence.isoformat()}"
    row = Schedule.objects.get(name="nightly")
    assert row.last_run_at == fired.occurrence and row.last_message_id == fired.message_id
    assert row.next_run_at > schedules.database_now()
    assert schedules.run_due() == []  # the same occurrence is never sent twice
    assert Message.objects.count() == 1


def test_after_downtime_only_the_latest_missed_occurrence_is_sent(reports):
    schedules.schedule("minutely", cron="* * * * *", queue=reports)
    _due("minutely", ago=3600)  # an hour of missed minutes
    [fired] = schedules.run_due()
    now = schedules.database_now()
    assert 55 <= fired.skipped <= 62
    assert timedelta(0) <= now - fired.occurrence < timedelta(seconds=60)  # the latest one, not the oldest
    assert Message.objects.count() == 1


def test_without_catch_up_a_late_occurrence_is_skipped(reports):
    half_an_hour_ago = schedules.database_now() - timedelta(minutes=30)
    daily = f"{half_an_hour_ago.minute} {half_an_hour_ago.hour} * * *"
    schedules.schedule("daily", cron=daily, queue=reports, catch_up=False)
    _due("daily", ago=1800)  # its occurrence of half an hour ago: found 30 minutes late
    [fired] = schedules.run_due()
    assert fired.message_id is None and fired.skipped == 1
    assert not Message.objects.exists()
    assert Schedule.objects.get(name="daily").next_run_at > schedules.database_now()


def test_a_paused_schedule_sends_nothing_and_resumes_from_now(reports):
    schedules.schedule("minutely", cron="* * * * *", queue=reports)
    schedules.pause_schedule("minutely")
    _due("minutely", ago=600)
    assert schedules.run_due() == []
    row = schedules.resume_schedule("minutely")
    assert row.next_run_at > schedules.database_now()  # paused time is not caught up
    assert schedules.run_due() == [] and not Message.objects.exists()


def test_run_now_sends_at_once_and_keeps_the_clock(reports):
    row = schedules.schedule("nightly", cron="0 3 * * *", queue=reports, body=[1])
    message_id = schedules.run_now("nightly")
    assert Message.objects.get(id=message_id).body == [1]
    assert Schedule.objects.get(name="nightly").next_run_at == row.next_run_at


def test_a_send_that_fails_is_recorded_and_the_clock_moves_on(reports):
    schedules.schedule("nightly", cron="* * * * *", queue=reports)
    queues.delete_queue(reports)
    _due("nightly", ago=5)
    [fired] = schedules.run_due()
    assert fired.message_id is None and "QueueNotFound" in fired.error
    row = Schedule.objects.get(name="nightly")
    assert "QueueNotFound" in row.last_error and row.next_run_at > schedules.database_now()


def test_a_task_schedule_enqueues_the_task(reports):
    row = schedules.schedule("adder", cron="* * * * *", task="tests.tasks.tasks.add", args=[2, 3])
    assert row.queue == "tasks.default"
    _due("adder", ago=5)
    [fired] = schedules.run_due()
    assert Message.objects.get(id=fired.message_id).queue.name == "tasks.default"


# -- exactly once with concurrent schedulers -----------------------------------------------------------
def _concurrently(n: int, elect: bool) -> list[list[schedules.Fired]]:
    barrier = threading.Barrier(n)
    results: list[list[schedules.Fired]] = [[] for _ in range(n)]

    def one(i: int) -> None:
        try:
            barrier.wait(5)
            results[i] = schedules.run_due(elect=elect)
        finally:
            connections.close_all()  # this thread's own connection

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("elect", [True, False], ids=["elected", "row-locks-only"])
def test_concurrent_schedulers_on_separate_connections_send_each_occurrence_once(elect):
    queues.create_queue("reports", dedup_window=0)  # no dedup: a double send would be stored
    schedules.schedule("nightly", cron="* * * * *", queue="reports")
    for round_ in range(5):
        _due("nightly", ago=5)
        results = _concurrently(4, elect)
        sent = [f for r in results for f in r if f.message_id]
        assert len(sent) == 1, (round_, results)
    assert Message.objects.filter(queue__name="reports").count() == 5


@pytest.mark.django_db(transaction=True)
def test_a_schedule_locked_by_another_scheduler_is_skipped_not_waited_for():
    queues.create_queue("reports", dedup_window=0)
    schedules.schedule("nightly", cron="* * * * *", queue="reports")
    _due("nightly", ago=5)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with conf.atomic():
                Schedule.objects.select_for_update().get(name="nightly")
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        assert schedules.run_due(elect=False) == []
    finally:
        release.set()
        holder.join(10)
    assert len(schedules.run_due()) == 1


# -- declared schedules ------------------------------------------------------------------------------
def test_settings_schedules_are_written_kept_paused_and_removed(reports, settings):
    settings.MQADMIN = {
        "SCHEDULES": {"nightly": {"cron": "0 3 * * *", "queue": reports, "body": {"a": 1}, "timezone": "Europe/Paris"}}
    }
    assert schedules.sync_declared()["synced"] == 1
    row = Schedule.objects.get(name="nightly")
    assert (row.source, row.timezone, row.body) == ("settings", "Europe/Paris", '{"a":1}')
    schedules.pause_schedule("nightly")
    schedules.sync_declared()
    assert Schedule.objects.get(name="nightly").paused  # an operator's pause survives restarts
    settings.MQADMIN = {"SCHEDULES": {}}
    assert schedules.sync_declared()["removed"] == 1
    assert not Schedule.objects.exists()


def test_periodic_declares_a_task_schedule(db, monkeypatch):
    monkeypatch.setattr(schedules, "DECLARED", {})
    assert periodic(cron="*/5 * * * *", args=[1, 2], name="adder")(add) is add
    assert periodic(cron="0 3 * * *")(add) is add
    assert schedules.DECLARED["adder"]["task"] == "tests.tasks.tasks.add"
    assert schedules.DECLARED["tests.tasks.tasks.add"]["cron"] == "0 3 * * *"  # named after the task by default
    with pytest.raises(ValueError, match="'61 \\* \\* \\* \\*' is not valid"):
        periodic(cron="61 * * * *")(add)
    with pytest.raises(TypeError, match="above @task"):
        periodic(cron="0 3 * * *")(lambda: None)


# -- services and the dashboard ------------------------------------------------------------------------
def _user(name: str, *perms: str) -> User:
    user = User.objects.create_user(name, password="x")
    user.user_permissions.set(Permission.objects.filter(codename__in=perms, content_type__app_label="queues"))
    return User.objects.get(pk=user.pk)


def test_schedules_page_and_actions(reports):
    schedules.schedule("nightly", cron="0 3 * * *", queue=reports, timezone="Europe/Paris")
    viewer = Client()
    viewer.force_login(_user("viewer", "view_dashboard"))
    page = viewer.get(reverse("queues:schedules"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "nightly" in text and "At 03:00 every day" in text and "Europe/Paris" in text
    assert "Run now" not in text  # a viewer is offered no action
    assert viewer.post(reverse("queues:schedule-pause", args=["nightly"])).status_code == 403
    assert AuditEvent.objects.filter(action="pause_schedule", outcome="denied").exists()

    operator = Client(enforce_csrf_checks=True)
    operator.force_login(_user("operator", "view_dashboard", "operate_queues"))
    assert operator.post(reverse("queues:schedule-pause", args=["nightly"])).status_code == 403  # no CSRF token
    operator = Client()
    operator.force_login(User.objects.get(username="operator"))
    assert "Run now" in operator.get(reverse("queues:schedules")).content.decode()
    assert operator.get(reverse("queues:schedule-pause", args=["nightly"])).status_code == 405
    assert operator.post(reverse("queues:schedule-pause", args=["nightly"])).status_code == 302
    assert Schedule.objects.get(name="nightly").paused
    assert operator.post(reverse("queues:schedule-resume", args=["nightly"])).status_code == 302
    assert operator.post(reverse("queues:schedule-run", args=["nightly"])).status_code == 302
    assert Message.objects.filter(queue__name=reports).count() == 1
    assert operator.post(reverse("queues:schedule-pause", args=["nosuch"])).status_code == 404
    assert operator.get(reverse("queues:schedule-delete", args=["nightly"])).status_code == 200
    assert operator.post(reverse("queues:schedule-delete", args=["nightly"])).status_code == 302
    assert not Schedule.objects.exists()
    done = set(AuditEvent.objects.filter(outcome="ok", actor_name="operator").values_list("action", flat=True))
    assert {"pause_schedule", "resume_schedule", "run_schedule", "delete_schedule"} <= done


def test_a_refused_save_is_audited_with_the_reason(reports):
    with pytest.raises(services.ActionFailed, match="unknown time zone"):
        services.save_schedule(actor=CLI, name="nightly", cron="0 3 * * *", queue=reports, timezone="Nowhere/Land")
    event = AuditEvent.objects.get(action="save_schedule")
    assert event.outcome == "error" and "Nowhere/Land" in event.error and event.queue_name == reports
    assert not Schedule.objects.exists()
