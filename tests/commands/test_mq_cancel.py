"""mq_cancel, mq_queue's flow-control options and mq_send --ttl (in-process, on the test database)."""

from __future__ import annotations

import json

import pytest
from django.core.management.base import CommandError

import queues
from queues.models import AuditEvent


def test_flow_control_from_the_command_line(cmd):
    cmd(
        "mq_queue",
        "create",
        "orders",
        "--message-ttl",
        "10m",
        "--expiry-action",
        "dead_letter",
        "--max-length",
        "3",
        "--overflow",
        "reject",
    )
    [row] = [q for q in json.loads(cmd("mq_queue", "list", "--json").out) if q["name"] == "orders"]
    assert (row["message_ttl"], row["expiry_action"], row["max_length"], row["overflow"]) == (
        600.0,
        "dead_letter",
        3,
        "reject",
    )
    with pytest.raises(CommandError, match="max_length must be an integer from 1"):
        cmd("mq_queue", "update", "orders", "--max-length", "0")
    assert queues.get_queue("orders").max_length == 3

    for n in range(3):
        cmd("mq_send", "orders", "--body", f'{{"n": {n}}}', "--ttl", "1h")
    with pytest.raises(CommandError, match=r"is full \(max_length 3\)"):
        cmd("mq_send", "orders", "--body", "{}")
    ids = sorted(m.id for m in queues.peek("orders"))

    assert "Cancelled 1 messages" in cmd("mq_cancel", "orders", str(ids[0])).out
    assert "Cancelled 2 messages" in cmd("mq_cancel", "orders", "--filter", "").out
    assert queues.peek("orders") == []
    assert [e.outcome for e in AuditEvent.objects.filter(action="cancel_messages").order_by("id")] == ["ok", "ok"]
    assert json.loads(cmd("mq_stats", "orders", "--json").out)[0]["cancelled_total"] == 3
    assert "CANCELLED" in cmd("mq_stats", "orders").out

    with pytest.raises(CommandError, match="give message ids or --filter"):
        cmd("mq_cancel", "orders")
    with pytest.raises(CommandError, match="does not exist"):
        cmd("mq_cancel", "nosuch", "1")
    assert AuditEvent.objects.filter(action="cancel_messages", outcome="error").exists()
