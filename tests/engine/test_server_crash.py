"""What a crash of the PostgreSQL server can and cannot do, with ``ASYNC_COMMIT_LEASES`` on and off.

Leases and acks made outside a transaction commit without waiting for the WAL flush when the setting
is on, so a crash may undo the last of them: those messages come back and are delivered again, and a
receive count may end lower than the number of deliveries. It can never lose a message, undo a send
that returned, or leave a message and its queue's counters disagreeing. With the setting off, every
ack that returned survives.

The crash is real and its moment is exact: the WAL writer is stopped (SIGSTOP) before the consumer's
last receive and acks, so what reaches the operating system is only what a synchronous commit
writes; the write position is read, then the WAL writer is killed (SIGKILL), which makes the
postmaster end every backend and recover from the WAL, as after a crash of the server process (what
the OS holds survives, WAL in PostgreSQL's buffers does not).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, wait_for

CHILD = Path(__file__).resolve().parent / "_crash_child.py"

pytestmark = pytest.mark.slow


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _child(url: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "mqadmin.settings",
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(CHILD), *args], env=env, cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _answer(proc: subprocess.Popen, timeout: float = 120.0) -> dict:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), f"the child did not answer within {timeout}s"
    line = proc.stdout.readline()
    assert line, f"the child exited: {proc.stderr.read() if proc.stderr else ''}"
    return json.loads(line)


def _stop_wal_writer(url: str) -> int:
    """Stop (SIGSTOP) the WAL writer: from now on only a synchronous commit writes the WAL. Its pid."""
    with psycopg.connect(url, autocommit=True) as conn:
        (pid,) = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'").fetchone()
    os.kill(pid, signal.SIGSTOP)
    return pid


def _crash(url: str, wal_writer: int) -> int:
    """Crash the server; return the WAL position written to the OS at that moment (what survives)."""
    with psycopg.connect(url, autocommit=True) as conn:
        (written,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    os.kill(wal_writer, signal.SIGKILL)
    wait_for(lambda: _was_restarted(url, wal_writer), timeout=60, interval=0.1)
    return _lsn(written)


def _was_restarted(url: str, old_walwriter: int) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'").fetchone()
    except psycopg.OperationalError:  # refused while it recovers
        return False
    return row is not None and row[0] != old_walwriter


def _state(url: str) -> tuple[dict[int, int], dict[str, int]]:
    """Queue c after the crash: {message id: receive count}, and its counters summed over slots."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT m.id, m.receive_count FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id "
            "WHERE q.name = 'c'"
        ).fetchall()
        depth, sent, acked = conn.execute(
            "SELECT sum(k.depth), sum(k.sent), sum(k.acked) FROM queues_counter k "
            "JOIN queues_queue q ON q.id = k.queue_id WHERE q.name = 'c'"
        ).fetchone()
    return dict(rows), {"depth": depth, "sent": sent, "acked": acked}


@pytest.mark.parametrize("async_commit", ["on", "off"])
def test_a_server_crash_never_loses_a_message_and_only_undoes_unflushed_leases_and_acks(private_server, async_commit):
    _base, url = private_server
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET autovacuum = off")  # its commits would flush the WAL too
        conn.execute("SELECT pg_reload_conf()")
    worker = _child(url, "work", async_commit)
    wal_writer = None
    try:
        assert _answer(worker) == "sent"
        # What the WAL writer would flush within a few hundred ms stays in PostgreSQL's buffers, so
        # the crash comes right after the last ack, whatever the machine's load.
        wal_writer = _stop_wal_writer(url)
        worker.stdin.write("go\n")
        worker.stdin.flush()
        before = _answer(worker)
        written = _crash(url, wal_writer)
    finally:
        if wal_writer is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(wal_writer, signal.SIGCONT)  # a failed test must not leave it stopped
        worker.kill()
        worker.wait(10)
    present, counters = _state(url)
    sent = before["sent"] + before["sent_late"]
    deliveries = {int(k): v for k, v in before["deliveries"].items()}

    # Every send that returned is there or was acked; the early acks were made durable by the sends
    # that followed them (a synchronous commit flushes the WAL before it, asynchronous commits included).
    assert set(before["sent_late"]) <= set(present)
    assert not set(before["acked_early"]) & set(present)
    acked_late = {i for ack in before["acks"] for i in ack["ids"]}
    assert set(sent) - set(before["acked_early"]) - acked_late <= set(present)
    assert set(present) <= set(sent)

    # Which of the last acks survived follows the WAL: written before the crash, durable; begun after
    # the last written byte, undone (the message is back).
    for ack in before["acks"]:
        if _lsn(ack["after"]) <= written:
            assert not set(ack["ids"]) & set(present), ack
        elif _lsn(ack["before"]) >= written:
            assert set(ack["ids"]) <= set(present), ack
    if async_commit == "on":
        # The last ack returned before its commit reached the OS: the setting really applies.
        assert _lsn(before["acks"][-1]["after"]) > written
    else:
        assert all(_lsn(ack["after"]) <= written for ack in before["acks"])
        assert not acked_late & set(present)

    # No half state: a message and its queue's counters changed together or not at all.
    assert counters == {"depth": len(present), "sent": len(sent), "acked": len(sent) - len(present)}
    # A receive undone by the crash leaves the count lower than the deliveries made, never higher.
    assert all(count <= deliveries.get(i, 0) for i, count in present.items())
    if _lsn(before["leased_at"]) >= written:
        assert all(present[i] == deliveries[i] - 1 for i in before["leased"]), "the last receive was undone"

    # Whatever came back is delivered again, each message once more, and then the queue is empty.
    drainer = _child(url, "drain")
    try:
        after = {int(k): v for k, v in _answer(drainer)["deliveries"].items()}
    finally:
        drainer.kill()
        drainer.wait(10)
    assert sorted(after) == sorted(present)
    assert all(counts == [present[i] + 1] for i, counts in after.items())
    assert _state(url) == ({}, {"depth": 0, "sent": len(sent), "acked": len(sent)})
