"""Every operator action: permission check, engine call and audit row, in one transaction.

Each service is ``verb_noun(*, actor, ..., remote_addr="")``:

- a denied attempt (missing permission, read-only mode) is audited with outcome ``denied`` and
  raises ``PermissionDenied`` with the reason;
- the engine call and the ``ok`` audit row commit together (``transaction.atomic``), so the log never
  claims an action that rolled back;
- an engine error rolls the action back, is audited with outcome ``error`` and raises
  :class:`ActionFailed` (a ``ValueError``) whose message the page shows with status 400;
  an unknown queue, message or redrive raises :class:`NotFound` (404).

Bulk message actions (delete, retry, move) take either ``ids`` or ``match`` (a
:class:`queues.selectors.MessageFilter`: every message matching the browser's current search).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import close_old_connections, transaction

from queues import conf, health, selectors
from queues.engine import core as engine
from queues.engine.errors import QueueNotFound
from queues.models import AuditEvent, Message, Queue, Redrive, RedriveState
from queues.permissions import Action, denial_reason

logger = logging.getLogger("queues.services")

# The audit row keeps at most this many message ids; ``count`` always has the full number.
AUDIT_MAX_IDS = 1000


class ActionFailed(ValueError):
    """An action could not be done; the message says why and how to fix it (shown with status 400)."""


class NotFound(ActionFailed, LookupError):
    """The queue, message or redrive an action names does not exist (shown with status 404)."""


@dataclass
class _Done:
    """What an action did, for its audit row."""

    result: Any = None
    count: int = 0
    message_ids: list[int] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    queue_name: str | None = None


def _actor_fields(actor: Any) -> dict[str, Any]:
    if actor is not None and getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None):
        return {"actor": actor, "actor_name": actor.get_username()}
    return {"actor": None, "actor_name": ""}


def _audit(
    actor: Any, action: Action, *, queue_name: str = "", outcome: str, remote_addr: str = "", count: int = 0,
    message_ids: Sequence[int] = (), detail: dict[str, Any] | None = None, error: str = "",
) -> AuditEvent:
    return AuditEvent.objects.create(
        **_actor_fields(actor), action=action.value, queue_name=queue_name[:80], outcome=outcome,
        remote_addr=(remote_addr or "")[:64], count=count, message_ids=list(message_ids)[:AUDIT_MAX_IDS],
        detail=detail or {}, error=error,
    )


def authorize(*, actor: Any, action: Action, queue: str = "", remote_addr: str = "") -> None:
    """Raise ``PermissionDenied`` (and audit the denied attempt) unless ``actor`` may do ``action``.

    Services call it themselves; views call it first when they must read a form before acting, so a
    malformed request from someone without the permission is a 403 on record, not a 400.
    """
    reason = denial_reason(actor, action)
    if reason is not None:
        _audit(actor, action, queue_name=queue, outcome="denied", remote_addr=remote_addr, error=reason)
        raise PermissionDenied(reason)


def _perform(
    actor: Any, action: Action, fn: Callable[[], _Done], *, queue_name: str = "", remote_addr: str = "",
    detail: dict[str, Any] | None = None, message_ids: Sequence[int] = (),
) -> _Done:
    """Check permission, run ``fn`` and write the audit row; the whole contract of a service."""
    reason = denial_reason(actor, action)
    if reason is not None:
        _audit(actor, action, queue_name=queue_name, outcome="denied", remote_addr=remote_addr,
               detail=detail, message_ids=message_ids, error=reason)
        raise PermissionDenied(reason)
    try:
        with conf.atomic():
            done = fn()
            _audit(
                actor, action, queue_name=done.queue_name if done.queue_name is not None else queue_name,
                outcome="ok", remote_addr=remote_addr, count=done.count,
                message_ids=done.message_ids or message_ids, detail={**(detail or {}), **done.detail},
            )
    except PermissionDenied:
        raise
    except Exception as exc:
        # The action rolled back; record the attempt outside its transaction so the log keeps it.
        message = str(exc) if isinstance(exc, ValueError | LookupError) else f"{type(exc).__name__}: {exc}"
        _audit(actor, action, queue_name=queue_name, outcome="error", remote_addr=remote_addr,
               detail=detail, message_ids=message_ids, error=message)
        if isinstance(exc, QueueNotFound | NotFound):
            raise NotFound(message) from exc
        if isinstance(exc, ValueError | LookupError):
            raise exc if isinstance(exc, ActionFailed) else ActionFailed(message) from exc
        raise
    return done


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


# -- queue actions ----------------------------------------------------------------------------------
def pause_queue(*, actor: Any, queue: str, remote_addr: str = "") -> None:
    """Stop deliveries from ``queue`` (sends are still accepted)."""

    def run() -> _Done:
        engine.pause(queue)
        return _Done()

    _perform(actor, Action.PAUSE_QUEUE, run, queue_name=queue, remote_addr=remote_addr)


def resume_queue(*, actor: Any, queue: str, remote_addr: str = "") -> None:
    """Resume deliveries from ``queue``."""

    def run() -> _Done:
        engine.resume(queue)
        return _Done()

    _perform(actor, Action.RESUME_QUEUE, run, queue_name=queue, remote_addr=remote_addr)


def _settings_snapshot(q: Queue) -> dict[str, Any]:
    return {
        "kind": q.kind,
        "visibility_timeout": _seconds(q.visibility_timeout),
        "max_receives": q.max_receives,
        "dead_letter_queue": q.dead_letter_queue.name if q.dead_letter_queue_id else None,
        "default_delay": _seconds(q.default_delay),
        "retention": _seconds(q.retention),
        "max_message_size": q.max_message_size,
        "dedup_window": _seconds(q.dedup_window),
    }


def update_queue_settings(*, actor: Any, queue: str, settings: dict[str, Any], remote_addr: str = "") -> Queue:
    """Change settings of ``queue`` (keywords of :func:`queues.update_queue`); the audit row holds the diff."""

    def run() -> _Done:
        before = Queue.objects.select_related("dead_letter_queue").filter(name=queue).first()
        if before is None:
            raise NotFound(f"queue {queue!r} does not exist")
        old = _settings_snapshot(before)
        updated = engine.update_queue(queue, **settings)
        updated = Queue.objects.select_related("dead_letter_queue").get(pk=updated.pk)
        new = _settings_snapshot(updated)
        changes = {k: [old[k], new[k]] for k in new if old[k] != new[k]}
        return _Done(result=updated, detail={"changes": changes})

    return _perform(actor, Action.UPDATE_QUEUE_SETTINGS, run, queue_name=queue, remote_addr=remote_addr).result


def purge_queue(*, actor: Any, queue: str, confirm: str, remote_addr: str = "") -> int:
    """Delete every message of ``queue``; ``confirm`` must repeat the queue's name. Returns how many."""

    def run() -> _Done:
        if confirm != queue:
            raise ActionFailed(f"type the queue's name {queue!r} to confirm the purge (got {confirm!r})")
        return _Done(count=engine.purge(queue))

    return _perform(actor, Action.PURGE_QUEUE, run, queue_name=queue, remote_addr=remote_addr).count


