"""Every operator action: permission check, engine call and audit row, in one transaction.

Each service is ``verb_noun(*, actor, ..., remote_addr="")``. The actor is a Django user (the dashboard,
the admin) or a :class:`queues.permissions.CommandLineActor` (the ``mq_*`` commands); either way the row
is written by :func:`queues.audit.record`, so both have one shape:

- a denied attempt (missing permission, read-only mode) is audited with outcome ``denied`` and
  raises ``PermissionDenied`` with the reason;
- the engine call and the ``ok`` audit row commit together (``transaction.atomic``), so the log never
  claims an action that rolled back;
- an engine error rolls the action back, is audited with outcome ``error`` and raises
  :class:`ActionFailed` (a ``ValueError``) whose message the page shows with status 400;
  an unknown queue, message or redrive raises :class:`NotFound` (404).

It is one module on purpose: every operator action, side by side, each a permission check, an engine
call and an audit row through :func:`_perform`, so a reviewer sees at a glance that none skips them.
Reading what a page shows lives in ``queues.selectors``; the rules live in the engine.

Bulk message actions (delete, retry, move) take either ``ids`` or ``match`` (a
:class:`queues.search.MessageFilter`: every message matching the browser's current search).
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

from queues import audit, conf, deadletters, engine, health, schedules, search, selectors
from queues.engine import limits as engine_limits
from queues.engine.errors import QueueNotFound
from queues.models import Message, Queue, Redrive, Schedule, Worker
from queues.permissions import Action, denial_reason
from queues.worker import fleet

logger = logging.getLogger("queues.services")

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


def refuse(
    *, actor: Any, action: Action, error: str, queue: str = "", remote_addr: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Audit an attempt refused for its input (outcome ``error``) before any engine call.

    Views call it when a form or parameter of an action is invalid, so every attempt leaves its row,
    not only the ones that reach a service.
    """
    audit.record(actor, action, queue_name=queue, outcome="error", remote_addr=remote_addr, detail=detail, error=error)


def authorize(
    *, actor: Any, action: Action, queue: str = "", remote_addr: str = "", detail: dict[str, Any] | None = None,
) -> None:
    """Raise ``PermissionDenied`` (and audit the denied attempt) unless ``actor`` may do ``action``.

    Services call it themselves; views call it first when they must read a form before acting, so a
    malformed request from someone without the permission is a 403 on record, not a 400.
    """
    reason = denial_reason(actor, action)
    if reason is not None:
        audit.record(actor, action, queue_name=queue, outcome="denied", remote_addr=remote_addr, error=reason,
               detail=detail)
        raise PermissionDenied(reason)


def _perform(
    actor: Any, action: Action, fn: Callable[[], _Done], *, queue_name: str = "", remote_addr: str = "",
    detail: dict[str, Any] | None = None, message_ids: Sequence[int] = (),
) -> _Done:
    """Check permission, run ``fn`` and write the audit row; the whole contract of a service."""
    reason = denial_reason(actor, action)
    if reason is not None:
        audit.record(actor, action, queue_name=queue_name, outcome="denied", remote_addr=remote_addr,
               detail=detail, message_ids=message_ids, error=reason)
        raise PermissionDenied(reason)
    try:
        with conf.atomic():
            done = fn()
            audit.record(
                actor, action, queue_name=done.queue_name if done.queue_name is not None else queue_name,
                outcome="ok", remote_addr=remote_addr, count=done.count,
                message_ids=done.message_ids or message_ids, detail={**(detail or {}), **done.detail},
            )
    except PermissionDenied:
        raise
    except Exception as exc:
        # The action rolled back; record the attempt outside its transaction so the log keeps it.
        message = str(exc) if isinstance(exc, ValueError | LookupError) else f"{type(exc).__name__}: {exc}"
        audit.record(actor, action, queue_name=queue_name, outcome="error", remote_addr=remote_addr,
               detail=detail, message_ids=message_ids, error=message)
        if isinstance(exc, QueueNotFound | NotFound):
            raise NotFound(message) from exc
        if isinstance(exc, ValueError | LookupError):
            raise exc if isinstance(exc, ActionFailed) else ActionFailed(message) from exc
        raise
    return done


