"""Redrive: dead letters back to the queue each died in (or to a chosen queue), at a chosen rate.

The one implementation, whoever starts it (the Python API, ``mq_redrive``, the dashboard's service):
:func:`start_redrive` checks the request, sizes it and records a ``Redrive`` row, :func:`run_redrive`
moves the messages batch by batch, :func:`redrive` does both in the calling thread; :func:`stop_redrive`
and :func:`reap_redrives` end one from any process.

**One running redrive per queue.** Two redrives of one dead-letter queue would race each other for
the same messages and double the rate the operator chose. A partial unique index on the row (source
queue, where the state is ``running``: ``Redrive.Meta.constraints``) makes a second one impossible
whatever the timing, across processes and machines; :func:`start_redrive` turns its violation into
:class:`RedriveRunning`, which names the running redrive. A redrive asked to stop no longer blocks a
new one, and one whose process died is reaped first, so it cannot block either.

**Sizing.** A redrive's ``total`` is the queue's depth from the counters (:func:`queue_stats`), not
``count(*)``: the counters are exact at every commit, and counting a dead-letter queue of millions of
rows would make starting a redrive as slow as reading them all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError
from django.db.models.functions import Now
from django.utils import timezone

from queues import conf
from queues.engine import sql, text
from queues.engine.connection import config, queue_name, recovers_connection
from queues.engine.errors import InvalidQueueSettings, InvalidRedrive, RedriveRunning
from queues.engine.operations import queue_stats
from queues.engine.queues import get_queue
from queues.engine.validation import (
    BIGINT_MAX,
    MAX_BATCH,
    MIN_REDRIVE_RATE,
    check_int,
    check_seconds,
    validate_name,
)

REDRIVE_BEAT = 1.0
"""Seconds between a running redrive's signs of life (``heartbeat_at``), also while it paces itself."""
ONE_RUNNING = "queues_redrive_one_running"
"""The partial unique index that allows one running redrive per source queue (migration 0012)."""


@recovers_connection
def redrive_batch(queue: str, *, to: str | None = None, limit: int = 100) -> dict[str, int]:
    """Move up to ``limit`` of the oldest messages of the dead-letter queue ``queue`` back.

    They go to ``to``, or each to the queue it died in. Returns counts per destination queue.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BATCH:
        raise ValueError(f"limit must be an integer from 1 to {MAX_BATCH}, got {limit!r}")
    cfg = config(queue)
    to_id = config(to).id if to is not None else None
    with conf.db().cursor() as cur:
        cur.execute(
            sql.REDRIVE_BATCH,
            {"queue_id": cfg.id, "to_id": to_id, "limit": limit, "queue_name": queue},
        )
        rows = cur.fetchall()
        for dest, _count in rows:
            cur.execute(sql.NOTIFY, {"queue_id": dest})
    return {queue_name(dest): count for dest, count in rows}


def _check_rate(rate: object) -> float | None:
    """A redrive's pace in messages per second (None: as fast as it can); else :class:`InvalidRedrive`."""
    if rate is None:
        return None
    if isinstance(rate, int) and not isinstance(rate, bool) and rate > BIGINT_MAX:
        rate = math.inf  # float() of a huge int overflows; it is refused below like infinity
    if (isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate)
            or rate < MIN_REDRIVE_RATE):
        raise InvalidRedrive(
            f"rate must be a finite number of at least {MIN_REDRIVE_RATE:g} messages per second "
            f"(or None for full speed), got {rate!r}"
        )
    return float(rate)


@recovers_connection
def start_redrive(
    queue: str, *, to: str | None = None, rate: float | None = None, limit: int | None = None,
    requested_by: str = "",
) -> Any:
    """Check, size and record a redrive of the dead-letter queue ``queue``; return its ``Redrive`` row.

    The row is ``running``; :func:`run_redrive` carries it out (in this thread or another). Messages go
    to ``to``, or each back to the queue it died in (``to`` is then required when ``queue`` is no
    queue's dead-letter queue); at most ``rate`` per second and ``limit`` in all.

    Raises :class:`RedriveRunning` (naming it) if a redrive of ``queue`` is running already, even one
    started at the same moment by another process; :class:`QueueNotFound` if ``queue`` does not exist;
    :class:`InvalidRedrive` for a bad target, rate or limit. Inside the caller's transaction the row
    commits with it; a refusal leaves that transaction usable.
    """
    # deferred: the models need the app registry, and the engine is importable before Django is set up
    from queues.models import Queue, Redrive, RedriveState

    validate_name(queue)
    if to is not None:
        validate_name(to, "target queue")
    rate = _check_rate(rate)
    if limit is not None:
        check_int(limit, "limit", minimum=1)
    source = get_queue(queue)
    dest = None
    if to is not None:
        dest = Queue.objects.filter(name=to).first()
        if dest is None:
            raise InvalidRedrive(f"target queue {to!r} does not exist: pick an existing queue or leave it empty")
        if dest.pk == source.pk:
            raise InvalidRedrive(f"cannot redrive {queue!r} into itself: pick another target")
    elif not Queue.objects.filter(dead_letter_queue=source).exists():
        raise InvalidRedrive(
            f"queue {queue!r} is not a dead-letter queue, so its messages have no queue to go back to: "
            "pick a target queue"
        )
    requested_by = text.safe_text(str(requested_by), max_length=150)
    reap_redrives()  # a redrive whose process died must not block this one
    waiting = queue_stats(queue).depth
    try:
        with conf.atomic():
            return Redrive.objects.create(
                source=source, destination=dest, rate=rate, limit=limit,
                total=min(waiting, limit) if limit else waiting, requested_by=requested_by,
            )
    except IntegrityError as exc:
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) != ONE_RUNNING:
            raise
    running = Redrive.objects.filter(source=source, state=RedriveState.RUNNING).values_list("pk", flat=True).first()
    which = f" (redrive {running})" if running is not None else ""
    raise RedriveRunning(
        f"a redrive of {queue!r} is already running{which}: stop it first or wait for it", redrive_id=running
    )


