"""Settling: a handler's outcome recorded in the database, and the leases of running handlers kept.

Part of :class:`~queues.worker.runtime.WorkerProcess` (a base class of it, sharing its lock, its held
items and its counters; see runtime.py for the rules they keep). Outcomes arrive from any thread
(``_succeed``, ``_fail``); the settler thread acks them in batches (a finished handler's ack is flushed
within 50 ms), nacks failures with their backoff, extends leases that passed half their length (one
UPDATE for all of them), gives back messages that waited that long without starting, and abandons sync
handlers past their timeout.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import DatabaseError, connections

from queues import engine
from queues.engine.cancel import requested_among, settle_cancelled
from queues.engine.errors import Cancelled, LeaseExpired
from queues.worker.items import FINISHED, RELEASED, RUNNING, SETTLING, WAITING, Failure, HeldItem
from queues.worker.outcomes import decide_nack, timeout_error
from queues.worker.resilience import DB_RETRY_MAX, ConnectionCare, Outage, is_outage, one_line

log = logging.getLogger("queues.worker")

# A finished handler's ack waits at most this long for others to share its statement (the promise is
# 50 ms); it goes at once when the batch is full or nothing else is running.
ACK_LINGER = 0.01
# Leases are checked this often for extension, handlers for their timeout.
MAINTENANCE_INTERVAL = 0.1
# Running handlers' messages are looked up this often for an operator's cancel request (one
# primary-key query for all of them, only while handlers run).
CANCEL_POLL_INTERVAL = 1.0


class Settling:
    """The settling side of a :class:`~queues.worker.runtime.WorkerProcess`.

    Uses the process's ``_lock``, ``_settle`` (the settler waits on it), ``_wake`` (the main thread's),
    ``_held``, ``_acks``, ``_failures``, ``_acking``, ``_first_ack_at``, ``_ack_batch``,
    ``_settler_closing`` and counters; gives messages back with the process's ``_release`` and replaces
    an abandoned handler thread with the handler side's ``_handler_thread``.
    """

    # -- outcomes (any thread) --
    def _succeed(self, item: HeldItem) -> None:
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

    def _finish_acked(self, item: HeldItem) -> None:
        with self._lock:
            item.state = FINISHED
            self._held.pop(item.delivery.receipt, None)
            self.processed += 1
            self.settled += 1
            self._wake.notify()

    def _finish_lost(self, item: HeldItem) -> None:
        """Forget an item whose lease is gone (called with the lock held): its message comes back."""
        item.state = FINISHED
        self._held.pop(item.delivery.receipt, None)
        self.lost += 1
        self._wake.notify()

    def _lose(self, item: HeldItem, why: str) -> None:
        with self._lock:
            logged = item.delivery.lease.lost
            item.delivery.lease.lost = True
            self._finish_lost(item)
        if not logged:
            log.warning("event=lease_lost queue=%s message=%d note=%s", item.queue.name, item.delivery.id, why)

    @staticmethod
    def _failure(item: HeldItem, exc: BaseException, reason: str | None = None, dead_letter: bool = False) -> Failure:
        """How a failed attempt is nacked (:func:`~queues.worker.outcomes.decide_nack`)."""
        nack = decide_nack(item.queue.spec, item.delivery.receive_count, exc, reason=reason, dead_letter=dead_letter)
        return Failure(item, nack)

    def _fail(
        self, item: HeldItem, exc: BaseException, *, reason: str | None = None, dead_letter: bool = False
    ) -> None:
        failure = self._failure(item, exc, reason, dead_letter)
        if isinstance(exc, Cancelled) or item.delivery.lease.cancel_requested:
            # Stopped on a cancel request (or failed after one): cancelled, never retried.
            failure = Failure(item, failure.nack, cancelled=True)
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
        next_cancel_look = 0.0
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
                    acks: list[HeldItem] = []
                    failures: list[Failure] = []
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
                        if time.monotonic() >= next_cancel_look:
                            next_cancel_look = time.monotonic() + CANCEL_POLL_INTERVAL
                            self._look_for_cancels()
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

    def _requeue(self, acks: list[HeldItem], failures: list[Failure]) -> None:
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

    def _flush_acks(self, acks: list[HeldItem]) -> None:
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

    def _nack(self, failure: Failure) -> bool:
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

    def _flush_failure(self, failure: Failure) -> None:
        item = failure.item
        if item.delivery.lease.lost:
            with self._lock:
                self._finish_lost(item)
            return
        if failure.cancelled:
            self._flush_cancelled(item)
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

    def _flush_cancelled(self, item: HeldItem) -> None:
        """Delete a message whose handler stopped on a cancel request (counted as cancelled)."""
        try:
            ended = settle_cancelled(item.delivery.receipt)
        except DatabaseError as exc:
            if is_outage(exc):
                raise
            self._lose(item, f"the database refused the cancellation ({one_line(exc)})")
            return
        if not ended:
            self._lose(item, "the handler stopped on a cancel request after the lease had run out")
            return
        with self._lock:
            item.state = FINISHED
            self._held.pop(item.delivery.receipt, None)
            self.settled += 1
            self._wake.notify()
        log.info("event=cancelled queue=%s message=%d note=the handler stopped on a cancel request",
                 item.queue.name, item.delivery.id)

    def _look_for_cancels(self) -> None:
        """Tell handlers whose message an operator asked to cancel (``delivery.cancel_requested``); one
        still waiting for a free handler then never starts (``HandlerRunner._cancelled_before_start``)."""
        with self._lock:
            held = {i.delivery.id: i for i in self._held.values()
                    if i.state in (WAITING, RUNNING) and not i.delivery.lease.lost
                    and not i.delivery.lease.cancel_requested}
        if not held:
            return
        # Waiting ones first: a handler that stops on its request must not pick up a waiting one
        # whose request this same look found but has not flagged yet.
        found = sorted(requested_among(held), key=lambda i: held[i].state is RUNNING)
        for message_id in found:
            held[message_id].delivery.lease.cancel_requested = True
        for message_id in found:
            log.info("event=cancel_requested queue=%s message=%d note=the handler sees delivery.cancel_requested",
                     held[message_id].queue.name, message_id)

    def _maintain(self) -> None:
        """Extend the leases of running handlers past half their length (one UPDATE for all of them per
        lease length), give back messages that waited that long without starting, and abandon
        handlers past their timeout."""
        now = time.monotonic()
        abandoned: list[HeldItem] = []
        unstarted: list[HeldItem] = []
        groups: dict[float, list[HeldItem]] = {}
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

    def _drop_stale(self, item: HeldItem) -> None:
        """An extension found the lease gone (it ran out, or an operator moved the message): tell the
        handler through ``delivery.lease_lost``, log it once, and never extend or settle it again."""
        with self._lock:
            if item.delivery.lease.lost:
                return
            item.delivery.lease.lost = True
        # The handler goes on (a thread cannot be stopped); its outcome is not recorded when it ends.
        log.warning("event=lease_lost queue=%s message=%d note=lease could not be extended; the message may be "
                    "delivered again; the handler sees delivery.lease_lost", item.queue.name, item.delivery.id)

    def _abandon_for_timeout(self, item: HeldItem) -> None:
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