def _check_name(name: object, what: str = "queue") -> None:
    """Refuse a malformed queue name (NUL, spaces, 500 characters) before it reaches SQL: a 400, audited."""
    try:
        engine.validate_name(name, what)
    except ValueError as exc:
        raise ActionFailed(str(exc)) from None


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


# -- queue actions ----------------------------------------------------------------------------------
def pause_queue(*, actor: Any, queue: str, remote_addr: str = "") -> None:
    """Stop deliveries from ``queue`` (sends are still accepted)."""

    def run() -> _Done:
        _check_name(queue)
        engine.pause(queue)
        return _Done()

    _perform(actor, Action.PAUSE_QUEUE, run, queue_name=queue, remote_addr=remote_addr)


def resume_queue(*, actor: Any, queue: str, remote_addr: str = "") -> None:
    """Resume deliveries from ``queue``."""

    def run() -> _Done:
        _check_name(queue)
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
        "rate_limit": str(engine_limits.rate_of(q)) if q.rate_limit is not None else None,
        "rate_burst": q.rate_burst,
        "concurrency_limit": q.concurrency_limit,
        "limits_per_group": q.limits_per_group,
        "message_ttl": _seconds(q.message_ttl),
        "expiry_action": q.expiry_action,
        "max_length": q.max_length,
        "overflow": q.overflow,
        # Health thresholds (queues/queue_health.py): None is the default.
        "health_backing_up_after": _seconds(q.health_backing_up_after),
        "health_stalled_after": _seconds(q.health_stalled_after),
        "health_dead_letter_window": _seconds(q.health_dead_letter_window),
        "health_retention_warning": _seconds(q.health_retention_warning),
    }


class ConfirmationNeeded(ActionFailed):
    """A destructive action was asked for without its typed confirmation; ``impact`` says what it does."""

    def __init__(self, message: str, impact: selectors.SettingsImpact) -> None:
        super().__init__(message)
        self.impact = impact


def settings_impact(*, queue: str, settings: dict[str, Any]) -> selectors.SettingsImpact:
    """What saving ``settings`` on ``queue`` would destroy (nothing for an unknown or invalid queue)."""
    current = _existing_queue(queue)
    return selectors.get_settings_impact(current, settings) if current is not None else selectors.SettingsImpact()


def _existing_queue(name: str) -> Queue | None:
    try:
        engine.validate_name(name)
    except ValueError:
        return None
    return Queue.objects.select_related("dead_letter_queue").filter(name=name).first()


