"""The sampler service: elect, tick, push, on the web process's event loop.

The database work (election, tick, maintenance) runs in one dedicated thread, so it has its own
long-lived Django connection that holds the election's lock; the push runs on the event loop that
serves the websockets, because the in-memory channel layer is only safe from that loop (and
channels-redis is happy there too). One push per tick reaches every socket of every web process:
consumers only relay it, so 100 open dashboards cost the database what one costs.

Started in daphne processes only (:func:`start_when_daphne_runs`, called from ``QueuesConfig.ready``):
the hook fires when daphne's Twisted reactor starts, which never happens in management commands or
the test run. Under another ASGI server, call :func:`ensure_started` from its startup (e.g. a lifespan
handler) while the loop runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from channels.layers import get_channel_layer
from django.db import connections

from queues import conf, schedules
from queues.metrics import EVENT_TYPE, group
from queues.metrics.election import LOCK_KEY, Election
from queues.metrics.sampler import Sampler, sample_interval

logger = logging.getLogger("queues.metrics")

T = TypeVar("T")


async def broadcast(sample: dict[str, Any], layer: Any = None) -> None:
    """Send one sample to every dashboard socket (all processes sharing the channel layer).

    Encoded once here, not once per socket: consumers pass the text on as it is.
    """
    if layer is None:
        layer = get_channel_layer()
    if layer is None:
        return
    text = json.dumps(sample, separators=(",", ":"), allow_nan=False)
    await layer.group_send(group(), {"type": EVENT_TYPE, "text": text, "interval": sample.get("interval", 1.0)})


class SamplerService:
    """A sampler candidate: tries to lead, and while leading ticks every ``interval`` and publishes.

    ``publish`` is awaited with each sample (default: :func:`broadcast` on the default channel layer).
    """

    retry_interval = 2.0
    """Seconds between a follower's tries to take the lead (how soon a dead leader is replaced)."""

    def __init__(
        self,
        *,
        interval: float | None = None,
        publish: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        key: int = LOCK_KEY,
        name: str | None = None,
    ) -> None:
        self.interval = interval if interval is not None else sample_interval()
        self.publish = publish or broadcast
        self.election = Election(key=key, name=name)
        self.sampler = Sampler()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mq-sampler")
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._leading = False
        self.last_sample: dict[str, Any] | None = None

    @property
    def leading(self) -> bool:
        """True while this candidate holds the lead (as of its last check)."""
        return self._leading

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def start(self) -> asyncio.Task:
        """Run on the current event loop until :meth:`stop`."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run(), name="mqadmin-sampler")
        return self._task

    async def stop(self) -> None:
        """Stop ticking, give up the lead, close the thread's connection."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._in_thread(self._shutdown_thread)
        self._executor.shutdown(wait=True)

    def _shutdown_thread(self) -> None:
        self.election.resign()
        connections.close_all()
        self._leading = False

    def _lead(self) -> bool:
        was = self._leading
        self._leading = self.election.try_lead()
        if self._leading and not was:
            self.sampler.reset()
        return self._leading

    def _step_down(self) -> None:
        self._leading = False
        self.sampler.reset()
        self.election.resign()

    async def run(self) -> None:
        """The loop: follow until elected, then tick on a fixed beat; survive database outages."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        failures = 0
        while not self._stopping:
            try:
                leading = await self._in_thread(self._lead)
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    logger.warning("sampler election failed (%s); retrying every %ss", exc, self.retry_interval)
                await self._in_thread(self._step_down)
                await asyncio.sleep(self.retry_interval)
                continue
            if not leading:
                await asyncio.sleep(self.retry_interval)
                next_tick = loop.time()
                continue
            try:
                sample = await self._in_thread(self.sampler.tick)
                failures = 0
            except Exception:
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    logger.exception("sampler tick failed; stepping down and retrying")
                await self._in_thread(self._step_down)
                await asyncio.sleep(self.retry_interval)
                continue
            self.last_sample = sample
            try:
                await self.publish(sample)
            except Exception:
                logger.exception("pushing a sample to the channel layer failed")
            next_tick += self.interval
            delay = next_tick - loop.time()
            if delay < 0:  # fell behind (slow database, stalled loop): skip the missed beats
                next_tick = loop.time()
                delay = 0
            await asyncio.sleep(delay)


_service: SamplerService | None = None


def current() -> SamplerService | None:
    """This process's sampler service, if started."""
    return _service


def ensure_started() -> SamplerService | None:
    """Start this process's sampler candidate on the running loop (idempotent); None if disabled."""
    global _service
    if not conf.get("SAMPLER_ENABLED"):
        return None
    if _service is None:
        _service = SamplerService()
        logger.info("sampler candidate %s started; one tick every %ss", _service.election.name, _service.interval)
    _service.start()
    return _service


def start_when_daphne_runs() -> bool:
    """Arrange for :func:`ensure_started` to run once daphne's reactor runs; True if arranged.

    ``daphne`` (in ``INSTALLED_APPS``) installs Twisted's asyncio reactor in every process, but only a
    daphne server runs it: management commands and tests never do, so they never sample.
    """
    if not conf.get("SAMPLER_ENABLED"):
        return False
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        return False
    # deferred: only a process that has a reactor (daphne's) gets here; others never import Twisted's.
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        return False

    def on_startup() -> None:
        # Startup triggers fire before the asyncio loop spins; callLater runs us inside it.
        reactor.callLater(0, _start_in_reactor)

    reactor.callWhenRunning(on_startup)
    return True


def _start_scheduler() -> None:
    """Run the periodic schedules' scheduler in this web process too (queues/schedules.py), until shutdown."""
    # deferred: as the reactor import below, only a daphne process gets here
    from twisted.internet import reactor

    stop = threading.Event()
    if schedules.start_scheduler(stop, name="mq-schedules-web") is not None:
        reactor.addSystemEventTrigger("before", "shutdown", stop.set)


def _start_in_reactor() -> None:
    _start_scheduler()
    try:
        service = ensure_started()
    except Exception:
        logger.exception("could not start the sampler; the dashboard will show no live numbers")
        return
    if service is None:
        return
    # deferred: importing twisted.internet.reactor installs a reactor; by now daphne's is the one installed.
    from twisted.internet import defer, reactor

    def on_shutdown() -> defer.Deferred:
        # Resign at once so another process takes over now, not when our session times out.
        started = time.monotonic()
        d = defer.Deferred.fromFuture(asyncio.ensure_future(service.stop()))
        d.addBoth(lambda _: logger.info("sampler stopped in %.2fs", time.monotonic() - started))
        return d

    reactor.addSystemEventTrigger("before", "shutdown", on_shutdown)
