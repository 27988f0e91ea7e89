"""The worker runtime behind ``mq_worker``: claim messages in batches, run their handlers, settle them.

One :class:`Worker` is one process. Its threads, each with its own database connection:

- **main**: claims batches (weighted across its queues), waits for a NOTIFY, for free capacity or for
  a poll timer, and runs the shutdown when a signal or a limit says so;
- **handler threads** (``concurrency`` of them) run sync handlers; one **event loop** thread runs
  async handlers as tasks, ``concurrency`` at a time;
- **settler**: acks in batches (a finished handler's ack is flushed within 50 ms), nacks failures
  with backoff, extends leases that passed half their length (one UPDATE for all of them), and
  abandons sync handlers past their timeout;
- **beat**: the heartbeat row in ``queues_worker``, marking silent workers dead and releasing their
  leases, ``queues.prune()`` now and then (one worker at a time), and the periodic log line;
- one **watcher** per queue turns the process's LISTEN wake-ups into a wake-up of the main thread.

Every message the worker holds is an ``_Item`` in ``_held`` (keyed by receipt) from the claim until
its settlement reached the database (acked, nacked, released) or its lease was found lost. All item
state changes happen under ``_lock``; database calls never do.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import inspect
import logging
import os
import random
import secrets
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connections
from django.db.models.functions import Now
from django.utils import timezone

from queues import conf, engine, tracing
from queues.engine.errors import LeaseExpired, QueueNotFound
from queues.engine.text import safe_text
from queues.engine.types import Delivery
from queues.metrics.durations import DurationHistogram, fold_and_delete
from queues.worker import registry
from queues.worker.errors import Reject, WorkerConfigError
from queues.worker.registry import HandlerSpec

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
# Backoff while the database is unreachable: it doubles from the first to the last value.
DB_RETRY_MIN, DB_RETRY_MAX = 0.25, 5.0
# An advisory lock key ("mqprune") so that only one worker at a time prunes.
PRUNE_LOCK_KEY = 0x6D7170_72756E65
# Stopped and dead heartbeat rows are deleted after this long (the dashboard shows recent ones).
WORKER_ROW_RETENTION = timedelta(days=1)
# Stored errors keep the summary line and the last frames of the traceback.
ERROR_TRACEBACK_FRAMES = 8
ERROR_MAX_CHARS = 4000

WAITING, RUNNING, SETTLING, ABANDONED, RELEASED, FINISHED = (
    "waiting", "running", "settling", "abandoned", "released", "finished"
)


# -- configuration ----------------------------------------------------------------------------------
def parse_queue_weight(text: str) -> tuple[str, int]:
    """``orders`` or ``orders:3`` -> ``("orders", 3)``; :class:`WorkerConfigError` if malformed."""
    name, sep, weight_text = text.partition(":")
    weight = 1
    if sep:
        try:
            weight = int(weight_text)
        except ValueError:
            raise WorkerConfigError(
                f"invalid queue weight in {text!r}: use QUEUE or QUEUE:WEIGHT with a whole number, e.g. orders:3"
            ) from None
        if not 1 <= weight <= 1000:
            raise WorkerConfigError(f"invalid queue weight in {text!r}: the weight must be from 1 to 1000")
    engine.validate_name(name)
    return name, weight


def _check_number(value: Any, label: str, *, minimum: float, maximum: float | None = None,
                  integer: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value != value:
        raise WorkerConfigError(f"{label} must be a {'whole ' if integer else ''}number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise WorkerConfigError(f"{label} must be at least {minimum:g}{upper}, got {value!r}")


@dataclass(frozen=True)
class WorkerConfig:
    """How one worker process runs. Every field has a matching ``mq_worker`` option."""

    queues: Sequence[tuple[str, int]]
    """(queue name, weight) pairs: each claim splits the free capacity between queues by weight."""
    concurrency: int = 4
    """Handler threads (sync handlers) and at most this many tasks at once (async handlers)."""
    prefetch: int | None = None
    """The most messages held at once (running + waiting + being acked); claims are batches up to it.
    None: ``max(10, 2 * concurrency)``."""
    visibility_timeout: float | None = None
    """Lease length of each claim in seconds; None: each queue's own setting."""
    max_messages: int | None = None
    """Exit cleanly after settling this many messages (for recycling)."""
    max_seconds: float | None = None
    """Exit cleanly after running this long (for recycling)."""
    burst: bool = False
    """Exit once every queue is empty and nothing is held."""
    grace: float = 30.0
    """On shutdown, how long running handlers may take before their messages are released."""
    poll_interval: float = 2.0
    """The longest pause between polls of an idle queue (NOTIFY wakes it sooner)."""
    log_interval: float = 10.0
    """Seconds between two stats lines in the log; 0: none."""
    prune_interval: float = 60.0
    """Seconds between two attempts to prune (only one worker at a time does it); 0: never."""
    heartbeat_interval: float | None = None
    """Seconds between heartbeats; None: the HEARTBEAT_INTERVAL setting."""
    dead_after: float | None = None
    """A worker silent this long is marked dead and its leases released; None: WORKER_DEAD_AFTER."""

    def __post_init__(self) -> None:
        if not self.queues:
            raise WorkerConfigError("name at least one queue to work on")
        seen: set[str] = set()
        for name, weight in self.queues:
            engine.validate_name(name)
            _check_number(weight, f"the weight of {name!r}", minimum=1, maximum=1000, integer=True)
            if name in seen:
                raise WorkerConfigError(f"queue {name!r} is named twice: name each queue once (QUEUE:WEIGHT)")
            seen.add(name)
        _check_number(self.concurrency, "concurrency", minimum=1, maximum=1000, integer=True)
        _check_number(self.prefetch, "prefetch", minimum=1, maximum=engine.MAX_BATCH, integer=True, optional=True)
        _check_number(self.visibility_timeout, "visibility timeout", minimum=1.0,
                      maximum=engine.MAX_VISIBILITY_TIMEOUT, optional=True)
        _check_number(self.max_messages, "max messages", minimum=1, integer=True, optional=True)
        _check_number(self.max_seconds, "max seconds", minimum=0.1, optional=True)
        _check_number(self.grace, "grace", minimum=0)
        _check_number(self.poll_interval, "poll interval", minimum=0.05, maximum=3600)
        _check_number(self.log_interval, "log interval", minimum=0)
        _check_number(self.prune_interval, "prune interval", minimum=0)
        _check_number(self.heartbeat_interval, "heartbeat interval", minimum=0.1, optional=True)
        _check_number(self.dead_after, "dead after", minimum=0.5, optional=True)

    @property
    def effective_prefetch(self) -> int:
        """``prefetch``, or its default."""
        return self.prefetch if self.prefetch is not None else max(10, 2 * self.concurrency)