def update_queue_settings(
    *, actor: Any, queue: str, settings: dict[str, Any], confirm: str = "", remote_addr: str = "",
) -> Queue:
    """Change settings of ``queue`` (keywords of :func:`queues.update_queue`); the audit row holds the diff.

    A change that destroys messages (a shorter retention, see :class:`queues.selectors.SettingsImpact`)
    is the action ``shorten_retention``: it needs the purge permission, and ``confirm`` must repeat the
    queue's name, like a purge; without it :class:`ConfirmationNeeded` carries the consequence.
    """
    # Decided before the permission check, because the impact decides which permission applies;
    # re-checked inside the transaction, where the row is locked, so a concurrent change cannot slip by.
    action = (Action.SHORTEN_RETENTION if settings_impact(queue=queue, settings=settings).destructive
              else Action.UPDATE_QUEUE_SETTINGS)

    def run() -> _Done:
        _check_name(queue)
        before = (Queue.objects.select_for_update(of=("self",)).select_related("dead_letter_queue")
                  .filter(name=queue).first())
        if before is None:
            raise NotFound(f"queue {queue!r} does not exist")
        impact = selectors.get_settings_impact(before, settings)
        if impact.destructive and action is not Action.SHORTEN_RETENTION:
            raise ActionFailed(f"the retention of {queue!r} changed meanwhile: reload the page and try again")
        if impact.destructive and confirm != queue:
            raise ConfirmationNeeded(
                f"{impact.consequence()} Type the queue's name {queue!r} to confirm.", impact
            )
        old = _settings_snapshot(before)
        updated = engine.update_queue(queue, **settings)
        updated = Queue.objects.select_related("dead_letter_queue").get(pk=updated.pk)
        new = _settings_snapshot(updated)
        changes = {k: [old[k], new[k]] for k in new if old[k] != new[k]}
        detail: dict[str, Any] = {"changes": changes}
        if impact.destructive:
            detail.update(would_delete=impact.would_delete, consequence=impact.consequence())
        return _Done(result=updated, count=impact.would_delete, detail=detail)

    return _perform(actor, action, run, queue_name=queue, remote_addr=remote_addr,
                    detail={"settings": settings}).result


def purge_queue(*, actor: Any, queue: str, confirm: str, remote_addr: str = "") -> int:
    """Delete every message of ``queue``; ``confirm`` must repeat the queue's name. Returns how many."""

    def run() -> _Done:
        _check_name(queue)
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
        _check_name(queue)
        if confirm != queue:
            raise ActionFailed(f"type the queue's name {queue!r} to confirm deleting it (got {confirm!r})")
        return _Done(count=engine.delete_queue(queue))

    return _perform(actor, Action.DELETE_QUEUE, run, queue_name=queue, remote_addr=remote_addr).count


def publish_message(
    *, actor: Any, queue: str, body: Any, headers: dict[str, str] | None = None, delay: float | None = None,
    priority: int = 0, group: str | None = None, dedup_id: str | None = None, remote_addr: str = "",
    copied_from: int | None = None,
) -> int:
    """Send one message to ``queue`` as the operator; returns its id (the first one's, for a dedup repeat).

    ``copied_from``: the message this one was copied from ("publish a copy"), kept in the audit row.
    """

    def run() -> _Done:
        _check_name(queue)
        message_id = engine.send(
            queue, body, headers=headers, delay=delay, priority=priority, group=group, dedup_id=dedup_id
        )
        return _Done(result=message_id, count=1, message_ids=[message_id])

    detail = {"headers": headers or {}, "delay": delay, "priority": priority, "group": group, "dedup_id": dedup_id}
    if copied_from is not None:
        detail["copied_from"] = copied_from
    return _perform(actor, Action.PUBLISH_MESSAGE, run, queue_name=queue, remote_addr=remote_addr,
                    detail=detail).result