def create_queue(*, actor: Any, name: str, settings: dict[str, Any] | None = None, remote_addr: str = "") -> Queue:
    """Create the queue ``name`` (keywords of :func:`queues.create_queue`, including ``dead_letter_queue``)."""
    settings = dict(settings or {})

    def run() -> _Done:
        created = engine.create_queue(name, **settings)
        return _Done(result=created, detail={"settings": _settings_snapshot(created)})

    return _perform(actor, Action.CREATE_QUEUE, run, queue_name=name, remote_addr=remote_addr).result


def delete_queue(*, actor: Any, queue: str, confirm: str, remote_addr: str = "") -> int:
    """Delete ``queue`` and its messages; ``confirm`` must repeat its name. Returns how many messages went."""

    def run() -> _Done:
        if confirm != queue:
            raise ActionFailed(f"type the queue's name {queue!r} to confirm deleting it (got {confirm!r})")
        return _Done(count=engine.delete_queue(queue))

    return _perform(actor, Action.DELETE_QUEUE, run, queue_name=queue, remote_addr=remote_addr).count


def publish_message(
    *, actor: Any, queue: str, body: Any, headers: dict[str, str] | None = None, delay: float | None = None,
    priority: int = 0, group: str | None = None, dedup_id: str | None = None, remote_addr: str = "",
) -> int:
    """Send one message to ``queue`` as the operator; returns its id (the first one's, for a dedup repeat)."""

    def run() -> _Done:
        message_id = engine.send(
            queue, body, headers=headers, delay=delay, priority=priority, group=group, dedup_id=dedup_id
        )
        return _Done(result=message_id, count=1, message_ids=[message_id])

    detail = {"headers": headers or {}, "delay": delay, "priority": priority, "group": group, "dedup_id": dedup_id}
    return _perform(actor, Action.PUBLISH_MESSAGE, run, queue_name=queue, remote_addr=remote_addr,
                    detail=detail).result