# -- helpers ----------------------------------------------------------------------------------------
def describe_error(exc: BaseException) -> str:
    """What a nack records: ``ExceptionClass: message`` then the last frames of the traceback."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    text = str(exc)
    head = f"{name}: {text}" if text else name
    frames = "".join(traceback.format_exception(exc, limit=-ERROR_TRACEBACK_FRAMES)).rstrip()
    out = f"{head}\n{frames}" if frames else head
    if len(out) > ERROR_MAX_CHARS:
        keep = ERROR_MAX_CHARS - 200
        out = f"{out[:150]}\n[... traceback trimmed ...]\n{out[-keep:]}"
    # A NUL or a lone surrogate in an exception's text must not cost the message its record.
    return safe_text(out)


def retry_delay(spec: HandlerSpec, receive_count: int) -> float:
    """Exponential backoff with jitter: ``backoff * 2**(attempt-1)``, capped, then a random 50-100% of it.

    The jitter spreads retries of messages that failed together (a dependency down), so they do
    not all come back in the same instant.
    """
    exponent = min(max(receive_count - 1, 0), 40)
    ceiling = min(spec.max_backoff, spec.backoff * (2**exponent))
    return min(random.uniform(ceiling / 2, ceiling), engine.MAX_DELAY)


def check_signature(spec: HandlerSpec, queue: str) -> None:
    """A handler must take the message as its one required positional argument."""
    try:
        sig = inspect.signature(spec.func)
    except (TypeError, ValueError):
        return  # builtins and some C callables cannot be inspected: trust them
    try:
        sig.bind(object())
    except TypeError:
        raise WorkerConfigError(
            f"the handler {spec.name} of queue {queue!r} cannot take the message: its signature is "
            f"{spec.func.__name__}{sig}; it must accept one positional argument (a queues.Delivery)"
        ) from None


class _ConnectionCare:
    """Per-thread: ``close_old_connections()`` at most once a second, and at once after an error.

    Calling it more often would cost a health-check round trip per call (CONN_HEALTH_CHECKS); after
    a database error it is what drops a broken connection, so the next query reconnects.
    """

    def __init__(self) -> None:
        self._next = 0.0

    def __call__(self, *, after_error: bool = False) -> None:
        now = time.monotonic()
        if after_error or now >= self._next:
            close_old_connections()
            self._next = now + 1.0


def is_outage(exc: BaseException) -> bool:
    """Whether a database error means "the database cannot be reached" (wait and retry with backoff)
    rather than "the database refused this statement" (bad data, a constraint: the same statement would
    fail the same way, so the worker records what it can and keeps going)."""
    return isinstance(exc, (OperationalError, InterfaceError))


class _Outage:
    """Logs a database outage once when it starts and once when it ends, per place, not per attempt.

    A refused statement is not an outage: it is logged as ``event=db_refused`` every time and does not
    start the reconnect backoff.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.down_since: float | None = None
        self.delay = DB_RETRY_MIN

    def failed(self, exc: BaseException) -> float:
        """Record a failure; return how long to wait before the next attempt."""
        if not is_outage(exc):
            log.error("event=db_refused where=%s error=%s note=the database refused a statement; not an outage",
                      self.where, _one_line(exc))
            return DB_RETRY_MAX
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("event=db_unavailable where=%s error=%s", self.where, _one_line(exc))
            self.delay = DB_RETRY_MIN
        else:
            self.delay = min(self.delay * 2, DB_RETRY_MAX)
        return self.delay

    def ok(self) -> None:
        """Record a success (logs the recovery if there was an outage)."""
        if self.down_since is not None:
            log.warning("event=db_available where=%s down_for=%.1fs", self.where, time.monotonic() - self.down_since)
            self.down_since = None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


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

    def __init__(self, delivery: Delivery, queue: _QueueState, claimed_at: float) -> None:
        self.delivery = delivery
        self.queue = queue
        self.state = WAITING
        # Measured from before the claim statement, so our idea of the lease never outlives the real one.
        self.expires_at = claimed_at + queue.vt
        self.renew_at = claimed_at + queue.vt / 2
        self.started = 0.0
        self.task: Any = None
        self.thread: threading.Thread | None = None


