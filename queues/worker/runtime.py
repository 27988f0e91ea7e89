"""The worker process behind ``mq_worker``: claim messages in batches, run their handlers, settle them.

One :class:`WorkerProcess` is one process. Its threads, each with its own database connection:

- **main** (here): claims batches (weighted across its queues), waits for a NOTIFY, for free capacity
  or for a poll timer, and runs the shutdown when a signal or a limit says so;
- **handler threads** (``concurrency`` of them) run sync handlers; one **event loop** thread runs
  async handlers as tasks, ``concurrency`` at a time (:mod:`~queues.worker.handling`);
- **settler**: acks in batches, nacks failures with backoff, extends leases that passed half their
  length, abandons sync handlers past their timeout (:mod:`~queues.worker.settling`);
- **beat** (here): the heartbeat row (:mod:`~queues.worker.fleet`), reaping dead workers at heartbeat
  pace and an upkeep sweep now and then (:func:`queues.upkeep.sweep`; one process at a time), and the
  periodic log line;
- one **watcher** per queue (here) turns the process's LISTEN wake-ups into a wake-up of the main
  thread, and a change of the queue's settings (a NOTIFY from a trigger, see ``engine/notify.py``) into
  a re-read of them: a visibility timeout changed in the dashboard is used by the next claim.

Every message the worker holds is a :class:`~queues.worker.items.HeldItem` in ``_held`` (keyed by
receipt) from the claim until its settlement reached the database (acked, nacked, released) or its
lease was found lost. The rules every part keeps: all item state changes happen under ``_lock``, and
database calls never do; an item is settled at most once; a lost lease is never extended or settled.
:class:`WorkerProcess` holds that state (``__init__``); :class:`~queues.worker.handling.HandlerRunner`
and :class:`~queues.worker.settling.Settling` are its bases, one file per side. Around it:
:mod:`~queues.worker.config` (the options), :mod:`~queues.worker.outcomes` (what a failure means for
its message), :mod:`~queues.worker.resilience` (connections and outages).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.db import DatabaseError, close_old_connections, connections

from queues import conf, engine, schedules, tracing, upkeep
from queues.engine.errors import QueueNotFound
from queues.engine.limits import retry_hint
from queues.engine.notify import Listener, get_listener, stop_listener
from queues.engine.types import Delivery
from queues.metrics.durations import DurationHistogram
from queues.models import WorkerState
from queues.worker import fleet, registry
from queues.worker.config import WorkerConfig, check_schema, check_signature, parse_queue_weight
from queues.worker.errors import WorkerConfigError
from queues.worker.handling import HandlerRunner
from queues.worker.items import (
    ABANDONED,
    FINISHED,
    MIN_IDLE_POLL,
    RELEASED,
    RUNNING,
    WAITING,
    Failure,
    HeldItem,
    QueueState,
)
from queues.worker.resilience import DB_RETRY_MAX, ConnectionCare, Outage, one_line
from queues.worker.settling import Settling

log = logging.getLogger("queues.worker")

# The main thread re-checks its stop flag at least this often (signal handlers only set a flag).
MAX_WAIT = 0.25


class WorkerProcess(HandlerRunner, Settling):
    """One worker process: build it with a :class:`WorkerConfig`, :meth:`prepare`, then :meth:`run`."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.prefetch = config.effective_prefetch
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.row_id: int | None = None
        self.heartbeat_interval = float(config.heartbeat_interval or conf.get("HEARTBEAT_INTERVAL"))
        self.dead_after = float(conf.get("WORKER_DEAD_AFTER"))
        self._queues: list[QueueState] = []
        self._prepared = False

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # main thread: capacity freed, NOTIFY, stop
        self._work = threading.Condition(self._lock)  # handler threads: items waiting
        self._settle = threading.Condition(self._lock)  # settler: acks or failures to write
        self._held: dict[str, HeldItem] = {}
        self._ready: collections.deque[HeldItem] = collections.deque()
        self._waiting = 0
        self._acks: list[HeldItem] = []
        self._first_ack_at = 0.0
        self._ack_batch = max(1, min(500, self.prefetch // 2))
        self._acking = 0  # acks taken by the settler, being written
        self._claim_threshold = max(1, self.prefetch // 2)
        self._claim_waiting = False  # the main thread waits for capacity: wake it when there is some
        self._failures: list[Failure] = []
        self._handlers_closing = False
        self._settler_closing = False
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

        self._stop_reason: str | None = None
        self._signals = 0
        self._stopped = threading.Event()  # set when the worker is done: background loops end
        self._state = WorkerState.LIVE
        self.started_at = time.monotonic()
        self.processed = 0  # handled and acked
        self.failed = 0  # handler raised or timed out (nacked, maybe dead-lettered)
        self.dead_lettered = 0
        self.lost = 0  # lease lost before the outcome could be recorded: the message comes back
        self.settled = 0  # processed + failed, for --max-messages
        # Written with each heartbeat; /metrics adds up every worker's (queues.metrics.durations).
        self.durations = DurationHistogram()

    # -- setup --------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check everything that can be checked before the first claim; :class:`WorkerConfigError` if
        something is wrong (migrations not applied, unknown queue, no handler, a handler that cannot take
        a message)."""
        check_schema()
        registry.autodiscover()
        known = registry.all_handlers()
        states = []
        for name, weight in self.config.queues:
            spec = registry.get_handler(name)
            try:
                queue = engine.get_queue(name)
            except QueueNotFound:
                if spec is None or spec.create_queue is None:
                    raise WorkerConfigError(
                        f"queue {name!r} does not exist: create it first (python manage.py mq_queue create {name})"
                    ) from None
                spec.create_queue()  # a task queue: made here as the first enqueue would make it
                queue = engine.get_queue(name)
            if spec is None:
                listing = ", ".join(sorted(known)) or "none"
                raise WorkerConfigError(
                    f"no handler is registered for queue {name!r}: decorate a function with "
                    f"@queues.handler({name!r}) in an installed app's handlers.py, or set "
                    f"MQADMIN['HANDLERS'][{name!r}] = 'dotted.path.to.function'. Registered queues: {listing}"
                )
            check_signature(spec, name)
            if spec.atomic and spec.is_async:
                raise WorkerConfigError(
                    f"the handler {spec.name} of queue {name!r} is async and atomic=True: a database "
                    "transaction cannot span awaits; make it a plain def, or drop atomic=True"
                )
            vt = self.config.visibility_timeout or queue.visibility_timeout.total_seconds()
            if spec.retries is not None and queue.max_receives and spec.retries > queue.max_receives:
                log.warning(
                    "event=config queue=%s handler_retries=%d max_receives=%d note=the queue dead-letters first",
                    name, spec.retries, queue.max_receives,
                )
            if spec.retries is not None and queue.dead_letter_queue_id is None:
                log.warning("event=config queue=%s note=handler retries set but the queue has no dead-letter "
                            "queue: messages past their retries are retried again", name)
            if queue.paused:
                log.warning("event=config queue=%s note=queue is paused: nothing is delivered until resumed", name)
            states.append(QueueState(name=name, weight=weight, spec=spec, id=queue.id, vt=vt))
        self._queues = states
        self._prepared = True

    @property
    def _has_sync(self) -> bool:
        return any(not q.spec.is_async for q in self._queues)

    @property
    def _has_async(self) -> bool:
        return any(q.spec.is_async for q in self._queues)

    # -- run ----------------------------------------------------------------------------------------
    def run(self) -> int:
        """Work until a signal, a limit or (``burst``) an empty queue; return the exit code (0)."""
        if not self._prepared:
            self.prepare()
        self._install_signals()
        self._register()
        self._start_threads()
        log.info(
            "event=started worker=%s queues=%s concurrency=%d prefetch=%d",
            self.name, ",".join(f"{q.name}:{q.weight}" for q in self._queues), self.config.concurrency,
            self.prefetch,
        )
        try:
            self._claim_loop()
        finally:
            self._shutdown()
        return 0

    def stop(self, reason: str = "requested") -> None:
        """Ask the worker to stop gracefully (from any thread; signal handlers call it)."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded in another program (tests): it calls stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only flags here: the main thread may hold locks when a signal arrives.
        self._signals += 1
        if self._signals > 1:
            os.write(2, f"mq_worker: second {signal.Signals(signum).name}, exiting now; "
                        "held leases will expire on their own\n".encode())
            os._exit(1)
        self.stop(f"signal:{signal.Signals(signum).name}")

    def _register(self) -> None:
        self.row_id = fleet.register(self.name, queues=[q.name for q in self._queues],
                                     concurrency=self.config.concurrency)

    def _start_threads(self) -> None:
        def start(target: Callable[..., None], name: str, *args: Any) -> threading.Thread:
            thread = threading.Thread(target=target, name=name, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)
            return thread

        if self._has_sync:
            for n in range(self.config.concurrency):
                start(self._handler_thread, f"mq-handler-{n}")
        if self._has_async:
            self._loop = asyncio.new_event_loop()
            self._semaphore = asyncio.Semaphore(self.config.concurrency)
            start(self._loop_thread, "mq-async")
        start(self._settler_thread, "mq-settler")
        start(self._beat_thread, "mq-beat")
        listener = get_listener()
        for q in self._queues:
            start(self._watch_thread, f"mq-watch-{q.name}", listener, q)
        # Periodic schedules: every worker runs a scheduler; one per round sends (queues/schedules.py).
        scheduler = schedules.start_scheduler(self._stopped)
        if scheduler is not None:
            self._threads.append(scheduler)

    # -- claiming (main thread) ---------------------------------------------------------------------
    def _claim_loop(self) -> None:
        listener = get_listener()
        care = ConnectionCare()
        outage = Outage("claim")
        deadline = self.started_at + self.config.max_seconds if self.config.max_seconds else None
        while self._stop_reason is None:
            if deadline is not None and time.monotonic() >= deadline:
                self.stop("max-seconds")
                break
            if self.config.max_messages is not None and self.settled >= self.config.max_messages:
                self.stop("max-messages")
                break
            care(after_error=outage.down_since is not None)
            try:
                more, all_empty = self._claim_round(listener)
                outage.ok()
            except DatabaseError as exc:
                self._pause(outage.failed(exc))
                continue
            except Exception:
                log.exception("event=claim_error note=unexpected; retrying in %gs", DB_RETRY_MAX)
                self._pause(DB_RETRY_MAX)
                continue
            if self.config.burst and all_empty:
                with self._lock:
                    idle = not self._held
                if idle:
                    self.stop("burst")
                    break
            if not more:
                self._wait_for_work(listener)

    def _free(self) -> int:
        """Room for more messages (called with the lock held). Handled messages whose ack is still on its
        way do not count: the next claim overlaps with their ack statement and the last handlers."""
        free = self.prefetch - (len(self._held) - len(self._acks) - self._acking)
        if self.config.max_messages is not None:
            free = min(free, self.config.max_messages - self.settled - len(self._held))
        return free

    def _claim_round(self, listener: Listener) -> tuple[bool, bool]:
        """Claim once from each queue due a claim. Returns (claim again at once, every queue empty)."""
        with self._lock:
            free = self._free()
            hungry = self._waiting < self.config.concurrency
            idle = not self._held
        if free <= 0 or (free < self._claim_threshold and not hungry):
            return False, False
        now = time.monotonic()
        if self.config.burst and idle:
            candidates = list(self._queues)  # a burst worker ends only on a fresh look at every queue
        else:
            candidates = [q for q in self._queues if q.claimable(now, listener.seq(q.id))]
        if not candidates:
            return False, all(q.empty for q in self._queues)
        more = False
        for q, share in self._shares(candidates, free):
            seen = listener.seq(q.id)
            claimed_at = time.monotonic()
            try:
                vt = q.vt  # read once: the watcher may change it meanwhile, and the items must know this lease
                got = engine.receive(q.name, max_messages=share, visibility_timeout=vt)
                tracing.record_receive(q.name, got)
            except QueueNotFound:
                log.error("event=queue_missing queue=%s note=deleted while the worker runs; retrying later", q.name)
                got = []
            self._accept(q, got, claimed_at, vt)
            hint = retry_hint(q.id) if len(got) < share else None
            if hint is not None:
                # Held back by the queue's rate or concurrency limit, not empty: look again when a token
                # or a slot may be free, without growing the idle backoff.
                q.empty, q.seen = True, seen
                q.poll_at = time.monotonic() + min(hint, self.config.poll_interval)
            elif len(got) < share:
                q.empty, q.seen = True, seen
                q.poll_at = time.monotonic() + q.idle_delay
                q.idle_delay = min(q.idle_delay * 2, self.config.poll_interval)
            else:
                q.empty, q.idle_delay = False, MIN_IDLE_POLL
                more = True
        return more, all(q.empty for q in self._queues)

    @staticmethod
    def _shares(candidates: list[QueueState], free: int) -> list[tuple[QueueState, int]]:
        """Split ``free`` between queues by weight (smooth weighted round robin, one unit at a time),
        so that over many small claims each queue still gets its share and none starves another."""
        if len(candidates) == 1:
            return [(candidates[0], free)]
        total = sum(q.weight for q in candidates)
        counts = dict.fromkeys(candidates, 0)
        for _ in range(free):
            for q in candidates:
                q.credit += q.weight
            best = max(candidates, key=lambda q: q.credit)
            best.credit -= total
            counts[best] += 1
        return [(q, n) for q, n in counts.items() if n > 0]

    def _accept(self, q: QueueState, deliveries: list[Delivery], claimed_at: float, vt: float) -> None:
        if not deliveries:
            return
        items = [HeldItem(d, q, claimed_at, vt) for d in deliveries]
        with self._lock:
            for item in items:
                self._held[item.delivery.receipt] = item
            self._waiting += len(items)
            if not q.spec.is_async:
                self._ready.extend(items)
                self._work.notify(len(items))
        if q.spec.is_async:
            assert self._loop is not None
            for item in items:
                self._loop.call_soon_threadsafe(self._start_task, item)

    def _wait_for_work(self, listener: Listener) -> None:
        """Sleep until capacity frees up, a queue gets a NOTIFY or is due a poll, or at most MAX_WAIT
        (the caller re-checks stop flags and limits after each wait)."""
        with self._lock:
            if self._stop_reason is not None:
                return
            timeout = MAX_WAIT
            free = self._free()
            if free > 0 and (free >= self._claim_threshold or self._waiting < self.config.concurrency):
                now = time.monotonic()
                if any(q.claimable(now, listener.seq(q.id)) for q in self._queues):
                    return
                if self.config.burst and not self._held:
                    return
                timeout = min(min(q.poll_at for q in self._queues) - now, MAX_WAIT)
            if self.config.max_seconds:
                timeout = min(timeout, self.started_at + self.config.max_seconds - time.monotonic())
            self._claim_waiting = True
            self._wake.wait(max(timeout, 0.001))
            self._claim_waiting = False

    def _pause(self, seconds: float) -> None:
        """Sleep, waking early on a stop."""
        deadline = time.monotonic() + seconds
        while self._stop_reason is None and time.monotonic() < deadline:
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))

    def _watch_thread(self, listener: Listener, q: QueueState) -> None:
        """Wake the main thread on a NOTIFY for ``q``; re-read ``q``'s settings when they changed."""
        settings_seen = listener.config_seq(q.id)
        try:
            while not self._stopped.is_set():
                seen = listener.seq(q.id)
                if listener.wait(q.id, seen, 1.0):
                    with self._lock:
                        self._wake.notify_all()
                changed = listener.config_seq(q.id)
                if changed != settings_seen:
                    try:
                        self._refresh_queue(q)
                        settings_seen = changed
                    except DatabaseError as exc:  # tried again after the next wake-up or second
                        log.warning("event=settings_refresh_failed queue=%s error=%s", q.name, one_line(exc))
                        close_old_connections()
        finally:
            connections.close_all()

    def _refresh_queue(self, q: QueueState) -> None:
        """Re-read the settings of ``q`` the worker uses (its visibility timeout, unless ``mq_worker`` set
        one): the next claim from ``q`` uses them."""
        close_old_connections()
        with contextlib.suppress(QueueNotFound):  # deleted: the claim loop says so
            queue = engine.get_queue(q.name)
            if self.config.visibility_timeout is None:
                vt = queue.visibility_timeout.total_seconds()
                if vt != q.vt:
                    log.info("event=queue_settings queue=%s visibility_timeout=%g was=%g", q.name, vt, q.vt)
                    q.vt = vt

    # -- heartbeat, upkeep, stats (beat thread) ----------------------------------------------------
    def _beat_thread(self) -> None:
        care = ConnectionCare()
        outage = Outage("beat")
        now = time.monotonic()
        next_beat = now + self.heartbeat_interval
        next_log = now + self.config.log_interval if self.config.log_interval else float("inf")
        next_sweep = now + random.uniform(0.5, 1.0) * self.config.prune_interval if self.config.prune_interval \
            else float("inf")
        last_log, last_processed = now, 0
        # Reaping waits until this worker's own beats have gone through for WORKER_DEAD_AFTER: after a
        # database outage every worker is silent, and the first one back must not condemn the others.
        beating_since: float | None = now
        try:
            while not self._stopped.wait(max(0.0, min(next_beat, next_log, next_sweep) - time.monotonic())):
                care(after_error=outage.down_since is not None)
                now = time.monotonic()
                try:
                    reaping = beating_since is not None and now - beating_since >= self.dead_after
                    if now >= next_beat:
                        self._heartbeat()
                        beating_since = beating_since or now
                        # Expiry at heartbeat pace too: times to live are often seconds, not minutes.
                        upkeep.sweep(only=["workers", "expiry"] if reaping else ["expiry"])
                        next_beat = now + self.heartbeat_interval
                    if now >= next_log:
                        processed = self.processed
                        self._log_stats(processed - last_processed, now - last_log)
                        last_log, last_processed = now, processed
                        next_log = now + self.config.log_interval
                    if now >= next_sweep:
                        upkeep.sweep(only=[job for job in upkeep.JOBS if reaping or job != "workers"])
                        next_sweep = now + self.config.prune_interval
                    outage.ok()
                except DatabaseError as exc:
                    beating_since = None
                    self._stopped.wait(outage.failed(exc))
                except Exception:
                    log.exception("event=beat_error note=unexpected; retrying in %gs", DB_RETRY_MAX)
                    self._stopped.wait(DB_RETRY_MAX)
        finally:
            connections.close_all()

    def _heartbeat(self) -> None:
        with self._lock:
            receipts = [i.delivery.receipt for i in self._held.values() if i.state is not FINISHED]
        assert self.row_id is not None
        asked_to_stop = fleet.beat(self.row_id, state=self._state, processed=self.processed, failed=self.failed,
                                   held_receipts=receipts, handler_durations=self.durations.snapshot())
        if asked_to_stop and self._stop_reason is None:
            log.info("event=stop_requested worker=%s note=asked from the dashboard; finishing what it holds", self.name)
            self.stop("requested-by-operator")

    def _log_stats(self, processed: int, elapsed: float) -> None:
        backlog = {s.queue: s.ready for s in engine.stats([q.name for q in self._queues])}
        with self._lock:
            in_flight = len(self._held)
        log.info(
            "event=stats worker=%s processed=%d rate=%.1f/s failed=%d dead_lettered=%d lost=%d in_flight=%d "
            "backlog=%d backlog_by_queue=%s",
            self.name, self.processed, processed / elapsed if elapsed > 0 else 0.0, self.failed,
            self.dead_lettered, self.lost, in_flight, sum(backlog.values()),
            ",".join(f"{k}:{v}" for k, v in backlog.items()),
        )

    # -- shutdown (main thread) ---------------------------------------------------------------------
    def _shutdown(self) -> None:
        reason = self._stop_reason or "error"
        self._state = WorkerState.STOPPING
        with self._lock:
            running = sum(1 for i in self._held.values() if i.state is RUNNING)
        log.info("event=stopping worker=%s reason=%s running=%d grace=%gs", self.name, reason, running,
                 self.config.grace)
        # Messages not started yet go back at once (their receive refunded): others can take them now.
        with self._lock:
            waiting = [i for i in self._held.values() if i.state is WAITING]
            for item in waiting:
                item.state = RELEASED
            self._ready.clear()
            self._waiting = 0
            self._handlers_closing = True
            self._work.notify_all()
        self._release(waiting, refund=True)
        # Running handlers get until the grace deadline; their acks keep flowing meanwhile.
        deadline = time.monotonic() + self.config.grace
        with self._lock:
            while time.monotonic() < deadline and any(i.state is RUNNING for i in self._held.values()):
                self._wake.wait(min(0.05, max(deadline - time.monotonic(), 0.001)))
            late = [i for i in self._held.values() if i.state is RUNNING]
            for item in late:
                item.state = ABANDONED
        if late:
            log.warning("event=grace_expired worker=%s released=%d", self.name, len(late))
            if self._loop is not None:
                for item in late:
                    if item.task is not None:
                        self._loop.call_soon_threadsafe(item.task.cancel)
            self._release(late, refund=False)
        # Let the settler write what is pending (bounded: the database may be gone), then stop it.
        with self._lock:
            self._settler_closing = True
            self._settle.notify_all()
        for thread in self._threads:
            if thread.name == "mq-settler":
                thread.join(timeout=max(5.0, self.config.grace))
        self._stopped.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            if thread.name == "mq-beat":
                thread.join(timeout=5.0)
        # Handler and watch threads close their own connections on the way out; waiting for them (and
        # stopping the LISTEN thread) leaves no connection open behind a worker that ran inside another
        # program, such as a test run that drops its database next.
        for thread in self._threads:
            thread.join(timeout=2.0)
        stop_listener()
        self._state = WorkerState.STOPPED
        try:
            close_old_connections()
            self._heartbeat()
        except DatabaseError as exc:
            log.warning("event=final_beat_failed error=%s", one_line(exc))
        log.info(
            "event=stopped worker=%s reason=%s processed=%d failed=%d dead_lettered=%d lost=%d uptime=%.1fs",
            self.name, reason, self.processed, self.failed, self.dead_lettered, self.lost,
            time.monotonic() - self.started_at,
        )

    def _release(self, items: Iterable[HeldItem], *, refund: bool) -> None:
        items = list(items)
        if not items:
            return
        try:
            close_old_connections()
            engine.release_batch([i.delivery.receipt for i in items], refund=refund)
        except DatabaseError as exc:
            log.warning("event=release_failed count=%d error=%s note=the leases will expire on their own",
                        len(items), one_line(exc))
        with self._lock:
            for item in items:
                self._held.pop(item.delivery.receipt, None)
            self._wake.notify_all()


Worker = WorkerProcess
"""The old name of :class:`WorkerProcess`, kept for code that imports it (``queues.models.Worker`` is the
heartbeat row)."""

__all__ = ["Worker", "WorkerConfig", "WorkerProcess", "parse_queue_weight"]
