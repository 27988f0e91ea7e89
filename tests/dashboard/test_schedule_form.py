"""The schedule form (queues/views/schedule_form.py): create and edit through services.save_schedule, every
bad input a form error with nothing written and the refusal audited, a viewer refused (403, audited),
CSRF enforced, declared schedules read-only, and the preview of the next occurrences."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

import queues
from queues import schedules
from queues.models import AuditEvent, Schedule

pytestmark = pytest.mark.django_db

NEW = reverse("queues:schedule-create")


@pytest.fixture
def reports(make_queue) -> str:
    make_queue("reports")
    make_queue("other")
    return "reports"


def _form(**changes: str) -> dict[str, str]:
    data = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "queue": "reports",
        "body": '{"report": "daily",  "n": 1.50}',
        "headers": '{"tenant": "acme"}',
        "catch_up": "on",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_operator_creates_a_schedule_and_it_is_audited(reports, client_for):
    c = client_for("operator")
    page = c.get(NEW)
    assert page.status_code == 200
    assert b'<option value="reports">' in page.content and b'list="zones"' in page.content
    response = c.post(NEW, _form())
    assert response.status_code == 302 and response["Location"] == reverse("queues:schedules")
    row = Schedule.objects.get(name="nightly")
    assert (row.cron, row.timezone, row.queue, row.source) == ("0 3 * * *", "Europe/Paris", "reports", "api")
    assert row.body == '{"report": "daily",  "n": 1.50}'  # sent as written
    assert row.headers == {"tenant": "acme"} and row.catch_up and not row.paused
    event = AuditEvent.objects.get(action="save_schedule")
    assert (event.outcome, event.queue_name, event.detail["schedule"]) == ("ok", "reports", "nightly")
    listing = c.get(reverse("queues:schedules")).content.decode()
    assert reverse("queues:schedule-edit", args=["nightly"]) in listing and NEW in listing


def test_operator_edits_a_schedule_the_name_stays(reports, client_for):
    schedules.schedule("nightly", cron="0 3 * * *", queue=reports, body={"a": 1})
    c = client_for("operator")
    url = reverse("queues:schedule-edit", args=["nightly"])
    page = c.get(url).content.decode()
    assert 'value="0 3 * * *"' in page and "Save schedule" in page
    response = c.post(
        url,
        _form(
            name="renamed", cron="*/15 * * * *", queue="other", body="[1, 2]", headers="", catch_up=None, paused="on"
        ),
    )
    assert response.status_code == 302
    row = Schedule.objects.get()
    assert (row.name, row.cron, row.queue, row.body, row.headers) == ("nightly", "*/15 * * * *", "other", "[1, 2]", {})
    assert row.paused and not row.catch_up


def test_a_task_schedule_is_created_and_edited(reports, client_for):
    c = client_for("operator")
    data = _form(queue="", body="", headers="", task="tests.tasks.tasks.add", args="[2, 3]", kwargs="")
    assert c.post(NEW, data).status_code == 302
    row = Schedule.objects.get()
    assert (row.task_path, row.args, row.queue) == ("tests.tasks.tasks.add", [2, 3], "tasks.default")
    page = c.get(reverse("queues:schedule-edit", args=["nightly"])).content.decode()
    assert 'value="tests.tasks.tasks.add"' in page and 'value="[2, 3]"' in page


BAD = [
    ({"cron": "61 * * * *"}, "cron", "61"),  # cronsim's message
    ({"cron": "* * *"}, "cron", "3 fields"),
    ({"cron": "0 3 * * *\x00"}, "cron", "null characters"),
    ({"cron": "*" * 121}, "cron", "at most 120"),
    ({"timezone": "Nowhere/Land"}, "timezone", "unknown time zone"),
    ({"timezone": "Europe/Paris\x00"}, "timezone", "null characters"),
    ({"queue": "nosuch"}, "queue", "does not exist"),
    ({"queue": "bad name"}, "queue", "queue name"),
    ({"queue": ""}, "queue", "choose the queue"),
    ({"body": '{"a": '}, "body", "not valid json"),
    ({"body": '{"a": NaN}'}, "body", "nan"),
    ({"body": '"\\u0000"'}, "body", "nul character"),
    ({"headers": "[1]"}, "headers", "json object of strings"),
    ({"headers": '{"a": 1}'}, "headers", "json object of strings"),
    ({"name": "Bad Name"}, "name", "schedule name"),
    ({"name": "x" * 81}, "name", "at most 80"),
    ({"name": ""}, "name", "required"),
    ({"task": "tests.tasks.tasks.add"}, "task", "either a queue"),
    ({"args": "[1]"}, "args", "for task schedules"),
    ({"queue": "", "body": "", "headers": "", "task": "tests.tasks.tasks.add", "args": "{}"}, "args", "json list"),
]


@pytest.mark.parametrize(("changes", "field", "says"), BAD, ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(BAD)])
def test_bad_input_is_a_form_error_audited_and_nothing_written(reports, client_for, changes, field, says):
    response = client_for("operator").post(NEW, _form(**changes))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert says.lower() in " ".join(errors[field]).lower()
    assert not Schedule.objects.exists()
    event = AuditEvent.objects.get(action="save_schedule")
    assert event.outcome == "error" and field in event.error


def test_a_body_too_large_for_the_queue_is_refused(make_queue, client_for):
    make_queue("reports", max_message_size=64)
    response = client_for("operator").post(NEW, _form(body='"' + "x" * 100 + '"'))
    assert response.status_code == 400 and "takes at most 64" in " ".join(response.context["form"].errors["body"])
    assert not Schedule.objects.exists()


def test_a_task_that_does_not_import_is_refused_by_the_service(reports, client_for):
    data = _form(queue="", body="", headers="", task="tests.tasks.tasks.nosuch")
    response = client_for("operator").post(NEW, data)
    assert response.status_code == 400 and b"cannot be imported" in response.content
    assert not Schedule.objects.exists()
    assert AuditEvent.objects.get(action="save_schedule").outcome == "error"


def test_creating_over_an_existing_name_is_refused(reports, client_for):
    schedules.schedule("nightly", cron="0 4 * * *", queue=reports)
    response = client_for("operator").post(NEW, _form())
    assert response.status_code == 400 and "exists already" in response.context["form"].errors["name"][0]
    assert Schedule.objects.get().cron == "0 4 * * *"


def test_a_viewer_is_refused_and_the_attempt_audited(reports, client_for):
    schedules.schedule("nightly", cron="0 3 * * *", queue=reports)
    viewer = client_for("viewer")
    assert viewer.get(NEW).status_code == 403
    assert viewer.get(reverse("queues:schedule-edit", args=["nightly"])).status_code == 403
    assert viewer.post(NEW, _form(name="other")).status_code == 403
    assert viewer.post(reverse("queues:schedule-edit", args=["nightly"]), _form(cron="* * * * *")).status_code == 403
    denied = AuditEvent.objects.filter(action="save_schedule", outcome="denied")
    assert sorted(e.detail["schedule"] for e in denied) == ["nightly", "other"]
    assert list(Schedule.objects.values_list("name", "cron")) == [("nightly", "0 3 * * *")]
    assert (
        reverse("queues:schedule-edit", args=["nightly"])
        not in viewer.get(reverse("queues:schedules")).content.decode()
    )


def test_csrf_is_enforced(reports, client_for):
    c = client_for("operator", csrf=True)
    page = c.get(NEW)
    assert c.post(NEW, _form()).status_code == 403
    assert not Schedule.objects.exists()
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    assert c.post(NEW, {**_form(), "csrfmiddlewaretoken": token}).status_code == 302


def test_unknown_or_malformed_schedule_is_a_404(reports, client_for):
    c = client_for("operator")
    assert c.get(reverse("queues:schedule-edit", args=["nosuch"])).status_code == 404
    assert c.post(reverse("queues:schedule-edit", args=["nosuch"]), _form()).status_code == 404
    assert c.get("/schedules/bad%00name/edit/").status_code == 404
    assert not Schedule.objects.exists()


@pytest.mark.parametrize("source", ["settings", "code"])
def test_a_declared_schedule_is_read_only(reports, client_for, source):
    schedules.schedule("nightly", cron="0 3 * * *", queue=reports, source=source)
    c = client_for("operator")
    url = reverse("queues:schedule-edit", args=["nightly"])
    page = c.get(url).content.decode()
    assert "declared by" in page and "Save schedule" not in page and "disabled" in page
    assert 'title="declared in' in c.get(reverse("queues:schedules")).content.decode()
    response = c.post(url, _form(cron="* * * * *"))
    assert response.status_code == 400 and b"change it there" in response.content
    assert Schedule.objects.get().cron == "0 3 * * *"
    event = AuditEvent.objects.get(action="save_schedule")
    assert event.outcome == "error" and "declared by" in event.error


def test_the_preview_shows_the_next_five_occurrences_in_both_zones(reports, client_for, settings):
    settings.TIME_ZONE = "America/New_York"
    c = client_for("operator")
    response = c.post(NEW, _form(preview="1", cron="30 2 * * *", timezone="Asia/Tokyo"))
    assert response.status_code == 200 and not Schedule.objects.exists()
    assert not AuditEvent.objects.exists()  # a preview attempts nothing
    preview = response.context["preview"]
    assert len(preview) == 5
    for o in preview:
        assert (o.local.hour, o.local.minute) == (2, 30) and str(o.local.tzinfo) == "Asia/Tokyo"
        assert (o.viewer.hour, o.viewer.minute) in {(12, 30), (13, 30)}  # 02:30 JST is 12:30/13:30 in New York
    text = response.content.decode()
    assert "In Asia/Tokyo" in text and "America/New_York" in text and "JST" in text
    bad = c.post(NEW, _form(preview="1", cron="61 * * * *"))
    assert bad.context["preview"] == [] and "not valid" in " ".join(bad.context["form"].errors["cron"])
    edit = c.get(reverse("queues:schedule-edit", args=["nightly"]))
    assert edit.status_code == 404
    queues.schedule("nightly", cron="*/10 * * * * *", queue=reports)
    edit = c.get(reverse("queues:schedule-edit", args=["nightly"]))
    steps = [
        (b.at - a.at).total_seconds()
        for a, b in zip(edit.context["preview"], edit.context["preview"][1:], strict=False)
    ]
    assert steps == [10.0] * 4


def test_a_viewer_cannot_preview(reports, client_for):
    assert client_for("viewer").post(NEW, _form(preview="1")).status_code == 403


def test_the_live_preview_answers_as_one_types(reports, client_for):
    url = reverse("queues:schedule-preview")
    viewer = client_for("viewer")  # it only reads: a viewer may use it
    page = viewer.get(url, {"cron": "0 3 * * 1", "timezone": "Europe/Berlin"})
    assert page.status_code == 200 and len(page.context["preview"]) == 5
    assert "At 03:00 on Monday" in page.content.decode()
    bad = viewer.get(url, {"cron": "0 3 * *", "timezone": "Europe/Berlin"})
    assert bad.status_code == 200 and bad.context["preview"] == [] and "4 fields" in bad.context["problem"]
    assert "unknown time zone" in viewer.get(url, {"cron": "* * * * *", "timezone": "Mars/Base"}).context["problem"]
    assert viewer.get(url, {"cron": "* * * * *\x00"}).status_code == 400
    assert client_for("staff").get(url, {"cron": "* * * * *"}).status_code == 403
    assert client_for("anonymous").get(url).status_code == 302


def test_editing_a_schedule_whose_queue_was_deleted_says_so(reports, client_for):
    schedules.schedule("nightly", cron="0 3 * * *", queue="other")
    queues.delete_queue("other")
    c = client_for("operator")
    url = reverse("queues:schedule-edit", args=["nightly"])
    assert "other (deleted)" in c.get(url).content.decode()
    response = c.post(url, _form(queue="other"))
    assert response.status_code == 400 and "does not exist" in response.context["form"].errors["queue"][0]