# -- message actions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bound:
    """What the operator confirmed of an "all matching" action: at most ``count`` messages, ids up to ``max_id``.

    Messages that start matching after the confirmation (new sends, moves) are left alone, so the
    action never does more than the page said it would.
    """

    count: int
    max_id: int

    def __post_init__(self) -> None:
        for name in ("count", "max_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
                raise ActionFailed(f"the confirmed {name.replace('_', ' ')} must be a whole number >= 0, got {value!r}")


def _typed_count_ok(confirm: str, count: int) -> bool:
    return confirm.replace(",", "").replace(" ", "").replace("_", "") == str(count)


def _selection(
    ids: Sequence[int] | None, match: search.MessageFilter | None, bound: Bound | None = None,
) -> list[list[tuple[int, int]]]:
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
        if bound is None:
            return list(search.iter_matching_ids(match))
        left, out = bound.count, []
        for batch in search.iter_matching_ids(match, max_id=bound.max_id):
            if left <= 0:
                break
            out.append(batch[:left])
            left -= len(out[-1])
        return out
    except search.SearchError as exc:
        raise ActionFailed(str(exc))


def _bulk(
    actor: Any, action: Action, per_queue: Callable[[str, list[int]], int], *, ids: Sequence[int] | None,
    match: search.MessageFilter | None, remote_addr: str, detail: dict[str, Any] | None = None,
    precheck: Callable[[], None] | None = None, bound: Bound | None = None,
) -> int:
    names = dict(Queue.objects.values_list("id", "name"))
    scope: dict[str, Any] = {"filter": match.text()} if match is not None else {}
    if bound is not None:
        scope["confirmed"] = {"count": bound.count, "max_id": bound.max_id}

    def run() -> _Done:
        if precheck is not None:
            precheck()
        total = 0
        touched: dict[str, int] = {}
        for batch in _selection(ids, match, bound):
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
    *, actor: Any, ids: Sequence[int] | None = None, match: search.MessageFilter | None = None,
    bound: Bound | None = None, confirm: str = "", remote_addr: str = "",
) -> int:
    """Delete the chosen messages (in flight ones too); returns how many existed.

    Deleting by ``match`` (every message a search matches, possibly thousands the operator never saw)
    needs the :class:`Bound` the confirmation showed, and ``confirm`` must repeat its count: the
    same weight as typing a queue's name to purge it.
    """

    def precheck() -> None:
        if match is None:
            return
        if bound is None:
            raise ActionFailed("deleting every matching message needs the count and highest id that its "
                               "confirmation page showed: open the confirmation again")
        if not _typed_count_ok(confirm, bound.count):
            raise ActionFailed(f"type the number of messages, {bound.count}, to confirm deleting them "
                               f"(got {confirm!r})")

    return _bulk(actor, Action.DELETE_MESSAGES, engine.delete_messages, ids=ids, match=match, remote_addr=remote_addr,
                 precheck=precheck, bound=bound)


def retry_messages(
    *, actor: Any, ids: Sequence[int] | None = None, match: search.MessageFilter | None = None,
    bound: Bound | None = None, remote_addr: str = "",
) -> int:
    """Make the chosen delayed or backing-off messages ready now; returns how many changed."""
    return _bulk(actor, Action.RETRY_MESSAGES, engine.retry_now, ids=ids, match=match, remote_addr=remote_addr,
                 bound=bound)


def move_messages(
    *, actor: Any, to: str, ids: Sequence[int] | None = None, match: search.MessageFilter | None = None,
    bound: Bound | None = None, remote_addr: str = "",
) -> int:
    """Move the chosen messages to the queue ``to``, ready at once; in-flight ones stay. Returns how many moved."""

    def check_target() -> None:
        _check_name(to, "target queue")
        if not Queue.objects.filter(name=to).exists():
            raise ActionFailed(f"target queue {to!r} does not exist: pick an existing queue to move messages to")

    def move(queue: str, chunk: list[int]) -> int:
        if queue == to:
            return 0  # already there
        return engine.move_messages(queue, chunk, to=to)

    return _bulk(actor, Action.MOVE_MESSAGES, move, ids=ids, match=match, remote_addr=remote_addr,
                 detail={"to": to}, precheck=check_target, bound=bound)


def cancel_messages(
    *, actor: Any, ids: Sequence[int] | None = None, match: search.MessageFilter | None = None,
    bound: Bound | None = None, queue: str | None = None, remote_addr: str = "",
) -> int:
    """Cancel the chosen messages: waiting ones are deleted (they never run), handlers of ones in flight
    are asked to stop (docs/flow-control.md, "Cancellation"). ``queue``: only messages of that queue
    (``NotFound`` if it does not exist). Returns how many were cancelled or asked."""
    asked: list[int] = []

    def precheck() -> None:
        if queue is not None:
            _check_name(queue)
            if not Queue.objects.filter(name=queue).exists():
                raise NotFound(f"queue {queue!r} does not exist")

    def cancel(name: str, chunk: list[int]) -> int:
        if queue is not None and name != queue:
            return 0
        result = engine.cancel(name, chunk)
        asked.extend(result.requested)
        return len(result.cancelled) + len(result.requested)

    return _bulk(actor, Action.CANCEL_MESSAGES, cancel, ids=ids, match=match, remote_addr=remote_addr, bound=bound,
                 detail={"in_flight_asked": asked}, precheck=precheck)


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


