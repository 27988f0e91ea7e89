"""mq_redrive: move dead letters back, at a rate, stoppable."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

import queues
from queues import services
from queues.models import AuditEvent, Redrive
from queues.services import ActionFailed
from tests.conftest import wait_for


def test_redrive_sends_each_message_back_where_it_died(cmd, make_queue, dead_letters):
    make_queue("orders", max_receives=1)
    ids = dead_letters("orders", 3)
    out = cmd("mq_redrive", "orders.dlq").out
    assert "Redrove 3 messages from 'orders.dlq' (each back to the queue it died in)" in out
    assert sorted(m.id for m in queues.peek("orders")) == sorted(ids)
    assert all(m.receive_count == 0 and m.state == "ready" for m in queues.peek("orders"))
    assert queues.queue_stats("orders.dlq").depth == 0
    job = Redrive.objects.get()
    assert (job.state, job.moved, job.requested_by[:3]) == ("finished", 3, "cli")
    assert AuditEvent.objects.get(action="start_redrive").count == 3


def test_redrive_to_another_queue_with_a_limit(cmd, make_queue, dead_letters):
    make_queue("orders", max_receives=1)
    make_queue("retry")
    dead_letters("orders", 5)
    out = cmd("mq_redrive", "orders.dlq", "--to", "retry", "--limit", "2").out
    assert "Redrove 2 messages from 'orders.dlq' (to 'retry')" in out
    assert queues.queue_stats("retry").depth == 2
    assert queues.queue_stats("orders.dlq").depth == 3
    assert queues.queue_stats("orders").depth == 0


def test_empty_dead_letter_queue(cmd, make_queue):
    make_queue("orders")
    assert cmd("mq_redrive", "orders.dlq").out.strip() == "'orders.dlq' is empty: nothing to redrive."
    job = Redrive.objects.get()  # started and finished at once, like an empty redrive from the dashboard
    assert (job.state, job.total, job.moved) == ("finished", 0, 0)


def test_progress_on_a_terminal(cmd, make_queue, dead_letters):
    make_queue("orders", max_receives=1)
    dead_letters("orders", 3)
    err = cmd("mq_redrive", "orders.dlq", tty=True).err
    assert "\r\x1b[Kredriving orders.dlq [" + "#" * 30 + "] 3/3 msg (100%)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["orders"], r"'orders' is not a dead-letter queue, so its messages have no queue to go back to"),
        (["orders.dlq", "--to", "orders.dlq"], r"cannot redrive 'orders\.dlq' into itself"),
        (["orders.dlq", "--to", "nope"], r"queue 'nope' does not exist"),
        (["nope.dlq"], r"queue 'nope.dlq' does not exist"),
        (["orders.dlq", "--rate", "0"], r"invalid number '0': it must be greater than 0"),
        (["orders.dlq", "--rate", "fast"], r"invalid number 'fast'"),
        (["orders.dlq", "--limit", "0"], r"invalid number '0': it must be at least 1"),
    ],
)
def test_bad_input_moves_nothing(cmd, make_queue, dead_letters, args, message):
    make_queue("orders", max_receives=1)
    dead_letters("orders", 2)
    with pytest.raises(CommandError, match=message):
        cmd("mq_redrive", *args)
    assert queues.queue_stats("orders.dlq").depth == 2
    assert not Redrive.objects.exists()


@pytest.mark.slow
def test_ctrl_c_stops_after_the_current_batch(spawn_manage, make_queue, dead_letters):
    make_queue("orders", max_receives=1)
    dead_letters("orders", 60)
    running = spawn_manage("mq_redrive", "orders.dlq", "--rate", "10")
    running.wait_for_output("redriving orders.dlq:")
    running.signal()
    assert running.finish() == 0
    assert "Traceback" not in running.stderr
    job = Redrive.objects.get()
    assert job.state == "stopped"
    assert 0 < job.moved < 60
    assert f"Redrove {job.moved} messages" in running.stdout and "stopped by a signal" in running.stdout
    # The Ctrl-C is the operator stopping the redrive: audited like the dashboard's stop button.
    stop = AuditEvent.objects.get(action="stop_redrive")
    assert (stop.outcome, stop.queue_name, stop.actor_name[:4]) == ("ok", "orders.dlq", "cli:")
    # Nothing half-moved: every message is in exactly one of the two queues.
    assert queues.queue_stats("orders").depth == job.moved
    assert queues.queue_stats("orders.dlq").depth == 60 - job.moved


@pytest.mark.slow
def test_stop_from_elsewhere_ends_the_command_too(spawn_manage, make_queue, dead_letters):
    make_queue("orders", max_receives=1)
    dead_letters("orders", 60)
    running = spawn_manage("mq_redrive", "orders.dlq", "--rate", "10")
    running.wait_for_output("redriving orders.dlq:")
    assert queues.stop_redrive(Redrive.objects.get().pk)  # what the dashboard's stop button does
    assert running.finish() == 0
    assert "stopped from elsewhere" in running.stdout
    assert Redrive.objects.get().state == "stopped"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_redrive_of_a_killed_process_is_given_up_and_a_new_one_moves_the_rest(
    spawn_manage, make_queue, dead_letters, django_user_model
):
    make_queue("orders", max_receives=1)
    dead_letters("orders", 30)
    running = spawn_manage("mq_redrive", "orders.dlq", "--rate", "2")
    wait_for(lambda: (job := Redrive.objects.first()) and job.moved >= 2 and job.heartbeat_at, timeout=30)
    running.proc.kill()  # SIGKILL: no chance to mark its row
    running.finish()
    operator = django_user_model.objects.create_superuser("operator", password="x")
    # It still looks alive (it beat within the last second): a second redrive is refused.
    with pytest.raises(ActionFailed, match=r"a redrive of 'orders\.dlq' is already running"):
        services.start_redrive(actor=operator, queue="orders.dlq", background=False)

    # Silent for longer than the stale limit: given up, with why, and its progress kept.
    wait_for(lambda: queues.reap_redrives(stale_after=2) == 1, timeout=15, interval=0.2)
    dead = Redrive.objects.get()
    assert dead.state == "failed" and dead.error.startswith("abandoned: the process running it stopped")
    assert queues.queue_stats("orders").depth == dead.moved and 2 <= dead.moved < 30
    assert queues.queue_stats("orders.dlq").depth == 30 - dead.moved

    again = services.start_redrive(actor=operator, queue="orders.dlq", background=False)
    assert (again.state, again.moved) == ("finished", 30 - dead.moved)
    assert queues.queue_stats("orders").depth == 30 and queues.queue_stats("orders.dlq").depth == 0


def test_reap_redrives_refuses_a_stale_limit_shorter_than_two_beats():
    with pytest.raises(ValueError, match=r"stale_after must be at least 2 seconds, got 0\.5"):
        queues.reap_redrives(stale_after=0.5)
