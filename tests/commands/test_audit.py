"""Operator actions from the command line go through the services: one audit row per attempt, shaped
like the dashboard's, refusals and failures included."""

from __future__ import annotations

import getpass
import socket
from datetime import timedelta

import pytest
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

import queues
from queues import services
from queues.models import AuditEvent, Queue, Redrive, RedriveState
from queues.permissions import Action, CommandLineActor
from tests.commands.conftest import TTY

SHAPE = ("action", "queue_name", "outcome", "count", "message_ids", "remote_addr", "error")


def shape(event: AuditEvent) -> tuple:
    """What must match between a command's row and the dashboard's: every field but who and when,
    and the detail's keys (the values differ where the input did)."""
    return (*(getattr(event, f) for f in SHAPE), sorted(event.detail))


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("operator", password="x")


def the_row(**filters) -> AuditEvent:
    [event] = AuditEvent.objects.filter(**filters)
    return event


def test_the_command_line_actor_is_the_os_user_at_the_host(cmd, make_queue):
    make_queue("orders")
    cmd("mq_purge", "orders", "--yes")
    event = the_row(action="purge_queue")
    assert event.actor is None
    assert event.actor_name == f"cli:{getpass.getuser()}@{socket.gethostname()}"
    assert event.actor_name == CommandLineActor.current().name
    assert "via" not in event.detail


def test_purge_of_a_missing_queue_is_audited_like_the_dashboards(cmd, operator):
    with pytest.raises(CommandError, match=r"queue 'nope' does not exist"):
        cmd("mq_purge", "nope", "--yes")
    from_cli = the_row(actor_name__startswith="cli:")
    with pytest.raises(services.NotFound):
        services.purge_queue(actor=operator, queue="nope", confirm="nope")
    from_dashboard = the_row(actor=operator)
    assert shape(from_cli) == shape(from_dashboard)
    assert (from_cli.action, from_cli.outcome) == ("purge_queue", "error")
    assert from_cli.error.startswith("queue 'nope' does not exist")


def test_a_refused_confirmation_is_audited_like_the_dashboards(cmd, make_queue, operator, monkeypatch):
    make_queue("orders")
    queues.send("orders", 1)
    monkeypatch.setattr("sys.stdin", TTY("yes\n"))
    with pytest.raises(CommandError, match=r"not confirmed \(you typed 'yes'\)"):
        cmd("mq_purge", "orders")
    from_cli = the_row(actor_name__startswith="cli:")
    with pytest.raises(services.ActionFailed):
        services.purge_queue(actor=operator, queue="orders", confirm="yes")
    from_dashboard = the_row(actor=operator)
    assert shape(from_cli)[:-2] == shape(from_dashboard)[:-2]  # the same row but for the wording of the error
    assert (from_cli.outcome, from_cli.error) == ("error", "not confirmed (you typed 'yes'): nothing was changed")
    assert queues.queue_stats("orders").depth == 1


def test_an_invalid_setting_is_audited_like_the_dashboards(cmd, make_queue, operator):
    make_queue("orders")
    with pytest.raises(CommandError, match=r"visibility_timeout must be at least 0.1 and at most 43200"):
        cmd("mq_queue", "update", "orders", "--visibility-timeout", "13h")
    from_cli = the_row(actor_name__startswith="cli:")
    with pytest.raises(services.ActionFailed):
        services.update_queue_settings(actor=operator, queue="orders", settings={"visibility_timeout": 13 * 3600.0})
    from_dashboard = the_row(actor=operator)
    assert shape(from_cli) == shape(from_dashboard)
    assert from_cli.detail == from_dashboard.detail == {"settings": {"visibility_timeout": 46800.0}}
    assert (from_cli.action, from_cli.outcome) == ("update_queue_settings", "error")