def redrive(
    queue: str,
    *,
    to: str | None = None,
    rate: float | None = None,
    limit: int | None = None,
    requested_by: str = "",
    progress: Callable[[Any], None] | None = None,
) -> Any:
    """Redrive dead letters of ``queue`` back, ``rate`` messages per second at most, until empty.

    :func:`start_redrive` then :func:`run_redrive`, in the calling thread; returns the finished
    ``queues.models.Redrive`` row (same refusals as :func:`start_redrive`). The row is the control
    channel: setting its state to ``stopping`` from any process (``stop_redrive``) stops it after the
    current batch. Each batch is its own transaction, so a stop or a crash never leaves a message
    half-moved.
    """
    job = start_redrive(queue, to=to, rate=rate, limit=limit, requested_by=requested_by)
    return run_redrive(job, progress=progress)


"""Seconds between a running redrive's signs of life (``heartbeat_at``), also while it paces itself."""


def run_redrive(job: Any, *, progress: Callable[[Any], None] | None = None) -> Any:
    """Carry out a ``Redrive`` row made by :func:`start_redrive`; return it finished.

    The row is beaten every :data:`REDRIVE_BEAT` seconds; if it leaves ``running`` meanwhile (a stop
    request, or :func:`reap_redrives` having given it up for dead) the redrive ends after the batch
    in hand. Each batch is one transaction, so wherever it ends no message is half-moved.
    """
    # deferred: the models need the app registry (see start_redrive)
    from queues.models import Redrive, RedriveState

    source = job.source.name
    to = job.destination.name if job.destination_id else None
    batch = 100 if job.rate is None else max(1, min(100, int(job.rate)))
    started = time.monotonic()
    row = Redrive.objects.filter(pk=job.pk)

    def still_running() -> bool:
        job.refresh_from_db(fields=["state"])
        if job.state == RedriveState.STOPPING:
            job.state = RedriveState.STOPPED
        return job.state == RedriveState.RUNNING

    row.update(heartbeat_at=Now())
    try:
        while still_running():
            want = batch if job.limit is None else min(batch, job.limit - job.moved)
            if want <= 0:
                job.state = RedriveState.FINISHED
                break
            moved = sum(redrive_batch(source, to=to, limit=want).values())
            job.moved += moved
            row.update(moved=job.moved, heartbeat_at=Now())
            if progress is not None:
                progress(job)
            if moved == 0:
                job.state = RedriveState.FINISHED
                break
            if job.rate is not None:
                # Pace on an absolute schedule so the average rate holds whatever a batch costs; a
                # long pause (a slow rate) still beats and notices a stop request within a beat.
                due = started + job.moved / job.rate
                while (pause_for := due - time.monotonic()) > 0:
                    time.sleep(min(pause_for, REDRIVE_BEAT))
                    if time.monotonic() < due:
                        row.update(heartbeat_at=Now())
                        if not still_running():
                            break
    except Exception as exc:
        job.state = RedriveState.FAILED
        job.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        job.finished_at = timezone.now()
        # A redrive reaped as abandoned keeps the reaper's verdict; its progress is still recorded.
        ending = row.filter(state__in=[RedriveState.RUNNING, RedriveState.STOPPING])
        if not ending.update(state=job.state, moved=job.moved, error=job.error, finished_at=job.finished_at):
            row.update(moved=job.moved)
            job.refresh_from_db(fields=["state", "error", "finished_at"])
    return job


@recovers_connection
def reap_redrives(*, stale_after: float | None = None) -> int:
    """Mark failed the running redrives whose process went silent for ``stale_after`` seconds.

    A redrive runs in the process that started it (a web process's thread, or ``mq_redrive``); if
    that process dies, its row would say ``running`` forever and block a new redrive of the queue.
    The messages it did not move are still in the dead-letter queue: start a new redrive for them.
    Default ``stale_after``: the ``REDRIVE_STALE_AFTER`` setting. Returns how many were reaped.
    """
    # deferred: the models need the app registry (see start_redrive)
    from queues.models import RedriveState

    seconds = check_seconds(conf.get("REDRIVE_STALE_AFTER") if stale_after is None else stale_after,
                            "stale_after", minimum=REDRIVE_BEAT * 2)
    if seconds > 100 * 365 * 86400:  # past PostgreSQL's interval range the UPDATE itself would fail
        raise InvalidQueueSettings(f"stale_after must be at most 100 years, got {seconds:g} seconds")
    with conf.db().cursor() as cur:
        cur.execute(
            sql.REAP_REDRIVES,
            {"failed": RedriveState.FAILED, "running": RedriveState.RUNNING, "stopping": RedriveState.STOPPING,
             "secs": seconds},
        )
        return cur.rowcount


@recovers_connection
def stop_redrive(redrive_id: int) -> bool:
    """Ask a running redrive to stop after its current batch. Returns False if it was not running."""
    # deferred: the models need the app registry (see start_redrive)
    from queues.models import Redrive, RedriveState

    if isinstance(redrive_id, bool) or not isinstance(redrive_id, int) or not 0 < redrive_id <= BIGINT_MAX:
        raise ValueError(f"a redrive id must be an integer from 1 to {BIGINT_MAX}, got {redrive_id!r}")
    return bool(
        Redrive.objects.filter(pk=redrive_id, state=RedriveState.RUNNING).update(state=RedriveState.STOPPING)
    )


__all__ = [
    "reap_redrives", "redrive", "redrive_batch", "run_redrive", "start_redrive", "stop_redrive",
]
