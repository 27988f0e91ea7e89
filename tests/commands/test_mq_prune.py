"""mq_prune: remove messages past retention, expired dedup ids and old task results."""

from __future__ import annotations

import json

import pytest
from django.core.management.base import CommandError
from django.db import connection

import queues


def age(queue: str, seconds: int) -> None:
    """Make the messages of ``queue`` look ``seconds`` old (time travel for the test's setup only)."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE queues_message SET enqueued_at = enqueued_at - make_interval(secs => %(s)s), "
            "available_at = available_at - make_interval(secs => %(s)s) "
            "WHERE queue_id = (SELECT id FROM queues_queue WHERE name = %(q)s)", {"s": seconds, "q": queue})


def test_prune_removes_expired_messages_only(cmd, make_queue):
    make_queue("old", retention=60)
    make_queue("young", retention=3600)
    queues.send_batch("old", [1, 2])
    queues.send_batch("young", [3])
    age("old", 120)
    age("young", 120)
    out = cmd("mq_prune").out
    assert out.strip() == "Removed 2 expired messages, 0 expired dedup ids and 0 expired task results."
    assert queues.queue_stats("old").depth == 0
    assert queues.queue_stats("young").depth == 1


def test_prune_json(cmd, make_queue):
    make_queue("old", retention=60)
    queues.send("old", 1)
    age("old", 120)
    assert json.loads(cmd("mq_prune", "--json", "--batch", "1").out) == {
        "expired_messages": 1, "expired_dedup_ids": 0, "expired_task_results": 0}


def test_bad_batch(cmd):
    with pytest.raises(CommandError, match=r"invalid number '0': it must be at least 1"):
        cmd("mq_prune", "--batch", "0")