# -- message actions --------------------------------------------------------------------------------
def _selection(ids: Sequence[int] | None, match: selectors.MessageFilter | None) -> list[list[tuple[int, int]]]:
    """The chosen messages as batches of ``(id, queue id)``, read inside the action's transaction."""
    if (ids is None) == (match is None):
        raise ActionFailed("choose messages either by ids or by a filter, not both or neither")
    if ids is not None:
        clean = []
        for value in ids:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ActionFailed(f"message ids must be whole numbers, got {value!r}")
            clean.append(value)
        if not clean:
            raise ActionFailed("select at least one message")
        return [list(Message.objects.filter(id__in=clean).order_by("id").values_list("id", "queue_id"))]
    assert match is not None
    try:
        return list(selectors.iter_matching_ids(match))
    except selectors.SearchError as exc:
        raise ActionFailed(str(exc))


def _bulk(
    actor: Any, action: Action, per_queue: Callable[[str, list[int]], int], *, ids: Sequence[int] | None,
    match: selectors.MessageFilter | None, remote_addr: str, detail: dict[str, Any] | None = None,
    precheck: Callable[[], None] | None = None,
) -> int:
    names = dict(Queue.objects.values_list("id", "name"))
    scope: dict[str, Any] = {"filter": match.text()} if match is not None else {}

    def run() -> _Done:
        if precheck is not None:
            precheck()
        total = 0
        touched: dict[str, int] = {}
        for batch in _selection(ids, match):
            by_queue: dict[int, list[int]] = {}
            for message_id, queue_id in batch:
                by_queue.setdefault(queue_id, []).append(message_id)
            for queue_id, chunk in by_queue.items():
                name = names.get(queue_id) or Queue.objects.get(pk=queue_id).name
                n = per_queue(name, chunk)
                total += n
                if n:
                    touched[name] = touched.get(name, 0) + n
        queue_name = next(iter(touched)) if len(touched) == 1 else ""
        if match is not None and match.single_queue:
            queue_name = match.single_queue
        return _Done(count=total, queue_name=queue_name, detail={"queues": touched})

    single = match.single_queue if match is not None else ""
    return _perform(actor, action, run, queue_name=single or "", remote_addr=remote_addr,
                    detail={**scope, **(detail or {})}, message_ids=list(ids or ())).count


def delete_messages(
    *, actor: Any, ids: Sequence[int] | None = None, match: selectors.MessageFilter | None = None,
    remote_addr: str = "",
) -> int:
    """Delete the chosen messages (in flight ones too); returns how many existed."""
    return _bulk(actor, Action.DELETE_MESSAGES, engine.delete_messages, ids=ids, match=match, remote_addr=remote_addr)