# -- dead-letter groups -----------------------------------------------------------------------------
def _group_detail(key: deadletters.GroupKey, as_of: datetime, count: int) -> dict[str, Any]:
    return {"dead_letter_group": {"queue": key.queue, "origin": key.origin, "signature": key.signature,
                                  "as_of": as_of.isoformat(), "confirmed_count": count}}


def _each_in_group(
    key: deadletters.GroupKey, as_of: datetime, count: int, act: Callable[[list[int]], int],
) -> _Done:
    """Apply ``act`` to the group's messages that died by ``as_of``, at most ``count`` of them, batch by batch
    inside the caller's transaction; the group is re-read here, so the ids are never a page's."""
    Bound(count=count, max_id=0)  # the same check of the confirmed count as "all matching" actions
    try:
        chosen = [i for batch in deadletters.iter_group_ids(key, as_of=as_of) for i in batch][:count]
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    total = sum(act(chosen[i : i + 5000]) for i in range(0, len(chosen), 5000))
    return _Done(count=total, message_ids=chosen[:1000], queue_name=key.queue)


def redrive_dead_letter_group(
    *, actor: Any, key: deadletters.GroupKey, as_of: datetime, count: int, remote_addr: str = "",
) -> int:
    """Send one group of dead letters (:class:`queues.deadletters.GroupKey`) back to the queue they died
    in, ready at once with a fresh receive count (the engine's move). Only the messages that died by
    ``as_of`` (when the confirmation was shown), at most ``count``: deaths after it are left alone.
    Audited as ``move_messages`` with the group in the detail. Returns how many moved."""

    def run() -> _Done:
        _check_name(key.queue)
        if not key.origin:
            raise ActionFailed("the queue these messages died in was deleted: move them to another queue from the "
                               "message browser, or delete them")
        _check_name(key.origin, "origin queue")
        done = _each_in_group(key, as_of, count, lambda ids: engine.move_messages(key.queue, ids, to=key.origin))
        done.detail = {"to": key.origin}
        return done

    return _perform(actor, Action.MOVE_MESSAGES, run, queue_name=key.queue, remote_addr=remote_addr,
                    detail=_group_detail(key, as_of, count)).count


def delete_dead_letter_group(
    *, actor: Any, key: deadletters.GroupKey, as_of: datetime, count: int, confirm: str, remote_addr: str = "",
) -> int:
    """Delete one group of dead letters for good: those that died by ``as_of``, at most ``count``, and
    ``confirm`` must repeat that count (the weight of deleting every matching message). Audited as
    ``delete_messages`` with the group in the detail. Returns how many were deleted."""

    def run() -> _Done:
        _check_name(key.queue)
        if not _typed_count_ok(confirm, count):
            raise ActionFailed(f"type the number of messages, {count}, to confirm deleting them (got {confirm!r})")
        return _each_in_group(key, as_of, count, lambda ids: engine.delete_messages(key.queue, ids))

    return _perform(actor, Action.DELETE_MESSAGES, run, queue_name=key.queue, remote_addr=remote_addr,
                    detail=_group_detail(key, as_of, count)).count


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
        # The engine checks the request, refuses a second running redrive of the queue and sizes it.
        job = engine.start_redrive(queue, to=to or None, rate=rate, limit=limit,
                                   requested_by=audit.actor_fields(actor)["actor_name"])
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