@dataclass
class _Failure:
    item: _Item
    error: str
    delay: float
    dead_letter: bool


# -- the worker -------------------------------------------------------------------------------------
class Worker:
    """One worker process: build it with a :class:`WorkerConfig`, :meth:`prepare`, then :meth:`run`."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.prefetch = config.effective_prefetch
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.row_id: int | None = None
        self.heartbeat_interval = float(config.heartbeat_interval or conf.get("HEARTBEAT_INTERVAL"))
        self.dead_after = float(config.dead_after or conf.get("WORKER_DEAD_AFTER"))
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
        self._state = "live"
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
        from queues.models import Worker as WorkerRow

        row = WorkerRow.objects.create(
            name=self.name[:200], host=socket.gethostname()[:255], pid=os.getpid(),
            queues=[q.name for q in self._queues], concurrency=self.config.concurrency,
            started_at=timezone.now(), last_beat_at=timezone.now(),
        )
        # The database's clock is the only one all workers share: beats are compared with it.
        WorkerRow.objects.filter(pk=row.pk).update(started_at=Now(), last_beat_at=Now())
        self.row_id = row.pk

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
        from queues.engine.notify import get_listener

        listener = get_listener()
        for q in self._queues:
            start(self._watch_thread, f"mq-watch-{q.name}", listener, q.id)

    # -- claiming (main thread) ---------------------------------------------------------------------
    def _claim_loop(self) -> None:
        from queues.engine.notify import get_listener

        listener = get_listener()
        care = _ConnectionCare()
        outage = _Outage("claim")
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

    def _claim_round(self, listener: Any) -> tuple[bool, bool]:
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
                got = engine.receive(q.name, max_messages=share, visibility_timeout=q.vt)
                tracing.record_receive(q.name, got)
            except QueueNotFound:
                log.error("event=queue_missing queue=%s note=deleted while the worker runs; retrying later", q.name)
                got = []
            self._accept(q, got, claimed_at)
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

    def _accept(self, q: _QueueState, deliveries: list[Delivery], claimed_at: float) -> None:
        if not deliveries:
            return
        items = [_Item(d, q, claimed_at) for d in deliveries]
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

    def _wait_for_work(self, listener: Any) -> None:
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

    def _watch_thread(self, listener: Any, queue_id: int) -> None:
        while not self._stopped.is_set():
            seen = listener.seq(queue_id)
            if listener.wait(queue_id, seen, 1.0):
                with self._lock:
                    self._wake.notify_all()

    # -- running handlers ---------------------------------------------------------------------------
    def _handler_thread(self) -> None:
        care = _ConnectionCare()
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
        """Dead-letter, without running it, a delivery received more often than its handler's ``retries``
        allow: an earlier attempt's outcome was never recorded (its nack failed, its lease or its worker
        was lost), and running it again would silently ignore the limit."""
        spec, delivery = item.queue.spec, item.delivery
        if spec.retries is None or delivery.receive_count <= spec.retries:
            return False
        self._fail(item, RetriesUsedUp(
            f"received {delivery.receive_count} times, more than the handler's retries ({spec.retries}): an "
            "earlier attempt's outcome was not recorded (a failed nack, a lost lease or worker); not run again"
        ), dead_letter=True)
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
                    self._fail(item, _timeout_error(spec))
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
        """How a failed attempt is nacked: the error on record, the backoff, or the dead-letter queue now
        (a :class:`Reject`, a body that cannot be decoded, or the handler's ``retries`` used up)."""
        spec, delivery = item.queue.spec, item.delivery
        error = describe_error(exc)
        if reason:
            error = f"{reason}: {error}"
        if isinstance(exc, Reject):
            dead_letter = True
        if spec.retries is not None and delivery.receive_count >= spec.retries:
            dead_letter = True
        delay = 0.0 if dead_letter else retry_delay(spec, delivery.receive_count)
        return _Failure(item, error, delay, dead_letter)

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
        care = _ConnectionCare()
        outage = _Outage("settle")
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
                      "messages come back when their leases run out", len(acks), _one_line(exc))
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
            return engine.nack(item.delivery.receipt, delay=failure.delay, error=failure.error,
                               dead_letter=failure.dead_letter)
        except DatabaseError as exc:
            if is_outage(exc):
                raise
            log.error("event=db_refused where=nack queue=%s message=%d error=%s note=recording the failure "
                      "without its error text", item.queue.name, item.delivery.id, _one_line(exc))
            note = f"[the error text could not be recorded: {_one_line(exc)[:500]}]"
            return engine.nack(item.delivery.receipt, delay=failure.delay, error=note,
                               dead_letter=failure.dead_letter)

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
            self._lose(item, f"the database refused the nack twice ({_one_line(exc)})")
            return
        with self._lock:
            item.state = FINISHED
            self._held.pop(item.delivery.receipt, None)
            self.failed += 1
            self.settled += 1
            self.dead_lettered += dead
            self._wake.notify()
        summary = failure.error.splitlines()[0][:300]
        if dead:
            log.warning("event=dead_lettered queue=%s message=%d receive_count=%d error=%r",
                        item.queue.name, item.delivery.id, item.delivery.receive_count, summary)
        else:
            log.info("event=retry queue=%s message=%d receive_count=%d delay=%.2fs error=%r",
                     item.queue.name, item.delivery.id, item.delivery.receive_count, failure.delay, summary)

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
        failure = self._failure(item, _timeout_error(spec))
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

    # -- heartbeat, reaping, pruning, stats (beat thread) -------------------------------------------
    def _beat_thread(self) -> None:
        care = _ConnectionCare()
        outage = _Outage("beat")
        now = time.monotonic()
        next_beat = now + self.heartbeat_interval
        next_log = now + self.config.log_interval if self.config.log_interval else float("inf")
        next_prune = now + random.uniform(0.5, 1.0) * self.config.prune_interval if self.config.prune_interval \
            else float("inf")
        next_refresh = now + 60.0
        last_log, last_processed = now, 0
        # Reaping waits until this worker's own beats have gone through for WORKER_DEAD_AFTER: after a
        # database outage every worker is silent, and the first one back must not condemn the others.
        beating_since: float | None = now
        try:
            while not self._stopped.wait(max(0.0, min(next_beat, next_log, next_prune) - time.monotonic())):
                care(after_error=outage.down_since is not None)
                now = time.monotonic()
                try:
                    if now >= next_beat:
                        self._heartbeat()
                        beating_since = beating_since or now
                        if now - beating_since >= self.dead_after:
                            self._reap()
                        next_beat = now + self.heartbeat_interval
                    if now >= next_log:
                        processed = self.processed
                        self._log_stats(processed - last_processed, now - last_log)
                        last_log, last_processed = now, processed
                        next_log = now + self.config.log_interval
                    if now >= next_prune:
                        self._prune()
                        next_prune = now + self.config.prune_interval
                    if now >= next_refresh:
                        self._refresh_queues()
                        next_refresh = now + 60.0
                    outage.ok()
                except DatabaseError as exc:
                    beating_since = None
                    self._stopped.wait(outage.failed(exc))
                except Exception:
                    log.exception("event=beat_error note=unexpected; retrying in %gs", DB_RETRY_MAX)
                    self._stopped.wait(DB_RETRY_MAX)
        finally:
            connections.close_all()

    def _heartbeat(self, *, final: bool = False) -> None:
        from queues.models import Worker as WorkerRow

        with self._lock:
            receipts = [i.delivery.receipt for i in self._held.values() if i.state is not FINISHED]
        fields: dict[str, Any] = {
            "last_beat_at": Now(), "processed": self.processed, "failed": self.failed,
            "in_flight": len(receipts), "in_flight_ids": receipts, "state": self._state,
            "handler_durations": self.durations.snapshot(),
        }
        if final:
            fields.update(state="stopped", stopped_at=Now(), in_flight=0, in_flight_ids=[])
        WorkerRow.objects.filter(pk=self.row_id).update(**fields)

    def _reap(self) -> None:
        """Mark workers silent for WORKER_DEAD_AFTER dead and release the leases they still held.

        Their heartbeat stored receipts, not ids, so only leases the dead worker still holds are
        released: a message that was redelivered since has a new receipt and is left alone.
        """
        from queues.models import Worker as WorkerRow

        cutoff = Now() - timedelta(seconds=self.dead_after)
        with conf.atomic():
            dead = list(
                WorkerRow.objects.select_for_update(skip_locked=True)
                .filter(state__in=["live", "stopping"], last_beat_at__lt=cutoff)
                .exclude(pk=self.row_id)
            )
            for row in dead:
                receipts = [r for r in row.in_flight_ids if isinstance(r, str) and ":" in r]
                stale = engine.release_batch(receipts) if receipts else []
                WorkerRow.objects.filter(pk=row.pk).update(state="dead", stopped_at=Now(), in_flight=0)
                log.warning("event=worker_dead worker=%s released=%d note=silent for over %gs",
                            row.name, len(receipts) - len(stale), self.dead_after)

    def _prune(self) -> None:
        """Retention without cron: one worker at a time (an advisory lock) prunes."""
        from queues.models import Worker as WorkerRow
        from queues.tasks import prune_results

        with conf.db().cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [PRUNE_LOCK_KEY])
            if not cur.fetchone()[0]:
                return
            try:
                result = engine.prune()
                # Their duration histograms are folded into the totals, so /metrics' sums never shrink.
                gone = fold_and_delete(list(WorkerRow.objects.filter(
                    state__in=["stopped", "dead"], last_beat_at__lt=Now() - WORKER_ROW_RETENTION
                ).values_list("pk", flat=True)))
                results = prune_results()
                abandoned = engine.reap_redrives()
                if result.expired_messages or result.expired_dedup_ids or gone or results or abandoned:
                    log.info("event=pruned expired_messages=%d expired_dedup_ids=%d worker_rows=%d task_results=%d "
                             "abandoned_redrives=%d", result.expired_messages, result.expired_dedup_ids, gone,
                             results, abandoned)
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", [PRUNE_LOCK_KEY])

    def _refresh_queues(self) -> None:
        if self.config.visibility_timeout is not None:
            return
        for q in self._queues:
            with contextlib.suppress(QueueNotFound):
                q.vt = engine.get_queue(q.name).visibility_timeout.total_seconds()

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
        self._state = "stopping"
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
        from queues.engine.notify import stop_listener

        stop_listener()
        self._state = "stopped"
        try:
            close_old_connections()
            self._heartbeat(final=True)
        except DatabaseError as exc:
            log.warning("event=final_beat_failed error=%s", _one_line(exc))
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
                        len(items), _one_line(exc))
        with self._lock:
            for item in items:
                self._held.pop(item.delivery.receipt, None)
            self._wake.notify_all()


class RetriesUsedUp(Exception):
    """Recorded on a message dead-lettered because it came back after its handler's last retry."""


class _Abandoned(Exception):
    """Raised inside an atomic handler's transaction when it finished after its timeout."""


def _timeout_error(spec: HandlerSpec) -> TimeoutError:
    return TimeoutError(f"handler {spec.name} ran longer than its timeout of {spec.timeout:g}s and was abandoned")
