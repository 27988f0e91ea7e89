"""Fixtures of the worker tests: real ``mq_worker`` processes on the test database, and the table
their handlers (``tests/worker/handlers.py``) record into."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.conftest import ROOT, wait_for
from tests.worker.handlers import HANDLERS, TABLE_DDL

# Fast heartbeats so that dead workers are noticed within a few seconds.
WORKER_SETTINGS: dict[str, Any] = {"HANDLERS": HANDLERS, "HEARTBEAT_INTERVAL": 0.5, "WORKER_DEAD_AFTER": 3.0}


def worker_environment(base: dict[str, str], wt_dir: Path, **settings: Any) -> dict[str, str]:
    """``base`` plus what a worker process needs to find the test handlers."""
    env = dict(base)
    env["MQADMIN_SETTINGS"] = json.dumps({**WORKER_SETTINGS, **settings})
    env["WT_DIR"] = str(wt_dir)
    env["MQADMIN_LOG_LEVEL"] = "INFO"
    return env


class WorkerProcess:
    """One ``manage.py mq_worker`` child; its stdout and stderr go to a log file."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "mq_worker", *args],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        """Everything the worker logged so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> str:
        """Wait until ``text`` appears in the log; fail early with the log if the worker exits."""

        def seen() -> bool:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}) before logging {text!r}:\n"
                                     f"{self.output()}")
            return False

        wait_for(seen, timeout=timeout, interval=0.05)
        return self.output()

    def wait_until(self, predicate: Callable[[], object], timeout: float = 30.0) -> object:
        """``wait_for(predicate)``, failing with this worker's log (what it did instead)."""
        try:
            return wait_for(predicate, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; worker log:\n{self.output()[-6000:]}") from None

    def started(self, timeout: float = 30.0) -> WorkerProcess:
        """Wait until the worker has registered and begun claiming."""
        self.wait_for_log("event=started", timeout)
        return self

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the exit; return the exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit within {timeout}s:\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A private temporary folder for worker logs and handler marks, removed afterwards.

    Not pytest's tmp_path: concurrent pytest sessions on this machine prune each other's base temp
    folders, which could pull the floor from under a running worker.
    """
    folder = Path(tempfile.mkdtemp(prefix="mqw-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def wt_dir(scratch: Path) -> Path:
    """A folder shared with the workers' handlers (start marks, release gates)."""
    folder = scratch / "wt"
    folder.mkdir()
    return folder


@pytest.fixture
def worker_env(subprocess_env: dict[str, str], wt_dir: Path) -> dict[str, str]:
    """Environment of a worker process on the test database with the test handlers."""
    return worker_environment(subprocess_env, wt_dir)


@pytest.fixture
def start_worker(worker_env: dict[str, str], scratch: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start ``mq_worker *args`` (waits until it runs unless ``wait=False``); killed at teardown."""
    workers: list[WorkerProcess] = []

    def start(*args: str, wait: bool = True, env: dict[str, str] | None = None, **settings: Any) -> WorkerProcess:
        use_env = dict(env or worker_env)
        if settings:
            use_env["MQADMIN_SETTINGS"] = json.dumps({**json.loads(use_env["MQADMIN_SETTINGS"]), **settings})
        worker = WorkerProcess(args, use_env, scratch / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker.started() if wait else worker

    yield start
    for worker in workers:
        worker.kill()


class Handled:
    """The rows the test handlers wrote into ``wt_handled`` (in the test database)."""

    def _one(self, sql: str, params: list[Any] | None = None) -> Any:
        with connection.cursor() as cur:
            cur.execute(sql, params or [])
            return cur.fetchone()[0]

    def count(self, queue: str | None = None) -> int:
        """Distinct messages handled (of ``queue``)."""
        if queue is None:
            return self._one("SELECT count(*) FROM wt_handled")
        return self._one("SELECT count(*) FROM wt_handled WHERE queue = %s", [queue])

    def times(self, message_id: int) -> int:
        """How many times the message was handled (0: never)."""
        return self._one("SELECT coalesce(max(times), 0) FROM wt_handled WHERE id = %s", [message_id])

    def row(self, message_id: int) -> dict[str, Any] | None:
        with connection.cursor() as cur:
            cur.execute("SELECT id, queue, times, pid, receive_count FROM wt_handled WHERE id = %s", [message_id])
            found = cur.fetchone()
        return dict(zip(("id", "queue", "times", "pid", "receive_count"), found, strict=True)) if found else None

    def duplicates(self) -> int:
        """Extra handlings beyond the first of each message."""
        return self._one("SELECT coalesce(sum(times - 1), 0) FROM wt_handled")


@pytest.fixture
def handled(transactional_db) -> Handled:
    """An empty ``wt_handled`` table."""
    with connection.cursor() as cur:
        cur.execute(TABLE_DDL)
        cur.execute("TRUNCATE wt_handled")
    return Handled()


def worker_row(pid: int) -> Any:
    """The heartbeat row of the worker process ``pid``."""
    from queues.models import Worker

    return Worker.objects.filter(pid=pid).order_by("-id").first()


def wait_exit(worker: WorkerProcess, timeout: float) -> tuple[int, float]:
    """Wait for ``worker`` to exit; return its exit code and how long it took."""
    started = time.monotonic()
    code = worker.wait(timeout)
    return code, time.monotonic() - started

