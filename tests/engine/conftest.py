"""Helpers for the engine's tests: ground-truth counts, consumer threads and child processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

import queues

CHILD = Path(__file__).resolve().parent / "_child.py"

# Ground truth straight from the message table, by the state definitions of queues/models.py:
# a future leased_until is in flight; otherwise a future available_at is delayed, a past one ready.
_TRUTH = """
SELECT q.name,
       count(m.id) FILTER (WHERE NOT m.leased AND m.available_at <= statement_timestamp()) AS ready,
       count(m.id) FILTER (WHERE NOT m.leased AND m.available_at > statement_timestamp()) AS delayed,
       count(m.id) FILTER (WHERE m.leased) AS in_flight,
       count(m.id) AS depth,
       (SELECT count(*) FROM queues_message d WHERE d.queue_id = q.dead_letter_queue_id) AS dead
FROM queues_queue q
LEFT JOIN (SELECT id, queue_id, available_at, coalesce(leased_until > statement_timestamp(), false) AS leased
           FROM queues_message) m ON m.queue_id = q.id
GROUP BY q.id, q.name, q.dead_letter_queue_id
"""


def ground_truth() -> dict[str, dict[str, int]]:
    """Every queue's counts by ``count(*)`` over queues_message."""
    with connection.cursor() as cur:
        cur.execute(_TRUTH)
        return {
            name: {"ready": r, "delayed": d, "in_flight": f, "depth": n, "dead": x}
            for name, r, d, f, n, x in cur.fetchall()
        }


def reported(stats: list[Any]) -> dict[str, dict[str, int]]:
    """The same counts as ``queues.stats()`` reports them."""
    return {
        s.queue: {"ready": s.ready, "delayed": s.delayed, "in_flight": s.in_flight, "depth": s.depth, "dead": s.dead}
        for s in stats
    }


def assert_counts_exact(step: str = "") -> dict[str, dict[str, int]]:
    """Compare ``queues.stats()`` and each ``queues.queue_stats(name)`` with the ground truth."""
    truth = ground_truth()
    assert reported(queues.stats()) == truth, f"stats() drifted after {step}"
    for name, counts in truth.items():
        assert reported([queues.queue_stats(name)]) == {name: counts}, f"queue_stats({name!r}) drifted after {step}"
    return truth


def message_rows(where: str = "TRUE", params: list[Any] | None = None) -> int:
    """``count(*)`` of queues_message rows matching ``where``."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM queues_message WHERE {where}", params or [])
        return cur.fetchone()[0]


def table_snapshot() -> tuple[int, int, int, int]:
    """Rows of the message, dedup and counter tables and the sum of the depth counters."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM queues_message), (SELECT count(*) FROM queues_dedup),"
            " (SELECT coalesce(sum(sent), 0) FROM queues_counter),"
            " (SELECT coalesce(sum(depth), 0) FROM queues_counter)"
        )
        return cur.fetchone()


class Thread(threading.Thread):
    """A thread with its own database connection (closed at the end) that keeps its result or error."""

    def __init__(self, target: Callable[[], Any], name: str = "") -> None:
        super().__init__(name=name or None, daemon=True)
        self._fn = target
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # handed to the test by outcome()
            self.error = exc
        finally:
            connections.close_all()

    def outcome(self, timeout: float = 60.0) -> Any:
        """Join the thread; return its result or raise its error."""
        self.join(timeout)
        assert not self.is_alive(), f"thread {self.name} did not finish within {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


class Child:
    """A child Python process running ``_child.py`` against the test database."""

    def __init__(self, env: dict[str, str], *args: str, script: Path = CHILD) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def wait_ready(self) -> None:
        """Block until the child has set Django up and says it is ready."""
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"child failed to start: {line!r}\n{err}")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float = 120.0) -> Any:
        """Wait for the child to exit; return the JSON it printed last."""
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"child exited with {self.proc.returncode}:\n{err}"
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def spawn(subprocess_env: dict[str, str]) -> Iterator[Callable[..., Child]]:
    """Factory: start a child process (``_child.py``, or ``script``, with the given arguments); killed at teardown."""
    children: list[Child] = []

    def start(*args: str, script: Path = CHILD) -> Child:
        child = Child(subprocess_env, *args, script=script)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()


def in_thread(fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run ``fn`` in another thread, on another database connection; return its result."""
    thread = Thread(fn)
    thread.start()
    return thread.outcome(timeout)