def test_an_option_value_that_does_not_parse_is_audited_like_the_dashboards_refused_form(cmd, make_queue, operator):
    make_queue("orders")
    with pytest.raises(CommandError, match=r"invalid duration 'soon'"):
        cmd("mq_queue", "update", "orders", "--retention", "1d", "--visibility-timeout", "soon")
    from_cli = the_row(actor_name__startswith="cli:")
    # What the dashboard's view does with an invalid settings form:
    services.refuse(actor=operator, action=Action.UPDATE_QUEUE_SETTINGS, queue="orders", error="invalid")
    from_dashboard = the_row(actor=operator)
    assert shape(from_cli)[:-2] == shape(from_dashboard)[:-2]
    assert from_cli.error.startswith("argument --visibility-timeout: invalid duration 'soon'")
    assert queues.get_queue("orders").visibility_timeout == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("argv", "action", "queue"),
    [
        (["mq_purge", "--yes", "orders", "--bogus"], "purge_queue", "orders"),
        (["mq_redrive", "--to", "retry", "orders.dlq", "--rate", "fast"], "start_redrive", "orders.dlq"),
        (["mq_queue", "create", "--kind", "lifo", "fresh"], "create_queue", "fresh"),
        (["mq_queue", "delete"], "delete_queue", ""),
    ],
)
def test_usage_errors_of_operator_actions_are_audited(cmd, argv, action, queue):
    with pytest.raises(CommandError):
        cmd(*argv)
    event = the_row()
    assert (event.action, event.queue_name, event.outcome) == (action, queue, "error")


def test_usage_errors_of_reads_are_not_audited(cmd):
    with pytest.raises(CommandError):
        cmd("mq_queue", "list", "--bogus")
    assert not AuditEvent.objects.exists()


def test_successful_actions_are_shaped_like_the_dashboards(cmd, operator):
    cmd("mq_queue", "create", "orders", "--visibility-timeout", "60")
    services.create_queue(actor=operator, name="billing", settings={"visibility_timeout": 60})
    from_cli, from_dashboard = the_row(queue_name="orders"), the_row(queue_name="billing")
    assert shape(from_cli)[2:] == shape(from_dashboard)[2:]
    assert from_cli.detail["settings"]["visibility_timeout"] == 60.0

    cmd("mq_queue", "update", "orders", "--paused")  # pausing is its own action, as on the dashboard
    assert the_row(action="pause_queue").queue_name == "orders"
    assert not AuditEvent.objects.filter(action="update_queue_settings").exists()


def test_read_only_mode_does_not_apply_to_the_command_line(cmd, make_queue):
    make_queue("orders")
    with override_settings(MQADMIN={"READ_ONLY": True}):
        cmd("mq_queue", "update", "orders", "--paused")
    assert queues.get_queue("orders").paused
    assert the_row(action="pause_queue").outcome == "ok"


def test_a_second_redrive_of_a_queue_is_refused_naming_the_running_one(cmd, make_queue, dead_letters):
    make_queue("orders", max_receives=1)
    dead_letters("orders", 2)
    # An id that appears nowhere else in the message, so finding it means the refusal names this redrive.
    running = Redrive.objects.create(
        pk=4242,
        source=Queue.objects.get(name="orders.dlq"),
        state=RedriveState.RUNNING,
        total=2,
        requested_by="operator",
        heartbeat_at=timezone.now() + timedelta(hours=1),
    )
    with pytest.raises(CommandError, match=r"running") as refused:
        cmd("mq_redrive", "orders.dlq")
    assert "4242" in str(refused.value), f"the refusal should name redrive {running.pk}: {refused.value}"
    assert Redrive.objects.get() == running
    assert queues.queue_stats("orders.dlq").depth == 2
    event = the_row(action="start_redrive")
    assert (event.outcome, event.queue_name) == ("error", "orders.dlq")


def test_a_usage_error_in_a_shell_is_audited_and_still_exits_with_the_usage(run_manage, make_queue):
    make_queue("orders")
    queues.send("orders", 1)
    result = run_manage("mq_purge", "orders", "--yes", "--bogus")
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr and result.stderr.startswith("usage:")
    event = the_row()
    assert (event.action, event.queue_name, event.outcome) == ("purge_queue", "orders", "error")
    assert event.error == "unrecognized arguments: --bogus"
    assert queues.queue_stats("orders").depth == 1
