"""Fixtures for the mq_* command tests: run a command in-process and capture what it prints."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.core.management import call_command

from tests.conftest import ROOT, wait_for


class TTY(io.StringIO):
    """A captured stream that says it is a terminal (progress bars, prompts, screen clearing)."""

    def isatty(self) -> bool:
        return True


@dataclass
class Output:
    """What a command printed."""

    out: str
    err: str


@pytest.fixture
def cmd(db) -> Callable[..., Output]:
    """Run a management command in-process on the test database; return its stdout and stderr."""

    def run(*args: str, tty: bool = False, **options) -> Output:
        out, err = (TTY(), TTY()) if tty else (io.StringIO(), io.StringIO())
        call_command(*args, stdout=out, stderr=err, **options)
        return Output(out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def dead_letters() -> Callable[[str, int], list[int]]:
    """Put ``n`` messages in the dead-letter queue of ``queue`` (made with max_receives=1)."""
    import queues

    def make(queue: str, n: int) -> list[int]:
        ids = queues.send_batch(queue, [{"i": i} for i in range(n)])
        for delivery in queues.receive(queue, max_messages=n):
            assert queues.nack(delivery.receipt, error="boom")
        return ids

    return make


class Running:
    """A ``manage.py`` child whose output is collected as it comes (so tests can wait for a line)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._collect, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _collect(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for_output(self, text: str, timeout: float = 60.0) -> None:
        """Wait until ``text`` shows on stdout or stderr; fail with what was printed if the child exits first."""
        def seen() -> bool:
            if text in self.stdout or text in self.stderr:
                return True
            if self.proc.poll() is not None:
                self.finish(timeout=5)
                raise AssertionError(f"exited with {self.proc.returncode} before printing {text!r}:\n"
                                     f"{self.stdout}\n{self.stderr}")
            return False

        wait_for(seen, timeout=timeout)

    def signal(self, signum: int = signal.SIGINT) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the exit; return the exit code once all output is collected."""
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return code


@pytest.fixture
def spawn_manage(subprocess_env: dict[str, str]):
    """Start ``manage.py`` in the background (to signal it); every process is killed at teardown."""
    started: list[Running] = []

    def spawn(*args: str, env: dict[str, str] | None = None) -> Running:
        running = Running([sys.executable, str(ROOT / "manage.py"), *args], env or subprocess_env)
        started.append(running)
        return running

    yield spawn
    for running in started:
        if running.proc.poll() is None:
            os.kill(running.proc.pid, signal.SIGKILL)
            running.proc.wait()
