"""No message is ever in a queue that does not exist (migration 0023: triggers instead of a foreign key).

The queue is checked, and locked against deletion, once per statement and queue; a queue deletion waits for
the sends in progress and sees their messages; a send that raced a deletion finds no queue.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction

import queues
from queues.models import Message, Queue
from tests.engine.conftest import Thread

CHECK = "queues_message_queue"  # the constraint name the triggers raise with


def orphans() -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM queues_message m"
            " WHERE NOT EXISTS (SELECT 1 FROM queues_queue q WHERE q.id = m.queue_id)"
        )
        return cur.fetchone()[0]


def missing_queue_id() -> int:
    return (Queue.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1000


def constraint_of(exc: IntegrityError) -> str | None:
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)


def wait_for_lock_waiters(count: int = 1, deadline: float = 10.0) -> None:
    """Poll until ``count`` other sessions of this database wait on a lock."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cur.fetchone()[0] >= count:
                return
        time.sleep(0.01)
    raise AssertionError(f"no session waited on a lock within {deadline}s")


def hold_open(work) -> tuple[Thread, threading.Event]:
    """Run ``work`` in a transaction on another connection and keep it open (its locks held) until the
    returned event is set; return once ``work`` has run. The thread's outcome is ``work``'s result."""
    done, commit = threading.Event(), threading.Event()

    def run():
        with transaction.atomic():
            result = work()
            done.set()
            assert commit.wait(30)
        return result

    thread = Thread(run)
    thread.start()
    assert done.wait(30)
    return thread, commit


def test_a_message_for_a_queue_that_does_not_exist_is_refused_and_nothing_is_written(make_queue):
    queue = Queue.objects.get(name=make_queue())
    before = Message.objects.count()
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        Message.objects.create(queue_id=missing_queue_id(), body="{}", enqueued_at="2026-01-01T00:00Z",
                               available_at="2026-01-01T00:00Z")
    assert constraint_of(caught.value) == CHECK
    assert f"queue {missing_queue_id()} does not exist" in str(caught.value)
    # One statement, two rows, one of them in a queue that exists: the whole statement is refused.
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.bulk_create([
            Message(queue=queue, body="{}", enqueued_at="2026-01-01T00:00Z", available_at="2026-01-01T00:00Z"),
            Message(queue_id=missing_queue_id(), body="{}", enqueued_at="2026-01-01T00:00Z",
                    available_at="2026-01-01T00:00Z"),
        ])
    assert Message.objects.count() == before


def test_moving_a_message_to_a_queue_that_does_not_exist_is_refused(make_queue):
    name = make_queue()
    message_id = queues.send(name, {"n": 1})
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        Message.objects.filter(id=message_id).update(queue_id=missing_queue_id())
    assert constraint_of(caught.value) == CHECK
    assert Message.objects.get(id=message_id).queue.name == name


def test_a_queue_with_messages_cannot_be_deleted_behind_the_engines_back(make_queue):
    name = make_queue()
    queues.send_batch(name, [1, 2, 3])
    with pytest.raises(IntegrityError) as caught, transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM queues_queue WHERE name = %s", [name])
    assert constraint_of(caught.value) == CHECK
    assert "still has messages" in str(caught.value)
    assert queues.delete_queue(name) == 3
    assert not Queue.objects.filter(name=name).exists()
    assert orphans() == 0


@pytest.mark.django_db(transaction=True)
def test_a_queue_deletion_waits_for_an_uncommitted_send_and_takes_its_messages(make_queue):
    name = make_queue()
    queues.send(name, {"before": True})
    sender, commit = hold_open(lambda: queues.send_batch(name, [{"n": n} for n in range(3)]))
    deleter = Thread(lambda: queues.delete_queue(name))
    deleter.start()
    wait_for_lock_waiters()  # the deletion waits for the send's lock on the queue row
    commit.set()
    assert len(sender.outcome()) == 3
    assert deleter.outcome() == 4  # the message before and the three the send committed while it waited
    assert orphans() == 0
    assert not Queue.objects.filter(name=name).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["send", "send_batch", "send with a dedup id", "publish"])
def test_a_send_that_races_a_queue_deletion_raises_queue_not_found_and_writes_nothing(make_queue, how):
    name = make_queue()
    if how == "publish":
        queues.subscribe("news", name)
    queues.send(name, {"warm": True})  # the sender's process knows the queue's id
    deleter, commit = hold_open(lambda: queues.delete_queue(name))
    sends = {
        "send": lambda: queues.send(name, {"n": 1}),
        "send_batch": lambda: queues.send_batch(name, [{"n": 1}, {"n": 2}]),
        "send with a dedup id": lambda: queues.send(name, {"n": 1}, dedup_id="once"),
        "publish": lambda: queues.publish("news", {"n": 1}),
    }
    sender = Thread(sends[how])
    sender.start()
    wait_for_lock_waiters()  # the send waits for the deletion's lock on the queue row
    commit.set()
    assert deleter.outcome() == 1
    if how == "publish":
        assert sender.outcome() == {}  # the queue went, and its subscription with it
    else:
        with pytest.raises(queues.QueueNotFound):
            sender.outcome()
    assert orphans() == 0
    assert Message.objects.count() == 0


def test_a_batch_send_checks_its_queue_once_not_once_per_message(make_queue):
    name = make_queue()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL track_functions = 'pl'")
        queues.send_batch(name, list(range(100)))
        cur.execute("SELECT calls FROM pg_stat_xact_user_functions WHERE funcname = 'queues_message_queue_check'")
        assert cur.fetchall() == [(1,)]  # once for the statement (it locks each queue of the batch once)
        # and no foreign key checks the rows one by one behind it
        cur.execute(
            "SELECT count(*) FROM pg_constraint c"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)"
            " WHERE c.conrelid = 'queues_message'::regclass AND c.contype = 'f' AND a.attname = 'queue_id'"
        )
        assert cur.fetchone()[0] == 0
