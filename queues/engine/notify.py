"""Wake long-polling receivers when a message arrives: one LISTEN connection per process.

Senders ``pg_notify`` once per statement with the queue id as payload (PostgreSQL folds identical
notifications of one transaction into one). A background thread here holds the only LISTEN
connection of the process and bumps a per-queue sequence number; receivers wait for the number to
change. Comparing sequence numbers, not events, means a notification that arrives between a
receiver's empty claim and its wait is never lost.

If the connection fails the thread reconnects with backoff; receivers meanwhile fall back to
polling, so a lost notification costs at most one poll interval.

A change to a queue's row arrives as ``config:<queue id>`` (a trigger, migration 0013): it bumps the
queue's config number (:meth:`Listener.config_seq`) and wakes its waiters, so a worker re-reads the
queue's settings at once. After a reconnect every config number moves too (changes may have been missed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import defaultdict

import psycopg

from queues import conf
from queues.engine.connection import clear_cache
from queues.engine.sql import NOTIFY_CHANNEL

log = logging.getLogger("queues.engine")

CONFIG_PREFIX = "config:"
"""Payload prefix of a queue settings change (then the queue id), sent by a trigger on ``queues_queue``."""


class Listener:
    """The process's LISTEN connection and the waiters on it."""

    def __init__(self, conninfo: dict) -> None:
        self._conninfo = conninfo
        self._cond = threading.Condition()
        self._seq: defaultdict[int, int] = defaultdict(int)
        self._config_seq: defaultdict[int, int] = defaultdict(int)
        self._async_waiters: defaultdict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = (
            defaultdict(set)
        )
        self._connected = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="mqadmin-listen", daemon=True)
        self._thread.start()

    def seq(self, queue_id: int) -> int:
        """The number of wake-ups seen for ``queue_id`` so far."""
        with self._cond:
            return self._seq[queue_id]

    def config_seq(self, queue_id: int) -> int:
        """The number of settings changes seen for ``queue_id`` so far (a wake-up comes with each)."""
        with self._cond:
            return self._config_seq[queue_id]

    def wait(self, queue_id: int, seen: int, timeout: float) -> bool:
        """Block until a wake-up for ``queue_id`` newer than ``seen``, or ``timeout``. True if woken."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._seq[queue_id] == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    async def await_wakeup(self, queue_id: int, seen: int, timeout: float) -> bool:
        """Async twin of :meth:`wait`: no thread is held while waiting."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        entry = (loop, fut)
        with self._cond:
            if self._seq[queue_id] != seen:
                return True
            self._async_waiters[queue_id].add(entry)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._cond:
                self._async_waiters[queue_id].discard(entry)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and close its connection.

        A notification on the channel wakes the thread out of its wait at once; without the database
        it stops within one ``notifies()`` timeout.
        """
        self._stop = True
        try:
            with psycopg.Connection.connect(**self._conninfo, autocommit=True, connect_timeout=2) as conn:
                conn.execute("SELECT pg_notify(%s, 'stop')", [NOTIFY_CHANNEL])
        except Exception as exc:  # the thread still stops at its next timeout
            log.debug("listener wake-up on stop failed (%s)", exc)
        self._thread.join(timeout)

    def wait_connected(self, timeout: float) -> bool:
        """Wait until LISTEN is in place (tests and benchmarks use this to avoid a first-poll delay)."""
        return self._connected.wait(timeout)

    def _wake(self, queue_id: int) -> None:
        with self._cond:
            self._seq[queue_id] += 1
            self._cond.notify_all()
            waiters = list(self._async_waiters.get(queue_id, ()))
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def _wake_all(self) -> None:
        # After a reconnect notifications may have been missed: let everyone re-check.
        with self._cond:
            for key in list(self._seq):
                clear_cache(queue_id=key)  # a settings change may be among them
                self._seq[key] += 1
                self._config_seq[key] += 1
            self._cond.notify_all()
            waiters = [w for ws in self._async_waiters.values() for w in ws]
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop:
            try:
                with psycopg.Connection.connect(**self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._connected.set()
                    self._wake_all()
                    backoff = 0.1
                    while not self._stop:
                        for note in conn.notifies(timeout=5.0):
                            if self._stop:
                                break
                            try:
                                queue_id = int(note.payload.removeprefix(CONFIG_PREFIX))
                            except ValueError:
                                continue
                            if note.payload.startswith(CONFIG_PREFIX):
                                clear_cache(queue_id=queue_id)  # before the wake-up, so readers see the change
                                with self._cond:
                                    self._config_seq[queue_id] += 1
                            self._wake(queue_id)
                        conn.execute("SELECT 1")  # notice a dead server even when idle
            except Exception as exc:
                self._connected.clear()
                log.debug("listener connection lost (%s); retrying in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(True)


_listener: Listener | None = None
_listener_pid: int | None = None
_lock = threading.Lock()


def get_listener() -> Listener:
    """The process's listener, started on first use (and again in a forked child)."""
    global _listener, _listener_pid
    with _lock:
        if _listener is None or _listener_pid != os.getpid():
            params = conf.db().get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            params.pop("server_side_binding", None)
            params.pop("prepare_threshold", None)
            _listener = Listener(params)
            _listener_pid = os.getpid()
        return _listener


def stop_listener(timeout: float = 10.0) -> None:
    """Stop this process's LISTEN thread and close its connection; the next wait starts a new one.

    A worker calls it when it stops, and ``queues.testing`` after a drain, so that a test run can drop
    its database ("database is being accessed by other users" otherwise).
    """
    global _listener
    with _lock:
        listener, _listener = _listener, None
        mine = _listener_pid == os.getpid()
    if listener is not None and mine:
        listener.stop(timeout)