def retry_messages(
    *, actor: Any, ids: Sequence[int] | None = None, match: selectors.MessageFilter | None = None,
    remote_addr: str = "",
) -> int:
    """Make the chosen delayed or backing-off messages ready now; returns how many changed."""
    return _bulk(actor, Action.RETRY_MESSAGES, engine.retry_now, ids=ids, match=match, remote_addr=remote_addr)


def move_messages(
    *, actor: Any, to: str, ids: Sequence[int] | None = None, match: selectors.MessageFilter | None = None,
    remote_addr: str = "",
) -> int:
    """Move the chosen messages to the queue ``to``, ready at once; in-flight ones stay. Returns how many moved."""

    def check_target() -> None:
        if not isinstance(to, str) or not Queue.objects.filter(name=to).exists():
            raise ActionFailed(f"target queue {to!r} does not exist: pick an existing queue to move messages to")

    def move(queue: str, chunk: list[int]) -> int:
        if queue == to:
            return 0  # already there
        return engine.move_messages(queue, chunk, to=to)

    return _bulk(actor, Action.MOVE_MESSAGES, move, ids=ids, match=match, remote_addr=remote_addr,
                 detail={"to": to}, precheck=check_target)


def reveal_body(*, actor: Any, message_id: int, remote_addr: str = "") -> selectors.MessageDetail:
    """Show a message whose body the dashboard hides (``HIDE_BODIES``); the reveal is audited."""
    holder = Message.objects.filter(id=message_id).values_list("queue__name", flat=True).first() or ""

    def run() -> _Done:
        detail = selectors.get_message(message_id)
        if detail is None:
            raise NotFound(f"message {message_id} does not exist (acked, deleted or never sent)")
        return _Done(result=detail, count=1, message_ids=[message_id])

    return _perform(actor, Action.REVEAL_BODY, run, queue_name=holder, remote_addr=remote_addr,
                    message_ids=[message_id]).result


# -- redrive ----------------------------------------------------------------------------------------
_redrive_threads: dict[int, threading.Thread] = {}


def _run_redrive_thread(redrive_id: int) -> None:
    """Body of the background thread: its own database connection, closed at the end."""
    try:
        job = Redrive.objects.select_related("source", "destination").get(pk=redrive_id)
        engine.run_redrive(job)
    except Exception:
        # run_redrive has already marked the row failed with the error; the page shows it.
        logger.exception("redrive %s failed", redrive_id)
    finally:
        _redrive_threads.pop(redrive_id, None)
        close_old_connections()
        conf.db().close()


