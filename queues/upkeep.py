"""Upkeep: every periodic cleaning job of mqadmin, run as one sweep behind one lock.

The jobs, each owned (and tested) by the part whose data it cleans; this module only lists them:

========================  =====================================================  ===========================
job                       what it does                                           owner
========================  =====================================================  ===========================
``messages``              messages past their queue's retention, expired dedup   :func:`queues.engine.prune`
                          ids, idle fifo groups, counter slots
``workers``               workers silent for ``WORKER_DEAD_AFTER``: marked dead,  :mod:`queues.worker.fleet`
                          the leases they held released
``worker_rows``           stopped and dead heartbeat rows older than a day        :mod:`queues.worker.fleet`
``redrives``              redrives whose process went silent: marked failed       :func:`queues.engine.reap_redrives`
``task_results``          finished ``django.tasks`` results past retention        :func:`queues.tasks.prune_results`
``samples``               history samples: downsampled, then pruned by            :mod:`queues.metrics.sampler`
                          ``SAMPLE_RETENTION``
``schedules``             due occurrences of periodic schedules enqueued (the     :func:`queues.schedules.run_due`
                          scheduler threads do it every second; this catches
                          up where none runs, e.g. ``mq_prune`` from cron)
``flow_groups``           idle group keys' rows of queues limited per group key   :mod:`queues.engine.limits`
``expiry``                messages past their time to live that nobody holds:    :func:`queues.engine.expire_due`
                          dropped or dead-lettered (the queue's expiry_action)
========================  =====================================================  ===========================

Who sweeps: every worker (every ``--prune-interval``, and the ``expiry`` and ``workers`` jobs at heartbeat pace),
the web process's elected sampler (once a minute), and ``mq_prune`` (all jobs, for cron). However many
of them run, one PostgreSQL advisory lock (:data:`LOCK_KEY`, a session lock taken with
``pg_try_advisory_lock``) lets one sweep run at a time; a sweep that finds the lock taken does nothing
and says so (:attr:`Sweep.ran` False), since the sweep that holds it does the same work. A job that
fails is logged and the others still run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from queues import conf, engine, schedules
from queues.engine import limits
from queues.tasks import prune_results
from queues.worker import fleet

log = logging.getLogger("queues.upkeep")

LOCK_KEY = int.from_bytes(b"mqupkeep", "big")
"""The advisory lock key of the sweep (one per database)."""

JobFunc = Callable[[int], dict[str, int]]
"""A job: called with the batch size (rows per statement), returns what it removed or changed by name."""


def _messages(batch: int) -> dict[str, int]:
    result = engine.prune(batch=batch)
    return {"expired_messages": result.expired_messages, "expired_dedup_ids": result.expired_dedup_ids}


def _workers(batch: int) -> dict[str, int]:
    reaped = fleet.reap_dead_workers()
    return {"dead_workers": reaped.workers, "released_leases": reaped.released}


def _worker_rows(batch: int) -> dict[str, int]:
    return {"worker_rows": fleet.delete_old_rows()}


def _redrives(batch: int) -> dict[str, int]:
    return {"abandoned_redrives": engine.reap_redrives()}


def _task_results(batch: int) -> dict[str, int]:
    return {"expired_task_results": prune_results(batch=batch)}


def _expiry(batch: int) -> dict[str, int]:
    return {"ttl_expired": engine.expire_due(batch=batch)}


def _samples(batch: int) -> dict[str, int]:
    # deferred: the sampler imports this module to sweep from its tick (an import circle otherwise)
    from queues.metrics.sampler import maintain_samples

    done = maintain_samples()
    return {
        "samples_made": sum(v for k, v in done.items() if k.startswith("made_")),
        "old_samples": sum(v for k, v in done.items() if k.startswith("pruned_")),
    }


def _schedules(batch: int) -> dict[str, int]:
    fired = schedules.run_due(limit=batch)
    return {"scheduled_messages": sum(1 for f in fired if f.message_id is not None)}


def _flow_groups(batch: int) -> dict[str, int]:
    return {"idle_flow_groups": limits.prune_idle_groups(batch)}


JOBS: dict[str, JobFunc] = {
    "messages": _messages,
    "workers": _workers,
    "worker_rows": _worker_rows,
    "redrives": _redrives,
    "task_results": _task_results,
    "samples": _samples,
    "schedules": _schedules,
    "flow_groups": _flow_groups,
    "expiry": _expiry,
}
"""Every upkeep job by name, in the order a sweep runs them."""


@dataclass
class Sweep:
    """What one :func:`sweep` did."""

    ran: bool = False
    """False when another process's sweep held the lock: nothing was done here."""
    counts: dict[str, int] = field(default_factory=dict)
    """Rows removed or changed, by name (``expired_messages``, ``dead_workers``, ...)."""
    errors: dict[str, str] = field(default_factory=dict)
    """Jobs that failed, with their error (the other jobs still ran)."""

    def count(self, name: str) -> int:
        """One count, 0 when its job did not run or found nothing."""
        return self.counts.get(name, 0)


def sweep(*, only: Collection[str] | None = None, batch: int = 5000, wait: float = 0.0) -> Sweep:
    """Run the upkeep jobs (``only``: those named) unless another process's sweep is running; see the module.

    ``wait``: seconds to wait for a running sweep to end first (``mq_prune``); 0, the default, gives up at
    once (a worker or the sampler: the running sweep does the same work). Runs on the calling thread's
    connection to mqadmin's database. Logs ``event=pruned ...`` with the counts when anything was
    removed or changed.
    """
    names = list(JOBS) if only is None else [n for n in JOBS if n in only]
    unknown = set(only or ()) - set(JOBS)
    if unknown:
        raise ValueError(f"unknown upkeep job(s) {sorted(unknown)}; known: {', '.join(JOBS)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    db = conf.db()
    if not _lock(db, wait):
        return Sweep(ran=False)
    result = Sweep(ran=True)
    try:
        for name in names:
            try:
                result.counts.update(JOBS[name](batch))
            except Exception as exc:
                if db.in_atomic_block and isinstance(exc, DatabaseError):
                    raise  # the caller's transaction is broken: nothing after this can run in it
                result.errors[name] = f"{type(exc).__name__}: {exc}"
                log.exception("event=upkeep_failed job=%s note=the other jobs still run; retried next sweep", name)
    finally:
        _unlock(db)
    done = {k: v for k, v in result.counts.items() if v}
    if done:
        log.info("event=pruned %s", " ".join(f"{k}={v}" for k, v in done.items()))
    return result


def _lock(db: BaseDatabaseWrapper, wait: float) -> bool:
    """Take the sweep's lock, trying again every 0.1 s for ``wait`` seconds; True if taken."""
    deadline = time.monotonic() + wait
    with db.cursor() as cur:
        while True:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
            if cur.fetchone()[0]:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def _unlock(db: BaseDatabaseWrapper) -> None:
    """Release the sweep's lock; if that fails, close the connection, which releases it too (a session
    lock left behind would stop every other process's sweeps for as long as this connection lives)."""
    try:
        with db.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    except DatabaseError:
        log.warning("event=upkeep_unlock_failed note=closing the connection releases the lock")
        if not db.in_atomic_block:
            db.close()
