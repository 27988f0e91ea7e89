"""Real servers and clients for the live and browser tests: a daphne process, a websocket client.

Nothing here is a fixture: tests and ``bench/`` build these with the environment they need.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = "tests.browser.live_settings"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daphne:
    """``python -m daphne`` serving mqadmin on 127.0.0.1, with ``tests.browser.live_settings``.

    ``env`` must point at the database the test uses (``subprocess_env``); ``overrides`` go to
    ``MQADMIN``; ``extra_env`` adds variables (``REDIS_URL``).
    """

    def __init__(self, env: dict[str, str], *, overrides: dict[str, Any] | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.env = dict(env)
        self.env["DJANGO_SETTINGS_MODULE"] = SETTINGS
        self.env["MQADMIN_TEST_OVERRIDES"] = json.dumps(overrides or {})
        self.env.update(extra_env or {})
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix="mq-daphne-", suffix=".log")[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The daphne process id."""
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        """What the server printed so far."""
        return self.log.read_text(errors="replace")

    def start(self, timeout: float = 60.0, *, port: int | None = None) -> Daphne:
        """Start and wait until it accepts connections (a few tries if a port was taken meanwhile).

        ``port``: listen there (a restart on the same address); default: a free one.
        """
        for _ in range(3):
            self.port = port or free_port()
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                     "mqadmin.asgi:application"],
                    env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return self
                except OSError:
                    time.sleep(0.1)
            else:
                self.stop()
                raise AssertionError(f"daphne did not listen within {timeout}s:\n{self.output()}")
            if "Address already in use" not in self.output():
                raise AssertionError(f"daphne exited with {self.proc.returncode}:\n{self.output()}")
        raise AssertionError(f"daphne found no free port:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL: the process dies without any cleanup, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def discard_log(self) -> None:
        """Remove the server's log file."""
        self.log.unlink(missing_ok=True)


class WSClient:
    """A websocket client (the ``websockets`` package) that reads the dashboard's pushes."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.close_code: int | None = None

    async def connect(
        self, url: str, *, cookie: str = "", origin: str | None = None, timeout: float = 20.0
    ) -> WSClient:
        """Open ``ws://127.0.0.1:PORT/path``; ``cookie`` is sent as the Cookie header."""
        from websockets.asyncio.client import connect

        host_port = url.split("//", 1)[1].split("/", 1)[0]
        headers = {"Cookie": cookie} if cookie else {}
        self.conn = await connect(url, origin=origin or f"http://{host_port}", additional_headers=headers,
                                  proxy=None, open_timeout=timeout, compression=None, max_queue=None)
        return self

    async def next_sample(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next pushed message of type ``sample`` (AssertionError if the socket closes first)."""
        from websockets.exceptions import ConnectionClosed

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no sample within {timeout}s")
            try:
                text = await asyncio.wait_for(self.conn.recv(), left)
            except ConnectionClosed as exc:
                self.close_code = exc.rcvd.code if exc.rcvd else None
                raise AssertionError(f"socket closed ({self.close_code}) before a sample came") from exc
            message = json.loads(text)
            if message.get("type") == "sample":
                return message

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        """Wait for the server to close the socket; its close code."""
        await asyncio.wait_for(self.conn.wait_closed(), timeout)
        self.close_code = self.conn.close_code
        return self.close_code

    async def close(self) -> None:
        """Close politely."""
        if self.conn is not None:
            await self.conn.close()