def start_redrive(
    *, actor: Any, queue: str, to: str | None = None, rate: float | None = None, limit: int | None = None,
    remote_addr: str = "", background: bool = True,
) -> Redrive:
    """Move dead letters of the dead-letter queue ``queue`` back: to ``to``, or each to the queue it died in.

    Paced at ``rate`` messages per second (None: as fast as it can), at most ``limit`` messages. The
    work runs in a background thread of this process once the transaction commits; the ``Redrive``
    row shows its progress and ``stop_redrive`` stops it from any process.
    ``background=False`` runs it in the calling thread (commands, tests).
    """

    def run() -> _Done:
        source = Queue.objects.filter(name=queue).first()
        if source is None:
            raise NotFound(f"queue {queue!r} does not exist")
        dest = None
        if to:
            dest = Queue.objects.filter(name=to).first()
            if dest is None:
                raise ActionFailed(f"target queue {to!r} does not exist: pick an existing queue or leave it empty")
            if dest.pk == source.pk:
                raise ActionFailed(f"cannot redrive {queue!r} into itself: pick another target")
        elif not Queue.objects.filter(dead_letter_queue=source).exists():
            raise ActionFailed(
                f"queue {queue!r} is not a dead-letter queue, so its messages have no queue to go back to: "
                "pick a target queue"
            )
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not rate >= 0.1):
            raise ActionFailed(f"rate must be at least 0.1 messages per second (or empty for full speed), got {rate!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ActionFailed(f"limit must be a whole number of at least 1 (or empty for all), got {limit!r}")
        # Only a running one blocks (once asked to stop it must not block a fresh start), and one whose
        # process died is given up first, so it cannot block either.
        engine.reap_redrives()
        if Redrive.objects.filter(source=source, state=RedriveState.RUNNING).exists():
            raise ActionFailed(f"a redrive of {queue!r} is already running: stop it first or wait for it")
        waiting = engine.queue_stats(queue).depth
        job = Redrive.objects.create(
            source=source, destination=dest, rate=float(rate) if rate is not None else None, limit=limit,
            total=min(waiting, limit) if limit else waiting, requested_by=_actor_fields(actor)["actor_name"],
        )
        if background:
            transaction.on_commit(lambda: _start_thread(job.pk))
        return _Done(result=job, count=job.total, detail={"redrive": job.pk, "to": to, "rate": rate,
                                                          "limit": limit})

    job = _perform(actor, Action.START_REDRIVE, run, queue_name=queue, remote_addr=remote_addr,
                   detail={"to": to, "rate": rate, "limit": limit}).result
    if not background:
        engine.run_redrive(Redrive.objects.select_related("source", "destination").get(pk=job.pk))
        job.refresh_from_db()
    return job


def _start_thread(redrive_id: int) -> None:
    thread = threading.Thread(
        target=_run_redrive_thread, args=(redrive_id,), name=f"mqadmin-redrive-{redrive_id}", daemon=True
    )
    _redrive_threads[redrive_id] = thread
    thread.start()


def stop_redrive(*, actor: Any, redrive_id: int, remote_addr: str = "") -> bool:
    """Ask a running redrive to stop after its current batch; False if it was not running."""
    row = Redrive.objects.select_related("source").filter(pk=redrive_id).first()

    def run() -> _Done:
        if row is None:
            raise NotFound(f"redrive {redrive_id} does not exist")
        engine.reap_redrives()  # one whose process died is failed rather than left "stopping" forever
        stopped = engine.stop_redrive(redrive_id)
        return _Done(result=stopped, count=int(stopped), detail={"redrive": redrive_id, "was_running": stopped})

    return _perform(actor, Action.STOP_REDRIVE, run, queue_name=row.source.name if row else "",
                    remote_addr=remote_addr).result


# -- database health --------------------------------------------------------------------------------
def cancel_backend(
    *, actor: Any, pid: int, mode: str = "terminate", backend_start: datetime | str | None = None,
    remote_addr: str = "",
) -> dict[str, object]:
    """End a session that holds the xmin horizon back (``mode="terminate"``: its transaction rolls back and
    its snapshot is released) or cancel its running query (``mode="cancel"``); see
    :func:`queues.health.end_backend` for what is refused. ``backend_start`` (the session's start as the
    operator saw it, ISO text from a form) guards against a reused pid. Needs ``purge_queues``: it can
    destroy another program's uncommitted work. Bad input is refused with :class:`ActionFailed`, audited."""

    def run() -> _Done:
        if mode not in ("terminate", "cancel"):
            raise ActionFailed(f"mode must be 'terminate' (end the session) or 'cancel' (its running query), "
                               f"got {mode!r}")
        started = backend_start
        if isinstance(started, str):
            try:
                started = datetime.fromisoformat(started) if started else None
            except ValueError:
                raise ActionFailed(f"backend_start must be the session's start time as the page showed it, "
                                   f"got {backend_start!r}") from None
        try:
            done = health.end_backend(pid, terminate=mode == "terminate", backend_start=started)
        except health.BackendNotFound as exc:
            raise NotFound(str(exc)) from None
        return _Done(result=done, count=1, detail=done)

    return _perform(actor, Action.CANCEL_BACKEND, run, remote_addr=remote_addr,
                    detail={"pid": pid, "mode": mode[:20]}).result