# -- workers ----------------------------------------------------------------------------------------
def stop_worker(*, actor: Any, worker_id: int, remote_addr: str = "") -> str:
    """Ask a running worker to stop gracefully; returns its name.

    The worker reads the request on its next heartbeat, stops claiming, finishes (acks or nacks) the
    messages it holds and exits, as on SIGTERM: nothing it holds is lost. A stopped or dead worker is
    refused (:class:`ActionFailed`), an unknown one is :class:`NotFound`.
    """
    row = Worker.objects.filter(pk=worker_id).values("name", "queues").first()

    def run() -> _Done:
        if row is None:
            raise NotFound(f"there is no worker {worker_id}: its row may have been pruned")
        if not fleet.request_stop(worker_id):
            raise ActionFailed(f"worker {row['name']} is not running: it has stopped already")
        return _Done(result=row["name"], count=1)

    detail = {"worker": row["name"] if row else worker_id, "queues": row["queues"] if row else []}
    return _perform(actor, Action.STOP_WORKER, run, remote_addr=remote_addr, detail=detail).result


# -- schedules --------------------------------------------------------------------------------------
def _schedule_action(
    actor: Any, action: Action, name: str, fn: Callable[[], _Done], remote_addr: str, detail: dict | None = None,
    queue: str = "",
) -> _Done:
    def run() -> _Done:
        try:
            return fn()
        except schedules.ScheduleNotFound as exc:
            raise NotFound(str(exc)) from None

    return _perform(actor, action, run, queue_name=queue or schedules.queue_of(name), remote_addr=remote_addr,
                    detail={"schedule": str(name)[:100], **(detail or {})})


def save_schedule(*, actor: Any, name: str, remote_addr: str = "", **spec: Any) -> Schedule:
    """Create or update the schedule ``name`` (keywords of :func:`queues.schedules.schedule`)."""

    def run() -> _Done:
        row = schedules.schedule(name, **spec)
        return _Done(result=row, queue_name=row.queue, detail={"task": row.task_path or None})

    shown = {k: v if isinstance(v, bool) else getattr(v, "module_path", None) or str(v)[:200] for k, v in spec.items()
             if k in ("cron", "queue", "timezone", "task", "catch_up", "paused") and v is not None}
    queue = spec.get("queue") if isinstance(spec.get("queue"), str) else ""
    return _schedule_action(actor, Action.SAVE_SCHEDULE, name, run, remote_addr, shown, queue).result


def pause_schedule(*, actor: Any, name: str, remote_addr: str = "") -> Schedule:
    """Stop enqueueing occurrences of the schedule ``name``."""
    return _schedule_action(actor, Action.PAUSE_SCHEDULE, name,
                            lambda: _Done(result=schedules.pause_schedule(name)), remote_addr).result


def resume_schedule(*, actor: Any, name: str, remote_addr: str = "") -> Schedule:
    """Enqueue occurrences of the schedule ``name`` again, from the next one after now."""
    return _schedule_action(actor, Action.RESUME_SCHEDULE, name,
                            lambda: _Done(result=schedules.resume_schedule(name)), remote_addr).result


def run_schedule(*, actor: Any, name: str, remote_addr: str = "") -> int:
    """Enqueue the schedule ``name``'s message (or task) once now; returns the message id."""

    def run() -> _Done:
        message_id = schedules.run_now(name)
        return _Done(result=message_id, count=1, message_ids=[message_id] if message_id else [])

    return _schedule_action(actor, Action.RUN_SCHEDULE, name, run, remote_addr).result


def delete_schedule(*, actor: Any, name: str, remote_addr: str = "") -> None:
    """Delete the schedule ``name`` (messages it sent stay); :class:`NotFound` if there is none."""

    def run() -> _Done:
        if not schedules.unschedule(name):
            raise NotFound(f"there is no schedule named {name!r} (list them with mq_schedule list)")
        return _Done()

    _schedule_action(actor, Action.DELETE_SCHEDULE, name, run, remote_addr)
