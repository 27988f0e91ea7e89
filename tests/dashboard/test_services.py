"""queues.services: each action checks its permission, does its effect and leaves one audit row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.test import override_settings
from django.utils import timezone

import queues
from queues import audit, services
from queues.models import AuditEvent, Message, Queue, Redrive, RedriveState
from queues.search import parse_search
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db

ADDR = "10.0.0.9"
ROLES = ("viewer", "operator", "purger", "publisher", "admin", "staff")
OPERATORS = {"operator", "purger", "admin"}
PURGERS = {"purger", "admin"}
PUBLISHERS = {"publisher", "admin"}
EVERY_VIEWER = {"viewer", "operator", "purger", "publisher", "admin"}


def make_dead_letters(queue: str, n: int) -> list[int]:
    """Send ``n`` messages to ``queue`` (max_receives=1) and fail each once: they land in ``<queue>.dlq``."""
    ids = queues.send_batch(queue, [{"dead": i} for i in range(n)])
    for d in queues.receive(queue, max_messages=n):
        queues.nack(d.receipt, error=f"failed {d.id}")
    return ids


@pytest.fixture
def env(make_queue):
    """orders (3 ready, 1 delayed, 2 dead letters in orders.dlq) and an empty queue 'other'."""
    make_queue("orders", max_receives=1)
    make_queue("other")
    dead = make_dead_letters("orders", 2)
    ready = queues.send_batch("orders", [{"n": i} for i in range(3)])
    delayed = queues.send("orders", {"later": True}, delay=600)
    return {"ready": ready, "delayed": delayed, "dead": dead}


def _depth(name: str) -> int:
    return queues.queue_stats(name).depth


# service name -> (roles allowed, setup, call, effect happened?)
Case = tuple[set[str], Callable[[dict], None], Callable[[object, dict], object], Callable[[dict], bool]]


def _nothing(env: dict) -> None:
    return None


CASES: dict[str, Case] = {
    "pause_queue": (
        OPERATORS, _nothing,
        lambda actor, env: services.pause_queue(actor=actor, queue="orders", remote_addr=ADDR),
        lambda env: queues.get_queue("orders").paused,
    ),
    "resume_queue": (
        OPERATORS, lambda env: queues.pause("orders"),
        lambda actor, env: services.resume_queue(actor=actor, queue="orders", remote_addr=ADDR),
        lambda env: not queues.get_queue("orders").paused,
    ),
    "update_queue_settings": (
        OPERATORS, _nothing,
        lambda actor, env: services.update_queue_settings(
            actor=actor, queue="orders", settings={"visibility_timeout": 99}, remote_addr=ADDR),
        lambda env: queues.get_queue("orders").visibility_timeout == timedelta(seconds=99),
    ),
    "purge_queue": (
        PURGERS, _nothing,
        lambda actor, env: services.purge_queue(actor=actor, queue="orders", confirm="orders", remote_addr=ADDR),
        lambda env: _depth("orders") == 0,
    ),
    "create_queue": (
        OPERATORS, _nothing,
        lambda actor, env: services.create_queue(actor=actor, name="fresh", settings={"kind": "fifo"},
                                                 remote_addr=ADDR),
        lambda env: Queue.objects.filter(name="fresh", kind="fifo").exists(),
    ),
    "delete_queue": (
        PURGERS, _nothing,
        lambda actor, env: services.delete_queue(actor=actor, queue="other", confirm="other", remote_addr=ADDR),
        lambda env: not Queue.objects.filter(name="other").exists(),
    ),
    "publish_message": (
        PUBLISHERS, _nothing,
        lambda actor, env: services.publish_message(actor=actor, queue="other", body={"hi": 1},
                                                    headers={"k": "v"}, priority=5, remote_addr=ADDR),
        lambda env: Message.objects.filter(queue__name="other", body={"hi": 1}, headers={"k": "v"},
                                           priority=5).exists(),
    ),
    "delete_messages": (
        PURGERS, _nothing,
        lambda actor, env: services.delete_messages(actor=actor, ids=env["ready"][:2], remote_addr=ADDR),
        lambda env: Message.objects.filter(id__in=env["ready"][:2]).count() == 0,
    ),
    "retry_messages": (
        OPERATORS, _nothing,
        lambda actor, env: services.retry_messages(actor=actor, ids=[env["delayed"]], remote_addr=ADDR),
        lambda env: Message.objects.get(id=env["delayed"]).available_at <= timezone.now(),
    ),
    "move_messages": (
        OPERATORS, _nothing,
        lambda actor, env: services.move_messages(actor=actor, ids=env["ready"][:1], to="other", remote_addr=ADDR),
        lambda env: Message.objects.get(id=env["ready"][0]).queue.name == "other",
    ),
    "start_redrive": (
        OPERATORS, _nothing,
        lambda actor, env: services.start_redrive(actor=actor, queue="orders.dlq", background=False,
                                                  remote_addr=ADDR),
        lambda env: set(Message.objects.filter(id__in=env["dead"]).values_list("queue__name", flat=True))
        == {"orders"},
    ),
    "stop_redrive": (
        OPERATORS,
        lambda env: env.update(redrive=Redrive.objects.create(source=Queue.objects.get(name="orders.dlq"))),
        lambda actor, env: services.stop_redrive(actor=actor, redrive_id=env["redrive"].pk, remote_addr=ADDR),
        lambda env: Redrive.objects.get(pk=env["redrive"].pk).state == RedriveState.STOPPING,
    ),
    "reveal_body": (
        EVERY_VIEWER, _nothing,
        lambda actor, env: services.reveal_body(actor=actor, message_id=env["ready"][0], remote_addr=ADDR),
        lambda env: True,  # the effect of a reveal is its audit row (checked below)
    ),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("service", sorted(CASES))
def test_service_enforces_permission_does_its_effect_and_audits(service, role, env, users):
    allowed, setup, call, effect = CASES[service]
    setup(env)
    actor = users[role]
    AuditEvent.objects.all().delete()
    if role in allowed:
        call(actor, env)
        assert effect(env), f"{service} by {role} had no effect"
        outcome = "ok"
    else:
        with pytest.raises(PermissionDenied):
            call(actor, env)
        if service != "reveal_body":
            assert not effect(env), f"{service} by {role} changed something although denied"
        outcome = "denied"
    [event] = AuditEvent.objects.all()
    assert (event.action, event.actor_id, event.actor_name, event.outcome, event.remote_addr) == (
        service, actor.pk, actor.username, outcome, ADDR)


@pytest.mark.parametrize("service", sorted(CASES))
def test_read_only_mode_denies_every_change_to_a_superuser(service, env, users):
    _allowed, setup, call, effect = CASES[service]
    setup(env)
    with override_settings(MQADMIN={"READ_ONLY": True}):
        if service == "reveal_body":
            call(users["admin"], env)  # a reveal changes no queue: still allowed
            return
        with pytest.raises(PermissionDenied, match="read-only"):
            call(users["admin"], env)
    assert not effect(env)
    assert AuditEvent.objects.get(action=service).outcome == "denied"


def test_audit_row_names_the_queue_count_and_messages(env, users):
    n = services.delete_messages(actor=users["purger"], ids=env["ready"], remote_addr=ADDR)
    assert n == 3
    event = AuditEvent.objects.get(action="delete_messages")
    assert (event.queue_name, event.count, sorted(event.message_ids)) == ("orders", 3, sorted(env["ready"]))


def test_settings_change_is_audited_as_a_diff(env, users):
    services.update_queue_settings(actor=users["operator"], queue="orders",
                                   settings={"max_receives": 9, "visibility_timeout": 30})
    event = AuditEvent.objects.get(action="update_queue_settings")
    assert event.detail["changes"] == {"max_receives": [1, 9]}


# -- errors -----------------------------------------------------------------------------------------
def _error_event(action: str) -> AuditEvent:
    return AuditEvent.objects.get(action=action, outcome="error")


def test_engine_error_is_audited_and_raised_as_a_value_error(env, users):
    with pytest.raises(services.ActionFailed, match="visibility_timeout") as info:
        services.update_queue_settings(actor=users["operator"], queue="orders", settings={"visibility_timeout": -1})
    assert isinstance(info.value, ValueError)
    assert "visibility_timeout" in _error_event("update_queue_settings").error
    assert queues.get_queue("orders").visibility_timeout == timedelta(seconds=30)


def test_kind_change_of_a_busy_queue_fails_and_changes_nothing(env, users):
    with pytest.raises(services.ActionFailed, match="has messages"):
        services.update_queue_settings(actor=users["operator"], queue="orders",
                                       settings={"kind": "fifo", "max_receives": 7})
    q = queues.get_queue("orders")
    assert (q.kind, q.max_receives) == ("standard", 1)
    assert _error_event("update_queue_settings")


def test_purge_needs_the_queue_name_as_confirmation(env, users):
    with pytest.raises(services.ActionFailed, match="type the queue's name"):
        services.purge_queue(actor=users["purger"], queue="orders", confirm="order")
    assert _depth("orders") == 4
    assert _error_event("purge_queue").count == 0


def test_delete_queue_needs_the_queue_name_as_confirmation(env, users):
    with pytest.raises(services.ActionFailed, match="type the queue's name"):
        services.delete_queue(actor=users["purger"], queue="other", confirm="")
    assert Queue.objects.filter(name="other").exists()


def test_unknown_queue_is_not_found(env, users):
    with pytest.raises(services.NotFound, match="nope") as info:
        services.pause_queue(actor=users["operator"], queue="nope")
    assert isinstance(info.value, LookupError) and isinstance(info.value, ValueError)
    assert _error_event("pause_queue").queue_name == "nope"


def test_publish_validation_errors_are_raised_with_the_engine_message(env, users):
    with pytest.raises(services.ActionFailed, match="priority"):
        services.publish_message(actor=users["publisher"], queue="other", body={}, priority=500)
    queues.update_queue("other", max_message_size=64)
    with pytest.raises(services.ActionFailed, match="exceeds"):
        services.publish_message(actor=users["publisher"], queue="other", body={"x": "y" * 100})
    assert _depth("other") == 0
    assert AuditEvent.objects.filter(action="publish_message", outcome="error").count() == 2


def test_create_existing_queue_fails(env, users):
    with pytest.raises(services.ActionFailed, match="exists already"):
        services.create_queue(actor=users["operator"], name="orders")


def test_move_to_an_unknown_queue_fails_and_moves_nothing(env, users):
    with pytest.raises(services.ActionFailed, match="does not exist"):
        services.move_messages(actor=users["operator"], ids=env["ready"], to="nowhere")
    assert set(Message.objects.filter(id__in=env["ready"]).values_list("queue__name", flat=True)) == {"orders"}
    assert _error_event("move_messages")


def test_move_skips_messages_already_in_the_target(env, users):
    assert services.move_messages(actor=users["operator"], ids=env["ready"], to="orders") == 0


def test_bulk_action_needs_ids_or_a_filter(env, users):
    with pytest.raises(services.ActionFailed, match="either by ids or by a filter"):
        services.delete_messages(actor=users["purger"])
    with pytest.raises(services.ActionFailed, match="at least one"):
        services.delete_messages(actor=users["purger"], ids=[])


def test_redrive_of_a_queue_that_is_no_dead_letter_queue_needs_a_target(env, users):
    with pytest.raises(services.ActionFailed, match="not a dead-letter queue"):
        services.start_redrive(actor=users["operator"], queue="other")
    with pytest.raises(services.ActionFailed, match="rate"):
        services.start_redrive(actor=users["operator"], queue="orders.dlq", rate=0)
    assert not Redrive.objects.exists()


def test_unknown_redrive_and_message_are_not_found(env, users):
    with pytest.raises(services.NotFound):
        services.stop_redrive(actor=users["operator"], redrive_id=999_999)
    with pytest.raises(services.NotFound):
        services.reveal_body(actor=users["viewer"], message_id=999_999)


def test_action_and_audit_commit_together(env, users, monkeypatch):
    """If the audit row cannot be written, the action rolls back: the log never misses a change."""
    real = audit.record

    def failing(actor, action, **kw):
        if kw["outcome"] == "ok":
            raise RuntimeError("audit table unavailable")
        return real(actor, action, **kw)

    monkeypatch.setattr(audit, "record", failing)
    with pytest.raises(RuntimeError):
        services.purge_queue(actor=users["purger"], queue="orders", confirm="orders")
    assert _depth("orders") == 4
    assert AuditEvent.objects.get(action="purge_queue").outcome == "error"


# -- bulk by filter ---------------------------------------------------------------------------------
def test_delete_all_matching_a_filter(env, users):
    queues.send_batch("other", [{"n": i} for i in range(4)])
    acme = [queues.send("other", {"n": i}, headers={"tenant": "acme"}) for i in range(3)]
    n = services.delete_messages(actor=users["purger"], match=parse_search("queue:other header.tenant:acme"),
                                 bound=services.Bound(count=3, max_id=max(acme)), confirm="3")
    assert n == 3
    assert not Message.objects.filter(id__in=acme).exists()
    assert _depth("other") == 4
    event = AuditEvent.objects.get(action="delete_messages")
    assert (event.queue_name, event.count, event.detail["filter"]) == ("other", 3, "queue:other header.tenant:acme")


def test_move_all_dead_letters_across_queues_by_filter(env, users, make_queue):
    make_queue("billing", max_receives=1)
    more = make_dead_letters("billing", 2)
    n = services.move_messages(actor=users["operator"], match=parse_search("state:dead"), to="other")
    assert n == 4
    assert set(Message.objects.filter(id__in=env["dead"] + more).values_list("queue__name", flat=True)) == {"other"}
    assert AuditEvent.objects.get(action="move_messages").detail["queues"] == {"orders.dlq": 2, "billing.dlq": 2}


def test_retry_all_delayed_of_a_queue(env, users):
    queues.send("other", {"later": 1}, delay=900)
    n = services.retry_messages(actor=users["operator"], match=parse_search("state:delayed"))
    assert n == 2
    assert queues.queue_stats("orders").delayed == 0 and queues.queue_stats("other").delayed == 0


# -- redrive in the background ----------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_redrive_runs_in_a_background_thread_and_reports_progress(make_queue, make_user):
    make_queue("orders", max_receives=1)
    dead = make_dead_letters("orders", 30)
    operator = make_user("operator")
    job = services.start_redrive(actor=operator, queue="orders.dlq", to="orders", remote_addr=ADDR)
    assert job.total == 30
    wait_for(lambda: Redrive.objects.get(pk=job.pk).state == RedriveState.FINISHED, timeout=30)
    job.refresh_from_db()
    assert (job.moved, job.requested_by) == (30, "operator")
    assert set(Message.objects.filter(id__in=dead).values_list("queue__name", flat=True)) == {"orders"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_paced_redrive_can_be_stopped(make_queue, make_user):
    make_queue("orders", max_receives=1)
    make_dead_letters("orders", 40)
    operator = make_user("operator")
    job = services.start_redrive(actor=operator, queue="orders.dlq", rate=4)
    wait_for(lambda: Redrive.objects.get(pk=job.pk).moved >= 4, timeout=30)
    assert services.stop_redrive(actor=operator, redrive_id=job.pk) is True
    wait_for(lambda: Redrive.objects.get(pk=job.pk).state == RedriveState.STOPPED, timeout=30)
    job.refresh_from_db()
    assert 4 <= job.moved < 40
    assert queues.queue_stats("orders.dlq").depth == 40 - job.moved
    assert AuditEvent.objects.filter(action="stop_redrive", outcome="ok").count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_slow_redrive_beats_while_it_waits_and_stops_within_a_beat(make_queue, make_user):
    make_queue("orders", max_receives=1)
    make_dead_letters("orders", 5)
    operator = make_user("operator")
    job = services.start_redrive(actor=operator, queue="orders.dlq", rate=0.1)  # one message per 10 s
    wait_for(lambda: Redrive.objects.get(pk=job.pk).moved == 1, timeout=30)
    first_beat = Redrive.objects.get(pk=job.pk).heartbeat_at
    # Between two batches it keeps beating, so it is never mistaken for a dead one.
    wait_for(lambda: Redrive.objects.get(pk=job.pk).heartbeat_at > first_beat + timedelta(seconds=2.5), timeout=10)
    assert queues.reap_redrives(stale_after=2) == 0
    assert Redrive.objects.get(pk=job.pk).moved == 1
    assert services.stop_redrive(actor=operator, redrive_id=job.pk) is True
    # A stop lands within a beat (1 s) plus some slack, not at the next batch 10 s away.
    wait_for(lambda: Redrive.objects.get(pk=job.pk).state == RedriveState.STOPPED, timeout=4)
    assert Redrive.objects.get(pk=job.pk).moved == 1
    assert queues.queue_stats("orders.dlq").depth == 4


def test_one_running_redrive_per_queue_and_a_stopped_one_does_not_block(env, users):
    dlq = Queue.objects.get(name="orders.dlq")
    stuck = Redrive.objects.create(source=dlq)  # as if its process died mid-way
    with pytest.raises(services.ActionFailed, match="already running"):
        services.start_redrive(actor=users["operator"], queue="orders.dlq", background=False)
    services.stop_redrive(actor=users["operator"], redrive_id=stuck.pk)
    job = services.start_redrive(actor=users["operator"], queue="orders.dlq", background=False)
    assert (job.state, job.moved) == (RedriveState.FINISHED, 2)
