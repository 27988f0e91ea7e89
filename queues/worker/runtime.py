"""The worker's scheduler behind ``mq_worker``: claim messages in batches, run their handlers, settle them.

This module is over 600 lines on purpose: :class:`WorkerProcess` is one object whose threads share one
lock and one table of held messages, and every method that changes an item's state is here, next to
the invariants it must keep (the lock is never held across a database call; an item is settled at
most once; a lost lease is never extended or settled). Around it, each in a file of its own:
:mod:`~queues.worker.config` (the options), :mod:`~queues.worker.outcomes` (what a failure means for
its message), :mod:`~queues.worker.fleet` (heartbeat rows), :mod:`~queues.worker.resilience`
(connections and outages) and :mod:`queues.upkeep` (the periodic cleaning a worker takes part in).

One :class:`WorkerProcess` is one process. Its threads, each with its own database connection:

- **main**: claims batches (weighted across its queues), waits for a NOTIFY, for free capacity or for
  a poll timer, and runs the shutdown when a signal or a limit says so;
- **handler threads** (``concurrency`` of them) run sync handlers; one **event loop** thread runs
  async handlers as tasks, ``concurrency`` at a time;
- **settler**: acks in batches (a finished handler's ack is flushed within 50 ms), nacks failures
  with backoff, extends leases that passed half their length (one UPDATE for all of them), and
  abandons sync handlers past their timeout;
- **beat**: the heartbeat row (:mod:`~queues.worker.fleet`), reaping dead workers at heartbeat pace and
  an upkeep sweep now and then (:func:`queues.upkeep.sweep`; one process at a time), and the
  periodic log line;
- one **watcher** per queue turns the process's LISTEN wake-ups into a wake-up of the main thread, and
  a change of the queue's settings (a NOTIFY from a trigger, see ``engine/notify.py``) into a re-read
  of them: a visibility timeout changed in the dashboard is used by the next claim.

Every message the worker holds is an ``_Item`` in ``_held`` (keyed by receipt) from the claim until
its settlement reached the database (acked, nacked, released) or its lease was found lost. All item
state changes happen under ``_lock``; database calls never do.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import logging
import os
import random
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, close_old_connections, connections

from queues import conf, engine, tracing, upkeep
from queues.engine.errors import LeaseExpired, QueueNotFound
from queues.engine.notify import Listener, get_listener, stop_listener
from queues.engine.types import Delivery
from queues.metrics.durations import DurationHistogram
from queues.models import WorkerState
from queues.worker import fleet, registry
from queues.worker.config import WorkerConfig, check_signature, parse_queue_weight
from queues.worker.errors import WorkerConfigError
from queues.worker.outcomes import Nack, decide_nack, past_retries, timeout_error
from queues.worker.registry import HandlerSpec
from queues.worker.resilience import DB_RETRY_MAX, ConnectionCare, Outage, is_outage, one_line

log = logging.getLogger("queues.worker")

# A finished handler's ack waits at most this long for others to share its statement (the promise is
# 50 ms); it goes at once when the batch is full or nothing else is running.
ACK_LINGER = 0.01
# Leases are checked this often for extension, handlers for their timeout.
MAINTENANCE_INTERVAL = 0.1
# The main thread re-checks its stop flag at least this often (signal handlers only set a flag).
MAX_WAIT = 0.25
# First idle poll delay of an empty queue; it doubles up to the configured poll interval.
MIN_IDLE_POLL = 0.1


class ItemState(enum.Enum):
    """Where a held message is inside this process (not the message's state in the database)."""

    WAITING = "waiting"
    """Claimed, waiting for a free handler."""
    RUNNING = "running"
    """Its handler runs."""
    SETTLING = "settling"
    """Its ack or nack is queued for the settler."""
    ABANDONED = "abandoned"
    """Still running at the end of the shutdown grace: released, its outcome ignored."""
    RELEASED = "released"
    """Given back unstarted (shutdown, or it waited half a lease for a handler)."""
    FINISHED = "finished"
    """Settled, or its lease found lost: no longer held."""


WAITING, RUNNING, SETTLING, ABANDONED, RELEASED, FINISHED = ItemState


@dataclass(eq=False)
class _QueueState:
    """What the main thread knows about one queue it claims from."""

    name: str
    weight: int
    spec: HandlerSpec
    id: int
    vt: float
    empty: bool = False
    seen: int = -1  # the listener's wake-up count before the claim that came back short
    poll_at: float = 0.0
    idle_delay: float = MIN_IDLE_POLL
    credit: int = 0  # smooth weighted round robin between queues

    def claimable(self, now: float, seq: int) -> bool:
        return not self.empty or now >= self.poll_at or seq != self.seen


class _Item:
    """One message held by this worker, from its claim until its settlement reached the database."""

    __slots__ = ("delivery", "expires_at", "queue", "renew_at", "started", "state", "task", "thread")

    def __init__(self, delivery: Delivery, queue: _QueueState, claimed_at: float, vt: float) -> None:
        self.delivery = delivery
        self.queue = queue
        self.state = WAITING
        # Measured from before the claim statement, so our idea of the lease never outlives the real one.
        self.expires_at = claimed_at + vt
        self.renew_at = claimed_at + vt / 2
        self.started = 0.0
        self.task: Any = None
        self.thread: threading.Thread | None = None


@dataclass
class _Failure:
    """A failed attempt waiting for the settler to nack it."""

    item: _Item
    nack: Nack


# -- the worker -------------------------------------------------------------------------------------
class WorkerProcess:
    """One worker process: build it with a :class:`WorkerConfig`, :meth:`prepare`, then :meth:`run`."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.prefetch = config.effective_prefetch
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.row_id: int | None = None
        self.heartbeat_interval = float(config.heartbeat_interval or conf.get("HEARTBEAT_INTERVAL"))
        self.dead_after = float(conf.get("WORKER_DEAD_AFTER"))
        self._queues: list[_QueueState] = []
        self._prepared = False

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # main thread: capacity freed, NOTIFY, stop
        self._work = threading.Condition(self._lock)  # handler threads: items waiting
        self._settle = threading.Condition(self._lock)  # settler: acks or failures to write
        self._held: dict[str, _Item] = {}
        self._ready: collections.deque[_Item] = collections.deque()
        self._waiting = 0
        self._acks: list[_Item] = []
        self._first_ack_at = 0.0
        self._ack_batch = max(1, min(500, self.prefetch // 2))
        self._acking = 0  # acks taken by the settler, being written
        self._claim_threshold = max(1, self.prefetch // 2)
        self._claim_waiting = False  # the main thread waits for capacity: wake it when there is some
        self._failures: list[_Failure] = []
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
        something is wrong (unknown queue, no handler, a handler that cannot take a message)."""
        registry.autodiscover()
        known = registry.all_handlers()
        states = []
        for name, weight in self.config.queues:
            try:
                queue = engine.get_queue(name)
            except QueueNotFound:
                raise WorkerConfigError(
                    f"queue {name!r} does not exist: create it first (python manage.py mq_queue create {name})"
                ) from None
            spec = registry.get_handler(name)
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
            states.append(_QueueState(name=name, weight=weight, spec=spec, id=queue.id, vt=vt))
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
            if len(got) < share:
                q.empty, q.seen = True, seen
                q.poll_at = time.monotonic() + q.idle_delay
                q.idle_delay = min(q.idle_delay * 2, self.config.poll_interval)
            else:
                q.empty, q.idle_delay = False, MIN_IDLE_POLL
                more = True
        return more, all(q.empty for q in self._queues)

    @staticmethod
    def _shares(candidates: list[_QueueState], free: int) -> list[tuple[_QueueState, int]]:
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

    def _accept(self, q: _QueueState, deliveries: list[Delivery], claimed_at: float, vt: float) -> None:
        if not deliveries:
            return
        items = [_Item(d, q, claimed_at, vt) for d in deliveries]
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

    def _watch_thread(self, listener: Listener, q: _QueueState) -> None:
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

    def _refresh_queue(self, q: _QueueState) -> None:
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

    # -- running handlers ---------------------------------------------------------------------------
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

    def _decoded(self, item: _Item) -> Delivery | None:
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

    def _past_retries(self, item: _Item) -> bool:
        """Dead-letter, without running it, a delivery received more often than its handler allows
        (:func:`~queues.worker.outcomes.past_retries`); True if it was."""
        error = past_retries(item.queue.spec, item.delivery.receive_count)
        if error is None:
            return False
        self._fail(item, error, dead_letter=True)
        return True

    def _run_sync(self, item: _Item) -> bool:
        """Run a sync handler and record its outcome; True if it returned normally."""
        spec = item.queue.spec
        if self._past_retries(item):
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

    def _timed(self, item: _Item, func: Callable[[Delivery], Any], delivery: Delivery) -> None:
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

    def _start_task(self, item: _Item) -> None:
        assert self._loop is not None
        item.task = self._loop.create_task(self._run_async(item))

    async def _run_async(self, item: _Item) -> None:
        assert self._semaphore is not None
        async with self._semaphore:
            with self._lock:
                if item.state is not WAITING:
                    return
                self._waiting -= 1
                item.state, item.started = RUNNING, time.monotonic()
            if self._past_retries(item):
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

    # -- outcomes (any thread) ----------------------------------------------------------------------
    def _succeed(self, item: _Item) -> None:
        with self._lock:
            if item.state is not RUNNING:
                return  # abandoned or released meanwhile: someone else decides its fate
            if item.delivery.lease.lost:
                self._finish_lost(item)  # an ack would be refused; the loss was logged when found
                return
            item.state = SETTLING
            self._acks.append(item)
            # Wake the settler only when this changes its plans: the first ack starts its linger
            # timer; a full batch or an idle worker means "flush now".
            count = len(self._acks)
            if count == 1:
                self._first_ack_at = time.monotonic()
            if count == 1 or count >= self._ack_batch or len(self._held) <= count + len(self._failures):
                self._settle.notify()
            if self._claim_waiting and self._free() >= self._claim_threshold:
                self._wake.notify()

    def _finish_acked(self, item: _Item) -> None:
        with self._lock:
            item.state = FINISHED
            self._held.pop(item.delivery.receipt, None)
            self.processed += 1
            self.settled += 1
            self._wake.notify()

    def _finish_lost(self, item: _Item) -> None:
        """Forget an item whose lease is gone (called with the lock held): its message comes back."""
        item.state = FINISHED
        self._held.pop(item.delivery.receipt, None)
        self.lost += 1
        self._wake.notify()

    def _lose(self, item: _Item, why: str) -> None:
        with self._lock:
            logged = item.delivery.lease.lost
            item.delivery.lease.lost = True
            self._finish_lost(item)
        if not logged:
            log.warning("event=lease_lost queue=%s message=%d note=%s", item.queue.name, item.delivery.id, why)

    @staticmethod
    def _failure(item: _Item, exc: BaseException, reason: str | None = None, dead_letter: bool = False) -> _Failure:
        """How a failed attempt is nacked (:func:`~queues.worker.outcomes.decide_nack`)."""
        nack = decide_nack(item.queue.spec, item.delivery.receive_count, exc, reason=reason, dead_letter=dead_letter)
        return _Failure(item, nack)

    def _fail(self, item: _Item, exc: BaseException, *, reason: str | None = None, dead_letter: bool = False) -> None:
        failure = self._failure(item, exc, reason, dead_letter)
        with self._lock:
            if item.state is not RUNNING:
                return  # abandoned or released meanwhile
            if item.delivery.lease.lost:
                self._finish_lost(item)  # a nack would be refused; the loss was logged when found
                return
            item.state = SETTLING
            self._failures.append(failure)
            self._settle.notify()

    # -- settling (settler thread) ------------------------------------------------------------------
    def _settler_thread(self) -> None:
        care = ConnectionCare()
        outage = Outage("settle")
        next_maintenance = 0.0
        retry_at = 0.0  # after a database error, settlements wait for this moment
        try:
            while True:
                with self._lock:
                    while True:
                        now = time.monotonic()
                        pending = bool(self._acks or self._failures)
                        if (now >= retry_at and self._settlements_due(now)) or now >= next_maintenance:
                            break
                        if self._settler_closing and not pending:
                            return
                        wake_at = next_maintenance
                        if pending:
                            linger_end = self._first_ack_at + ACK_LINGER if self._acks else now
                            wake_at = min(wake_at, max(retry_at, linger_end))
                        self._settle.wait(max(wake_at - now, 0.001))
                    acks: list[_Item] = []
                    failures: list[_Failure] = []
                    if now >= retry_at:
                        acks, self._acks = self._acks, []
                        failures, self._failures = self._failures, []
                        self._acking = len(acks)
                care(after_error=outage.down_since is not None)
                try:
                    if acks:
                        self._flush_acks(acks)
                        acks = []
                    while failures:
                        self._flush_failure(failures[0])
                        failures.pop(0)
                    if time.monotonic() >= next_maintenance:
                        next_maintenance = time.monotonic() + MAINTENANCE_INTERVAL
                        self._maintain()
                    outage.ok()
                except DatabaseError as exc:
                    pause = outage.failed(exc)
                    if is_outage(exc):
                        retry_at = time.monotonic() + pause
                        next_maintenance = retry_at
                    else:
                        # Settlements handle their own refusals; this one came from the lease upkeep.
                        next_maintenance = time.monotonic() + 1.0
                    self._requeue(acks, failures)
                except Exception:
                    log.exception("event=settle_error note=unexpected; retrying")
                    retry_at = next_maintenance = time.monotonic() + DB_RETRY_MAX
                    self._requeue(acks, failures)
        finally:
            connections.close_all()

    def _settlements_due(self, now: float) -> bool:
        """Whether the buffered settlements should be written now (called with the lock held)."""
        if self._failures:
            return True
        count = len(self._acks)
        return bool(count) and (
            count >= self._ack_batch
            or now - self._first_ack_at >= ACK_LINGER
            or len(self._held) <= count  # nothing else running: no company is coming
            or self._settler_closing
        )

    def _requeue(self, acks: list[_Item], failures: list[_Failure]) -> None:
        """Keep settlements that failed on a database error for another try, while their lease may
        still hold; the rest are lost (their messages come back after the lease)."""
        now = time.monotonic()
        gone = [a for a in acks if a.expires_at <= now] + [f.item for f in failures if f.item.expires_at <= now]
        with self._lock:
            self._acking = 0
            self._acks[:0] = [a for a in acks if a.expires_at > now]
            self._failures[:0] = [f for f in failures if f.item.expires_at > now]
        for item in gone:
            self._lose(item, "could not record the outcome before the lease ran out (database unavailable)")

    def _flush_acks(self, acks: list[_Item]) -> None:
        try:
            result = engine.ack_batch([a.delivery.receipt for a in acks])
        except DatabaseError as exc:
            if is_outage(exc):
                raise
            log.error("event=db_refused where=ack count=%d error=%s note=the acks were not recorded; those "
                      "messages come back when their leases run out", len(acks), one_line(exc))
            with self._lock:
                self._acking = 0
            for item in acks:
                self._lose(item, "the database refused the ack")
            return
        stale = set(result.stale)
        with self._lock:
            for item in acks:
                item.state = FINISHED
                self._held.pop(item.delivery.receipt, None)
            self._acking = 0
            self.processed += len(acks) - len(stale)
            self.settled += len(acks) - len(stale)
            self.lost += len(stale)
            self._wake.notify()
        for item in acks:
            if item.delivery.receipt in stale:
                log.warning("event=lease_lost queue=%s message=%d note=handled but the lease ran out before the "
                            "ack; it will be delivered again", item.queue.name, item.delivery.id)

    def _nack(self, failure: _Failure) -> bool:
        """Nack a failed attempt; if the database refuses the statement (not an outage), nack again
        without the error text, so the backoff, the handler's retries and dead-lettering still hold."""
        item = failure.item
        try:
            return engine.nack(item.delivery.receipt, delay=failure.nack.delay, error=failure.nack.error,
                               dead_letter=failure.nack.dead_letter)
        except DatabaseError as exc:
            if is_outage(exc):
                raise
            log.error("event=db_refused where=nack queue=%s message=%d error=%s note=recording the failure "
                      "without its error text", item.queue.name, item.delivery.id, one_line(exc))
            note = f"[the error text could not be recorded: {one_line(exc)[:500]}]"
            return engine.nack(item.delivery.receipt, delay=failure.nack.delay, error=note,
                               dead_letter=failure.nack.dead_letter)

    def _flush_failure(self, failure: _Failure) -> None:
        item = failure.item
        if item.delivery.lease.lost:
            with self._lock:
                self._finish_lost(item)
            return
        try:
            dead = self._nack(failure)
        except LeaseExpired:
            self._lose(item, "the handler failed and the lease had run out before the nack")
            return
        except DatabaseError as exc:
            if is_outage(exc):
                raise
            self._lose(item, f"the database refused the nack twice ({one_line(exc)})")
            return
        with self._lock:
            item.state = FINISHED
            self._held.pop(item.delivery.receipt, None)
            self.failed += 1
            self.settled += 1
            self.dead_lettered += dead
            self._wake.notify()
        summary = failure.nack.error.splitlines()[0][:300]
        if dead:
            log.warning("event=dead_lettered queue=%s message=%d receive_count=%d error=%r",
                        item.queue.name, item.delivery.id, item.delivery.receive_count, summary)
        else:
            log.info("event=retry queue=%s message=%d receive_count=%d delay=%.2fs error=%r",
                     item.queue.name, item.delivery.id, item.delivery.receive_count, failure.nack.delay, summary)

    def _maintain(self) -> None:
        """Extend the leases of running handlers past half their length (one UPDATE for all of them per
        lease length), give back messages that waited that long without starting, and abandon
        handlers past their timeout."""
        now = time.monotonic()
        abandoned: list[_Item] = []
        unstarted: list[_Item] = []
        groups: dict[float, list[_Item]] = {}
        with self._lock:
            # A lost lease is never extended again: it cannot come back, and retrying would only log.
            due = {i.queue.vt for i in self._held.values()
                   if i.state is RUNNING and now >= i.renew_at and not i.delivery.lease.lost}
            for item in self._held.values():
                if item.state is RUNNING and item.queue.vt in due and not item.delivery.lease.lost:
                    groups.setdefault(item.queue.vt, []).append(item)
                elif item.state is WAITING and now >= item.renew_at:
                    # Every thread is busy (slow or hung handlers): hoarding it would only delay it.
                    item.state = RELEASED
                    self._waiting -= 1
                    unstarted.append(item)
                timeout = item.queue.spec.timeout
                if (item.state is RUNNING and timeout is not None and item.thread is not None
                        and now - item.started > timeout):
                    abandoned.append(item)
        if unstarted:
            log.info("event=released_unstarted count=%d note=waited half a lease for a free handler; given back",
                     len(unstarted))
            self._release(unstarted, refund=True)
        for item in abandoned:
            self._abandon_for_timeout(item)
        for vt, items in groups.items():
            started = time.monotonic()
            stale = set(engine.extend_batch([i.delivery.receipt for i in items], visibility_timeout=vt))
            for item in items:
                if item.delivery.receipt in stale:
                    self._drop_stale(item)
                else:
                    item.expires_at, item.renew_at = started + vt, started + vt / 2

    def _drop_stale(self, item: _Item) -> None:
        """An extension found the lease gone (it ran out, or an operator moved the message): tell the
        handler through ``delivery.lease_lost``, log it once, and never extend or settle it again."""
        with self._lock:
            if item.delivery.lease.lost:
                return
            item.delivery.lease.lost = True
        # The handler goes on (a thread cannot be stopped); its outcome is not recorded when it ends.
        log.warning("event=lease_lost queue=%s message=%d note=lease could not be extended; the message may be "
                    "delivered again; the handler sees delivery.lease_lost", item.queue.name, item.delivery.id)

    def _abandon_for_timeout(self, item: _Item) -> None:
        spec = item.queue.spec
        # A thread cannot be stopped: a fresh one takes its place and its eventual result is ignored
        # (an atomic handler's transaction rolls back: its ack finds the lease gone).
        failure = self._failure(item, timeout_error(spec))
        with self._lock:
            if item.state is not RUNNING:
                return
            item.thread = None
            if item.delivery.lease.lost:
                self._finish_lost(item)
            else:
                item.state = SETTLING
                self._failures.append(failure)
            replace = not self._handlers_closing
        log.warning("event=timeout queue=%s message=%d handler=%s timeout=%gs note=abandoned",
                    item.queue.name, item.delivery.id, spec.name, spec.timeout)
        if replace:
            thread = threading.Thread(target=self._handler_thread, name="mq-handler-r", daemon=True)
            thread.start()
            self._threads.append(thread)

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
                        if reaping:
                            upkeep.sweep(only=["workers"])
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
        fleet.beat(self.row_id, state=self._state, processed=self.processed, failed=self.failed,
                   held_receipts=receipts, handler_durations=self.durations.snapshot())

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

    def _release(self, items: Iterable[_Item], *, refund: bool) -> None:
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


class _Abandoned(Exception):
    """Raised inside an atomic handler's transaction when it finished after its timeout."""


Worker = WorkerProcess
"""The old name of :class:`WorkerProcess`, kept for code that imports it (``queues.models.Worker`` is the
heartbeat row)."""

__all__ = ["Worker", "WorkerConfig", "WorkerProcess", "parse_queue_weight"]
