"""A long-running producer survives a database restart without knowing about Django's connection
handling: outside a transaction the engine reconnects once by itself, then says clearly that the
database is unavailable; inside one it never retries silently. Real server restarts."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mqadmin.embedded_db import ensure_server, stop_server
from tests.conftest import ROOT, wait_for

PRODUCER = Path(__file__).resolve().parent / "_producer.py"

pytestmark = pytest.mark.slow


class Producer:
    """The ``_producer.py`` child: one command line in, one JSON line out."""

    def __init__(self, url: str) -> None:
        env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT),
               "DJANGO_SETTINGS_MODULE": "mqadmin.settings", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(PRODUCER)], env=env, cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert self.answer(timeout=60) == "ready"

    def ask(self, command: str, timeout: float = 60.0) -> Any:
        self.tell(command)
        return self.answer(timeout)

    def tell(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float = 60.0) -> Any:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise AssertionError(f"the producer did not answer within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the producer exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _rows(url: str) -> list[int]:
    """The bodies' n of every message stored in queue p (empty while the server is down)."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT (m.body::jsonb ->> 'n')::int FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id "
                "WHERE q.name = 'p' ORDER BY 1"
            ).fetchall()
    except psycopg.OperationalError:
        return []
    return [n for (n,) in rows]


def _restart(base: Path, down_for: float = 0.0) -> None:
    stop_server(base=base, mode="fast")
    if down_for:
        time.sleep(down_for)  # the outage itself, not a wait for a condition
    ensure_server(base=base)


@pytest.fixture
def producer(private_server):
    base, url = private_server
    child = Producer(url)
    yield child, base, url
    child.close()


def test_a_send_after_a_restart_reconnects_by_itself(producer):
    child, base, url = producer
    assert child.ask("send 1") == "ok"
    _restart(base)
    # Before: every send failed with "the connection is closed" until close_old_connections().
    assert child.ask("send 2") == "ok"
    assert child.ask("send 3") == "ok"
    assert _rows(url) == [1, 2, 3]


def test_inside_a_transaction_the_lost_connection_is_the_callers_to_handle(producer):
    child, base, url = producer
    assert child.ask("send 1") == "ok"
    _restart(base)
    kind, _ = child.ask("atomic 2")
    assert kind in {"OperationalError", "InterfaceError"}, kind
    # The transaction is over: the next send outside one recovers.
    assert child.ask("send 3") == "ok"
    assert _rows(url) == [1, 3]


def test_a_server_that_stays_down_gets_one_reconnect_then_a_clear_error(producer):
    child, base, url = producer
    assert child.ask("send 1") == "ok"
    stop_server(base=base, mode="fast")
    try:
        kind, message = child.ask("send 2")
        assert kind == "DatabaseUnavailable"
        assert "the database is unavailable" in message and "dedup_id" in message
        kind, _ = child.ask("send 2")
        assert kind == "DatabaseUnavailable"
    finally:
        ensure_server(base=base)
    assert child.ask("send 2") == "ok"
    assert child.ask("send 2") == "ok"  # the same dedup id again: stored once
    assert _rows(url) == [1, 2]


def test_retrying_with_the_dedup_id_across_a_restart_stores_each_message_once(producer):
    child, base, url = producer
    child.tell("loop 1 400")
    wait_for(lambda: len(_rows(url)) >= 100, timeout=60, interval=0.05)
    _restart(base, down_for=2.0)
    result = child.answer(timeout=120)
    assert result["retries"] > 0 and result["errors"] == ["DatabaseUnavailable"], result
    rows = _rows(url)
    assert rows == list(range(1, 401)), f"{len(rows)} rows, {len(rows) - len(set(rows))} stored twice"
