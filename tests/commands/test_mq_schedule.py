"""mq_schedule: list, add, pause, resume, remove and run schedules from the command line, audited."""

from __future__ import annotations

import json

import pytest
from django.core.management.base import CommandError

from queues.models import AuditEvent, Message, Schedule


@pytest.fixture
def reports(make_queue) -> str:
    return make_queue("reports")


def test_add_list_pause_run_resume_remove(cmd, reports):
    out = cmd(
        "mq_schedule",
        "add",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Europe/Paris",
        "--queue",
        reports,
        "--body",
        '{"kind":  "daily"}',
        "--headers",
        '{"team": "ops"}',
    ).out
    assert "Saved schedule 'nightly': 0 3 * * * (Europe/Paris) to queue 'reports'; next run" in out
    row = Schedule.objects.get(name="nightly")
    assert row.body == '{"kind":  "daily"}'  # sent exactly as written
    listing = cmd("mq_schedule", "list").out
    assert "nightly" in listing and "Europe/Paris" in listing and "active" in listing
    assert json.loads(cmd("mq_schedule", "list", "--json").out)[0]["cron"] == "0 3 * * *"

    assert "Paused schedule 'nightly'" in cmd("mq_schedule", "pause", "nightly").out
    out = cmd("mq_schedule", "run-now", "nightly").out
    message = Message.objects.get(queue__name=reports)
    assert f"message {message.id}" in out and message.headers == {"team": "ops", "schedule": "nightly"}
    assert "Resumed schedule 'nightly'" in cmd("mq_schedule", "resume", "nightly").out
    # add again: an update by name, the pause state kept unless --paused is given
    cmd("mq_schedule", "add", "nightly", "--cron", "30 4 * * *", "--queue", reports, "--paused")
    row = Schedule.objects.get(name="nightly")
    assert (row.cron, row.timezone, row.paused) == ("30 4 * * *", "UTC", True)
    assert "Removed schedule 'nightly'" in cmd("mq_schedule", "remove", "nightly").out
    assert not Schedule.objects.exists()
    actions = list(AuditEvent.objects.filter(outcome="ok").order_by("id").values_list("action", flat=True))
    assert actions == [
        "save_schedule",
        "pause_schedule",
        "run_schedule",
        "resume_schedule",
        "save_schedule",
        "delete_schedule",
    ]


def test_a_task_schedule(cmd, db):
    cmd("mq_schedule", "add", "adder", "--cron", "*/5 * * * *", "--task", "tests.tasks.tasks.add", "--args", "[1, 2]")
    row = Schedule.objects.get(name="adder")
    assert (row.task_path, row.args, row.queue) == ("tests.tasks.tasks.add", [1, 2], "tasks.default")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--cron", "61 * * * *", "--queue", "reports"], r"cron expression '61 \* \* \* \*' is not valid"),
        (["--cron", "* * *", "--queue", "reports"], r"has 3 fields: write five"),
        (["--cron", "0 3 * * *\x00", "--queue", "reports"], r"NUL"),
        (["--cron", "0 3 * * *", "--queue", "reports", "--timezone", "Mars/Olympus"], r"unknown time zone"),
        (["--cron", "0 3 * * *", "--queue", "nosuch"], r"queue 'nosuch' does not exist: create it first"),
        (["--cron", "0 3 * * *", "--queue", "reports", "--body", "{nope"], r"--body is not valid JSON.*--body '"),
        (["--cron", "0 3 * * *", "--queue", "reports", "--headers", "[1]"], r"--headers must be a JSON object"),
        (["--cron", "0 3 * * *"], r"say what to enqueue: --queue"),
        (["--cron", "0 3 * * *", "--queue", "reports", "--task", "tests.tasks.tasks.add"], r"either --queue"),
        (["--cron", "0 3 * * *", "--queue", "reports", "--args", "[1]"], r"--args and --kwargs are for --task"),
    ],
)
def test_bad_input_is_a_command_error_with_the_fix_and_audited(cmd, reports, args, says):
    with pytest.raises(CommandError, match=says):
        cmd("mq_schedule", "add", "nightly", *args)
    assert not Schedule.objects.exists()
    assert AuditEvent.objects.get(action="save_schedule").outcome == "error"


def test_a_name_too_long_and_an_unknown_schedule(cmd, reports):
    with pytest.raises(CommandError, match="invalid schedule name"):
        cmd("mq_schedule", "add", "x" * 81, "--cron", "0 3 * * *", "--queue", reports)
    for verb in ("pause", "resume", "remove", "run-now"):
        with pytest.raises(CommandError, match="there is no schedule named 'nosuch'"):
            cmd("mq_schedule", verb, "nosuch")
    assert AuditEvent.objects.filter(outcome="error").count() == 5
