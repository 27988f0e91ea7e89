"""Running handlers: the handler threads (sync handlers) and the event loop (async handlers).

Part of :class:`~queues.worker.runtime.WorkerProcess` (a base class of it, sharing its lock, its held
items and its counters; see runtime.py for the rules they keep). A handler's outcome goes to
:mod:`~queues.worker.settling` (``_succeed``/``_fail``), an atomic handler acks inside its own transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections

from queues import conf, engine, tracing
from queues.engine.errors import Cancelled, LeaseExpired
from queues.engine.types import Delivery
from queues.worker.items import RUNNING, WAITING, HeldItem
from queues.worker.outcomes import past_retries, timeout_error
from queues.worker.resilience import ConnectionCare

log = logging.getLogger("queues.worker")


class _Abandoned(Exception):
    """Raised inside an atomic handler's transaction when it finished after its timeout."""


class HandlerRunner:
    """The handler side of a :class:`~queues.worker.runtime.WorkerProcess`.

    Uses the process's ``_lock``, ``_work`` (idle handler threads wait on it), ``_ready``, ``_waiting``,
    ``_handlers_closing``, ``_loop``, ``_semaphore`` and ``durations``; hands each outcome to the
    settling side (``_succeed``, ``_fail``, ``_lose``, ``_finish_acked``).
    """

    def _handler_thread(self) -> None:
        care = ConnectionCare()
        me = threading.current_thread()
        ok = True  # whether the last handler returned normally (else the connection gets checked)
        try:
            while True:
                with self._lock:
                    while not self._ready:
                        if self._handlers_closing:
                            return
                        self._work.wait()
                    item = self._ready.popleft()
                    if item.state is not WAITING:
                        continue
                    self._waiting -= 1
                    item.state, item.started, item.thread = RUNNING, time.monotonic(), me
                try:
                    care(after_error=not ok)
                    ok = self._run_sync(item)
                except Exception:
                    ok = False
                    log.exception("event=runtime_error queue=%s message=%d", item.queue.name, item.delivery.id)
                if item.thread is not me:
                    return  # abandoned after its timeout: a fresh thread has taken this one's place
        finally:
            connections.close_all()

    def _decoded(self, item: HeldItem) -> Delivery | None:
        """The delivery the handler sees (its body through the handler's ``decode``), or None when
        decoding failed (the message is then dead-lettered with the reason)."""
        delivery, spec = item.delivery, item.queue.spec
        if spec.decode is None:
            return delivery
        try:
            return dataclasses.replace(delivery, body=spec.decode(delivery.body))
        except Exception as exc:
            self._fail(item, exc, reason="cannot decode the message body", dead_letter=True)
            return None

    def _past_retries(self, item: HeldItem) -> bool:
        """Dead-letter, without running it, a delivery received more often than its handler allows
        (:func:`~queues.worker.outcomes.past_retries`); True if it was."""
        error = past_retries(item.queue.spec, item.delivery.receive_count)
        if error is None:
            return False
        self._fail(item, error, dead_letter=True)
        return True

    def _cancelled_before_start(self, item: HeldItem) -> bool:
        """End, without running it, a delivery whose cancel was requested while it waited; True if it was."""
        if not item.delivery.lease.cancel_requested:
            return False
        self._fail(item, Cancelled(f"message {item.delivery.id} was cancelled before its handler started"))
        return True

    def _run_sync(self, item: HeldItem) -> bool:
        """Run a sync handler and record its outcome; True if it returned normally."""
        spec = item.queue.spec
        if self._past_retries(item) or self._cancelled_before_start(item):
            return False
        delivery = self._decoded(item)
        if delivery is None:
            return False
        acking = False
        try:
            if spec.atomic:
                with conf.atomic():
                    with tracing.process_span(item.queue.name, delivery, spec.name):
                        self._timed(item, spec.func, delivery)
                    with self._lock:
                        if item.state is not RUNNING:
                            raise _Abandoned  # timed out meanwhile: its nack is on the way; roll back
                    acking = True
                    engine.ack(delivery.receipt)
            else:
                with tracing.process_span(item.queue.name, delivery, spec.name):
                    self._timed(item, spec.func, delivery)
        except _Abandoned:
            log.warning("event=late_finish queue=%s message=%d note=finished after its timeout; rolled back",
                        item.queue.name, delivery.id)
            return False
        except LeaseExpired as exc:
            if not acking:
                self._fail(item, exc)
            else:
                self._lose(item, "the lease ran out before the handler's transaction committed; rolled back")
            return False
        except BaseException as exc:  # whatever a handler raises is its message's failure
            self._fail(item, exc)
            return False
        if spec.atomic:
            self._finish_acked(item)
        else:
            self._succeed(item)
        return True

    def _timed(self, item: HeldItem, func: Callable[[Delivery], Any], delivery: Delivery) -> None:
        """Run a sync handler, counting its duration (returned or raised) into the histogram."""
        started = time.monotonic()
        try:
            func(delivery)
        finally:
            self.durations.observe(item.queue.name, item.queue.spec.name, time.monotonic() - started)

    def _loop_thread(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _start_task(self, item: HeldItem) -> None:
        assert self._loop is not None
        item.task = self._loop.create_task(self._run_async(item))

    async def _run_async(self, item: HeldItem) -> None:
        assert self._semaphore is not None
        async with self._semaphore:
            with self._lock:
                if item.state is not WAITING:
                    return
                self._waiting -= 1
                item.state, item.started = RUNNING, time.monotonic()
            if self._past_retries(item) or self._cancelled_before_start(item):
                return
            delivery = self._decoded(item)
            if delivery is None:
                return
            spec = item.queue.spec
            started = time.monotonic()
            try:
                async with asyncio.timeout(spec.timeout) as scope:
                    with tracing.process_span(item.queue.name, delivery, spec.name):
                        try:
                            await spec.func(delivery)
                        finally:
                            self.durations.observe(item.queue.name, spec.name, time.monotonic() - started)
            except asyncio.CancelledError:
                return  # shutdown past its grace: the message is being released
            except TimeoutError as exc:
                if scope.expired():
                    self._fail(item, timeout_error(spec))
                else:
                    self._fail(item, exc)
            except Exception as exc:
                self._fail(item, exc)
            else:
                self._succeed(item)
