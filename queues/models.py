"""The tables behind mqadmin's queues.

The engine (``queues.engine``) reads and writes these tables with hand-written SQL so that each state
change is one statement; the models exist for migrations, the Django admin and the dashboard's read
side. Nothing here holds engine logic. It is one module because Django looks for an app's models
here and its migrations read them as one state; each class is a table and nothing more.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from queues.fields import BigIntArrayField, JSONTextField


class QueueKind(models.TextChoices):
    """How a queue orders its messages."""

    STANDARD = "standard", "standard"
    """By priority, then roughly by send order; any number in flight."""
    FIFO = "fifo", "fifo"
    """Strictly in send order within a group key, one message of a group in flight at a time."""


class ExpiryAction(models.TextChoices):
    """What happens to a message whose time to live ran out before anyone received it."""

    DROP = "drop", "drop"
    """Deleted, counted as expired."""
    DEAD_LETTER = "dead_letter", "dead-letter"
    """Moved to the queue's dead-letter queue (dropped when it has none), counted as expired."""


class Overflow(models.TextChoices):
    """What a send to a queue at its ``max_length`` does (RabbitMQ's ``x-overflow``)."""

    REJECT = "reject", "reject"
    """The send fails with ``QueueFull``; nothing is written."""
    DROP_OLDEST = "drop_oldest", "drop oldest"
    """The oldest waiting messages go to the dead-letter queue (dropped when there is none) to make room."""


class Queue(models.Model):
    """A named line of messages and its settings (see DESIGN.md, *Words*)."""

    name = models.CharField(max_length=80, unique=True)
    kind = models.CharField(max_length=16, choices=QueueKind.choices, default=QueueKind.STANDARD)
    visibility_timeout = models.DurationField(default=timedelta(seconds=30))
    max_receives = models.PositiveIntegerField(
        default=5, help_text="Receives before a message is dead-lettered; 0 means never."
    )
    dead_letter_queue = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="dead_letter_sources"
    )
    default_delay = models.DurationField(default=timedelta(0))
    retention = models.DurationField(default=timedelta(days=4))
    max_message_size = models.PositiveIntegerField(default=256 * 1024)
    dedup_window = models.DurationField(default=timedelta(minutes=5))
    paused = models.BooleanField(default=False)
    # Flow limits (docs/flow-control.md); empty means no limit. A queue with either one claims through
    # queues.engine.flow_sql, which keeps its state in the queue's FlowLimit row.
    rate_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Deliveries per rate period.")
    rate_period = models.DurationField(null=True, blank=True)
    rate_burst = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most deliveries at once after a quiet spell; empty: one second's worth."
    )
    concurrency_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most messages of the queue in flight at once, across every worker."
    )
    limits_per_group = models.BooleanField(
        default=False, help_text="The limits apply to each group key separately (no group key: one group)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Flow control (docs/flow-control.md, "Expiry" and "Bounded queues"); db defaults, because the
    # engine's INSERTs name their columns and other code creates queues with the ORM.
    message_ttl = models.DurationField(
        null=True, blank=True,
        help_text="Default time to live of a message once available; empty: messages never expire.",
    )
    expiry_action = models.CharField(
        max_length=16, choices=ExpiryAction.choices, default=ExpiryAction.DROP, db_default=ExpiryAction.DROP,
        help_text="What happens to an expired message: dropped, or moved to the dead-letter queue.",
    )
    max_length = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most live messages the queue holds; empty: unbounded."
    )
    overflow = models.CharField(
        max_length=16, choices=Overflow.choices, default=Overflow.REJECT, db_default=Overflow.REJECT,
        help_text="What a send to a full queue does: refused, or the oldest waiting messages make room.",
    )
    # Health thresholds (queues/queue_health.py); NULL means the documented default (docs/dashboard.md).
    health_backing_up_after = models.DurationField(
        null=True, blank=True, help_text="Oldest ready message older than this: backing up. Empty: 2 min."
    )
    health_stalled_after = models.DurationField(
        null=True, blank=True,
        help_text="Ready work this old with no live worker, or nothing acked or failed for this long: stalled. "
                  "Empty: 5 min.",
    )
    health_dead_letter_window = models.DurationField(
        null=True, blank=True,
        help_text="More dead letters now than this long ago: dead letters growing. Empty: 15 min.",
    )
    health_retention_warning = models.DurationField(
        null=True, blank=True, help_text="Oldest message deleted by retention within this: retention risk. "
                                         "Empty: 1 day.",
    )

    class Meta:
        db_table = "queues_queue"
        ordering = ["name"]
        permissions = [
            ("view_dashboard", "Can view the queues dashboard"),
            ("operate_queues", "Can pause, resume, retry, move, redrive and edit queues"),
            ("purge_queues", "Can purge queues and delete messages and queues"),
            ("publish_messages", "Can publish messages"),
        ]

    def __str__(self) -> str:
        return self.name


class MessageState(models.TextChoices):
    """Where a live message is, derived from its columns at a moment ``now`` (never stored).

    The one vocabulary of message states: the browser's ``state:`` search, its state column, the
    overview's cards and :func:`queues.peek` (whose SQL, ``engine/sql.py`` ``PEEK``, spells the same
    rule) all say these four. Acked messages are *done*: deleted from this table, so not a state here.
    """

    READY = "ready", "ready"
    """Available (``available_at`` past) and not leased, including a lease that ran out, in an ordinary queue."""
    DELAYED = "delayed", "delayed"
    """Not available yet (``available_at`` ahead) and not leased: sent with a delay or nacked with one."""
    IN_FLIGHT = "in_flight", "in flight"
    """Leased to a worker: ``leased_until`` ahead is when the lease ends, ``receipt`` is its proof."""
    DEAD = "dead", "dead"
    """Available in a dead-letter queue (one that some queue names as its dead-letter queue)."""

    @classmethod
    def of(
        cls, *, leased_until: datetime | None, available_at: datetime, in_dead_letter_queue: bool, now: datetime
    ) -> MessageState:
        """The state of a message already read, from its columns (the rule of :class:`MessageQuerySet`)."""
        if leased_until is not None and leased_until > now:
            return cls.IN_FLIGHT
        if available_at > now:
            return cls.DELAYED
        return cls.DEAD if in_dead_letter_queue else cls.READY


def dead_letter_queue_ids() -> list[int]:
    """Ids of the queues that are some queue's dead-letter queue (what makes an available message dead)."""
    return list(
        Queue.objects.filter(dead_letter_queue__isnull=False).values_list("dead_letter_queue_id", flat=True).distinct()
    )


def _leased(now: datetime) -> Q:
    """In flight at ``now``: the ORM's spelling of ``engine.sql.LEASED``."""
    return Q(leased_until__gt=now)


class MessageQuerySet(models.QuerySet["Message"]):
    """``Message.objects``: state verbs, each a plain filter on ``leased_until``, ``available_at`` and the queue.

    ``now`` defaults to the present; pass one ``now`` to read several states of one moment. The
    dead-letter queues are read once per call (a short list), which keeps the filter an ``IN`` on
    ``queue_id`` that the ``(queue, available_at)`` index serves.
    """

    def in_states(self, *states: str, now: datetime | None = None) -> MessageQuerySet:
        """Messages in any of ``states`` (values of :class:`MessageState`) at ``now``."""
        now = now or timezone.now()
        dlq_ids: list[int] | None = None
        either = Q()
        leased = _leased(now)
        for state in dict.fromkeys(states):
            if state == MessageState.IN_FLIGHT:
                either |= leased
            elif state == MessageState.DELAYED:
                either |= Q(available_at__gt=now) & ~leased
            elif state in (MessageState.READY, MessageState.DEAD):
                dlq_ids = dead_letter_queue_ids() if dlq_ids is None else dlq_ids
                in_dlq = Q(queue_id__in=dlq_ids)
                either |= Q(available_at__lte=now) & ~leased & (in_dlq if state == MessageState.DEAD else ~in_dlq)
            else:
                raise ValueError(f"unknown message state {state!r}: use one of {', '.join(MessageState.values)}")
        return self.filter(either)

    def unleased(self, *, now: datetime | None = None) -> MessageQuerySet:
        """Messages nobody holds at ``now`` (any state but :attr:`MessageState.IN_FLIGHT`)."""
        return self.exclude(_leased(now or timezone.now()))

    def ready(self, *, now: datetime | None = None) -> MessageQuerySet:
        """Messages a receive could take now (:attr:`MessageState.READY`)."""
        return self.in_states(MessageState.READY, now=now)

    def delayed(self, *, now: datetime | None = None) -> MessageQuerySet:
        """Messages not available yet and not leased (:attr:`MessageState.DELAYED`)."""
        return self.in_states(MessageState.DELAYED, now=now)

    def in_flight(self, *, now: datetime | None = None) -> MessageQuerySet:
        """Messages leased to a worker (:attr:`MessageState.IN_FLIGHT`)."""
        return self.in_states(MessageState.IN_FLIGHT, now=now)

    def dead(self, *, now: datetime | None = None) -> MessageQuerySet:
        """Available messages in a dead-letter queue (:attr:`MessageState.DEAD`)."""
        return self.in_states(MessageState.DEAD, now=now)


class Message(models.Model):
    """A live message: ready, delayed, in flight, or dead (in a dead-letter queue).

    Acked messages are deleted: this table holds the backlog, not the history. The state is derived
    (:class:`MessageState`, the verbs of :class:`MessageQuerySet`): ``leased_until`` in the future means
    in flight; otherwise ``available_at`` in the future means delayed, and past means ready (including
    a lease that ran out), or dead in a dead-letter queue. A claim takes only messages whose
    ``available_at`` has passed and never moves it, so a message in flight is never delayed too.
    """

    id = models.BigAutoField(primary_key=True)
    # No index of its own: queues_msg_claim and queues_msg_avail lead with queue_id, and every index
    # of this table is written again at each receive (bench/ measured 12-17% of the server's work).
    # No foreign-key constraint either: PostgreSQL checks one row by row, and a send of 100 messages spent a
    # third of its time checking the same queue 100 times. Triggers check (and lock) each queue once per
    # statement instead, and refuse to delete a queue that still has messages (migration 0023).
    queue = models.ForeignKey(
        Queue, on_delete=models.CASCADE, related_name="messages", db_index=False, db_constraint=False
    )
    # json, not jsonb: the body comes back exactly as it was sent (key order, duplicate keys, the text
    # of a JSONText). Searches cast it to jsonb (queues.fields.JSONTextField).
    body = JSONTextField()
    headers = models.JSONField(default=dict)
    priority = models.SmallIntegerField(default=0)
    # NULL, not "": "no group" is what the fifo partial index leaves out, and standard queues send NULL.
    group_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    dedup_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    enqueued_at = models.DateTimeField()
    available_at = models.DateTimeField()
    receive_count = models.PositiveIntegerField(default=0)
    receipt = models.UUIDField(null=True, blank=True)
    # When the current lease ends (NULL: never leased, or its lease was ended by a nack or release).
    # No index covers it, nor the receipt or receive_count, so a lease is a heap-only (HOT) update
    # when its page has room (migration 0022: fillfactor 50 leaves that room). In-flight counts come
    # from queues_lease instead of an index.
    leased_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    history = models.JSONField(default=list, help_text="Errors of past attempts, newest last.")
    origin_queue = models.ForeignKey(
        Queue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False,
        help_text="For a dead letter: the queue it died in (redrive sends it back there).",
    )
    dead_at = models.DateTimeField(null=True, blank=True)
    # Written by the trigger queues_msg_sign_dead (migration 0015_dlq) when the message dies; never by Python.
    error_signature = models.TextField(  # noqa: DJ001
        null=True, blank=True, editable=False,
        help_text="For a dead letter: its error's signature (queues.deadletters), set by a trigger.",
    )
    # Set at send from a per-message or per-queue TTL; swept by the upkeep job "expiry", and a claim
    # drops a delivery past it (queues/engine/expiry.py). Also set to the present by a cancel.
    expires_at = models.DateTimeField(null=True, blank=True)
    # An operator asked to cancel it while in flight: the handler sees it (Delivery.cancel_requested).
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        db_table = "queues_message"
        indexes = [
            # Matches the standard claim: ORDER BY priority DESC, id with available_at <= now() checked
            # inside the index (a key column), so delayed rows cost no heap visit; the lease is checked on
            # the heap (in flight: a consumer's prefetch ahead of the ready rows, not the backlog).
            models.Index(fields=["queue", "-priority", "id", "available_at"], name="queues_msg_claim"),
            # The delayed count and the oldest ready age are range scans on this one. No lease column is
            # in any index (see leased_until).
            models.Index(fields=["queue", "available_at"], name="queues_msg_avail"),
            # Fifo: a loose index scan over group keys, then the head (lowest id) of each group.
            models.Index(
                fields=["queue", "group_key", "id"], name="queues_msg_fifo", condition=Q(group_key__isnull=False)
            ),
            # Only dead letters have an origin: the index stays as small as the dead-letter queues.
            models.Index(fields=["origin_queue"], name="queues_msg_origin", condition=Q(origin_queue__isnull=False)),
            # Dead letters only (queues.deadletters), so the hot path never writes them: newest first,
            # and grouped by origin and error signature (an index-only scan counts a group).
            models.Index(fields=["queue", "dead_at"], name="queues_msg_dead_at", condition=Q(dead_at__isnull=False)),
            models.Index(fields=["queue", "origin_queue", "error_signature", "dead_at"], name="queues_msg_dead_sig",
                         condition=Q(dead_at__isnull=False)),
            # Only messages with a TTL (or a cancel): the expiry sweep's range scan, empty otherwise.
            models.Index(fields=["expires_at"], name="queues_msg_expiry", condition=Q(expires_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"message {self.id} in {self.queue_id}"


class LeaseBatch(models.Model):
    """The messages one claim (or one extend) leased, until when: what the in-flight count reads.

    No index covers a message's lease (so that a lease is a heap-only update), so in-flight messages
    cannot be counted from an index. Each claim writes one row instead: its queue, the lease's end and
    the ids. A message is in flight if it is listed in a row whose ``until`` has not passed and its own
    ``leased_until`` has not passed either (an ack deletes it, a nack or release clears it). Counting
    probes the listed ids by primary key: the work follows the number in flight, never the backlog.
    Nothing updates these rows; prune, and every claim for its own queue now and then, delete those
    whose ``until`` has passed.
    """

    id = models.BigAutoField(primary_key=True)
    queue_id = models.BigIntegerField()
    until = models.DateTimeField()
    message_ids = BigIntArrayField()

    class Meta:
        db_table = "queues_lease"
        indexes = [models.Index(fields=["queue_id", "until"], name="queues_lease_live")]

    def __str__(self) -> str:
        return f"{len(self.message_ids)} leases of queue {self.queue_id} until {self.until}"


class FifoGroup(models.Model):
    """A fifo group's lease: which message of the group is in flight, and until when.

    The one authority on "this group has a message in flight". A group's head cannot tell it alone:
    a lower id can appear after a later message of the group was delivered (a producer's
    transaction committing late, a redrive or a move), and then looks like a ready head. A fifo
    claim locks this row and re-reads it at its latest version (``FOR UPDATE SKIP LOCKED``), so two
    claims never both see the group free. ``until`` follows the message's lease (claim, extend) and
    drops to the present when the message leaves the lease (ack, nack, release, delete, purge);
    ``until`` in the past means the group is free. A missing row means free too: claims create
    rows, prune deletes idle ones.
    """

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+", db_index=False)
    group_key = models.CharField(max_length=128)
    message_id = models.BigIntegerField(null=True, blank=True)
    until = models.DateTimeField()

    class Meta:
        db_table = "queues_group"
        constraints = [models.UniqueConstraint(fields=["queue", "group_key"], name="queues_group_key")]

    def __str__(self) -> str:
        return f"{self.queue_id}/{self.group_key}: {self.message_id} until {self.until}"


class QueueCounter(models.Model):
    """Per-queue running totals, split into slots so concurrent producers do not queue on one row.

    Readers sum the slots of a queue. ``depth`` is the number of live messages in the queue.
    """

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+")
    slot = models.SmallIntegerField()
    depth = models.BigIntegerField(default=0)
    sent = models.BigIntegerField(default=0)
    acked = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    dead = models.BigIntegerField(default=0)
    # Bumped only in slot 0 by flow control's statements (queues/engine/expiry.py), never by the hot
    # path, so the counter compaction (which folds the other slots) never has to carry them.
    expired = models.BigIntegerField(default=0, db_default=0)
    cancelled = models.BigIntegerField(default=0, db_default=0)
    overflowed = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        db_table = "queues_counter"
        constraints = [models.UniqueConstraint(fields=["queue", "slot"], name="queues_counter_slot")]

    def __str__(self) -> str:
        return f"{self.queue_id}/{self.slot}: depth {self.depth}"


class DedupEntry(models.Model):
    """A dedup id seen on a queue, kept for the queue's dedup window even after its message is gone."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+")
    dedup_id = models.CharField(max_length=128)
    message_id = models.BigIntegerField()
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "queues_dedup"
        constraints = [models.UniqueConstraint(fields=["queue", "dedup_id"], name="queues_dedup_key")]
        indexes = [models.Index(fields=["expires_at"], name="queues_dedup_expiry")]

    def __str__(self) -> str:
        return f"{self.dedup_id} -> {self.message_id}"


class Topic(models.Model):
    """A name that fans a published message out to every subscribed queue."""

    name = models.CharField(max_length=80, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "queues_topic"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    """A queue's subscription to a topic, optionally only for messages whose headers match ``filter``."""

    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions")
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="subscriptions")
    filter = models.JSONField(null=True, blank=True, help_text="Header values that must all match.")

    class Meta:
        db_table = "queues_subscription"
        constraints = [models.UniqueConstraint(fields=["topic", "queue"], name="queues_subscription_once")]

    def __str__(self) -> str:
        return f"{self.topic_id} -> {self.queue_id}"


class RedriveState(models.TextChoices):
    """Where a redrive is."""

    RUNNING = "running", "running"
    """Moving messages batch by batch."""
    STOPPING = "stopping", "stopping"
    """Asked to stop; stops after the current batch."""
    STOPPED = "stopped", "stopped"
    """Stopped by request before the dead-letter queue was empty."""
    FINISHED = "finished", "finished"
    """Moved everything that was asked."""
    FAILED = "failed", "failed"
    """Ended on an error; ``error`` says which."""


class Redrive(models.Model):
    """A redrive of dead letters back to a queue, at a chosen rate, stoppable from any process."""

    source = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="redrives")
    destination = models.ForeignKey(
        Queue, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Empty: each message goes back to the queue it died in.",
    )
    rate = models.FloatField(null=True, blank=True, help_text="Messages per second; empty for as fast as possible.")
    limit = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=RedriveState.choices, default=RedriveState.RUNNING)
    moved = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0, help_text="Dead letters when the redrive started.")
    error = models.TextField(blank=True, default="")
    requested_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Last sign of life of the process running it; one silent for REDRIVE_STALE_AFTER is failed.",
    )

    class Meta:
        db_table = "queues_redrive"
        ordering = ["-id"]
        constraints = [
            # One running redrive per source queue, whatever the timing: the engine's start_redrive
            # turns a violation into RedriveRunning (queues/engine/redrive.py).
            models.UniqueConstraint(
                fields=["source"], condition=models.Q(state="running"), name="queues_redrive_one_running"
            ),
        ]

    def __str__(self) -> str:
        return f"redrive {self.pk} ({self.state})"


class WorkerState(models.TextChoices):
    """The life of a worker process as its heartbeat row tells it."""

    LIVE = "live", "live"
    """Beating on time."""
    STOPPING = "stopping", "stopping"
    """Got a shutdown signal; finishing its in-flight messages."""
    STOPPED = "stopped", "stopped"
    """Exited cleanly."""
    DEAD = "dead", "dead"
    """Went silent; marked by another worker, its leases released."""


class Worker(models.Model):
    """The heartbeat row of one ``mq_worker`` process."""

    name = models.CharField(max_length=200, unique=True, help_text="host:pid:random, unique per process.")
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=16, choices=WorkerState.choices, default=WorkerState.LIVE)
    started_at = models.DateTimeField()
    last_beat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    processed = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    in_flight = models.IntegerField(default=0)
    held_receipts = models.JSONField(
        default=list, help_text="Receipts (id:token) of the leases it holds, released early if it dies."
    )
    handler_durations = models.JSONField(
        default=list, blank=True,
        help_text="Cumulative handler-duration histograms per queue and handler, written with each beat "
                  "(queues.metrics.durations); /metrics adds up every row.",
    )
    stop_requested_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Set when an operator asks this worker to stop; the worker reads it on its next beat, "
                  "finishes what it holds and exits.",
    )

    class Meta:
        db_table = "queues_worker"
        ordering = ["-last_beat_at"]
        indexes = [models.Index(fields=["state", "last_beat_at"], name="queues_worker_beat")]

    def __str__(self) -> str:
        return self.name


class HandlerDurationTotal(models.Model):
    """Handler-duration histograms of worker rows that were pruned, folded per queue and handler.

    Pruning a stopped worker's row must not make the ``/metrics`` histogram shrink: its totals land
    here in the same transaction as the delete (see ``queues.metrics.durations``).
    """

    queue_name = models.CharField(max_length=80)
    handler = models.CharField(max_length=255)
    series = models.JSONField(default=dict, help_text="Bounds, per-bucket counts, sum and count.")

    class Meta:
        db_table = "queues_handler_durations"
        constraints = [models.UniqueConstraint(fields=["queue_name", "handler"], name="queues_handler_durations_key")]

    def __str__(self) -> str:
        return f"{self.queue_name} {self.handler}"


class QueueSample(models.Model):
    """One reading of a queue's live counts, kept for history charts.

    ``resolution`` is the seconds the sample stands for: 1 s samples are downsampled into 60 s and
    3600 s ones and pruned, so a week of history stays small.
    """

    queue_name = models.CharField(max_length=80)
    at = models.DateTimeField()
    resolution = models.PositiveIntegerField(default=1)
    ready = models.BigIntegerField(default=0)
    delayed = models.BigIntegerField(default=0)
    in_flight = models.BigIntegerField(default=0)
    dead = models.BigIntegerField(default=0)
    oldest_ready_age = models.FloatField(null=True, blank=True)
    sent_total = models.BigIntegerField(default=0)
    acked_total = models.BigIntegerField(default=0)
    failed_total = models.BigIntegerField(default=0)

    class Meta:
        db_table = "queues_sample"
        indexes = [models.Index(fields=["queue_name", "resolution", "at"], name="queues_sample_series"),
                   models.Index(fields=["resolution", "at"], name="queues_sample_prune")]

    def __str__(self) -> str:
        return f"{self.queue_name} @ {self.at} ({self.resolution}s)"


class AuditEvent(models.Model):
    """Who did what to which queue or messages, when, from where, with what outcome."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The host's user model. No foreign-key constraint in the database: with MQADMIN["DATABASE"] the
    # audit log lives on another database than the users (actor_name keeps who it was either way).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False,
    )
    actor_name = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=64, db_index=True)
    queue_name = models.CharField(max_length=80, blank=True, default="", db_index=True)
    message_ids = models.JSONField(default=list, blank=True)
    count = models.IntegerField(default=0, help_text="Messages affected.")
    detail = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=16, default="ok", help_text="ok, denied or error.")
    error = models.TextField(blank=True, default="")
    remote_addr = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        db_table = "queues_audit"
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.queue_name} ({self.outcome})"


class TaskResult(models.Model):
    """The state of one ``django.tasks`` task run by mqadmin workers (see ``queues.tasks``)."""

    id = models.UUIDField(primary_key=True)
    backend = models.CharField(max_length=100, default="default")
    task_path = models.CharField(max_length=255)
    queue_name = models.CharField(max_length=80)
    message_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, db_index=True)
    priority = models.SmallIntegerField(default=0)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    run_after = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    return_value = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)
    worker_ids = models.JSONField(default=list, blank=True)

    class Meta:
        db_table = "queues_taskresult"
        indexes = [
            # Pruning finds expired results by finish time; unfinished ones are never pruned.
            models.Index(fields=["finished_at"], name="queues_taskresult_finished",
                         condition=models.Q(status__in=["SUCCESSFUL", "FAILED"])),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} {self.id} ({self.status})"


class Schedule(models.Model):
    """A periodic schedule: a message (or a ``django.tasks`` task) enqueued at each occurrence of a cron
    expression in a time zone (see ``queues/schedules.py`` and ``docs/flow-control.md``, *Schedules*).

    Each occurrence is enqueued once: the scheduler locks the row, sends, and moves ``next_run_at`` on
    in one transaction. Either ``queue`` + ``body`` (a message) or ``task_path`` (a task) is set.
    """

    name = models.CharField(max_length=80, unique=True)
    cron = models.CharField(max_length=120, help_text="Five fields (minute first) or six (second first).")
    timezone = models.CharField(max_length=64, default="UTC", help_text="An IANA zone the cron is read in.")
    queue = models.CharField(max_length=80, blank=True, default="", help_text="Where a message schedule sends.")
    body = models.TextField(blank=True, default="null", help_text="The message body as JSON text, sent as written.")
    headers = models.JSONField(default=dict, blank=True)
    task_path = models.CharField(max_length=255, blank=True, default="",
                                 help_text="A django.tasks task to enqueue instead of a message.")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    catch_up = models.BooleanField(
        default=True, help_text="After downtime, enqueue the latest missed occurrence once (else skip it).")
    paused = models.BooleanField(default=False)
    source = models.CharField(max_length=16, default="api",
                              help_text="api, settings (MQADMIN['SCHEDULES']) or code (@periodic).")
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True, help_text="The last occurrence enqueued.")
    last_message_id = models.BigIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "queues_schedule"
        ordering = ["name"]
        indexes = [
            # The scheduler's one query: active schedules whose next occurrence has come.
            models.Index(fields=["next_run_at"], name="queues_schedule_due", condition=Q(paused=False)),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron} {self.timezone})"


class FlowLimit(models.Model):
    """The state of a queue's rate and concurrency limits (or of one group key's, with ``limits_per_group``),
    locked and updated by every limited claim.

    ``tokens`` is the rate limit's bucket as of ``refilled_at`` (refilled from the elapsed time at each
    claim, capped at the burst). ``leases`` lists the leases granted through the limit that may still be in
    flight, each with the id of the transaction that granted it: a claim counts a lease as ended only
    when that transaction is visible in its own snapshot and the snapshot shows the lease gone (see
    ``queues.engine.flow_sql``). ``taken`` counts every delivery granted, for the dashboard.
    """

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+", db_index=False)
    # '' for the queue as a whole, or (limits per group) for messages without a group key.
    group_key = models.CharField(max_length=128, blank=True, default="")
    tokens = models.FloatField(default=0)
    refilled_at = models.DateTimeField()
    leases = models.JSONField(
        default=list, blank=True, help_text="Leases granted through the limit: [{id, receipt, xid}, ...]."
    )
    taken = models.BigIntegerField(default=0)

    class Meta:
        db_table = "queues_flow"
        constraints = [models.UniqueConstraint(fields=["queue", "group_key"], name="queues_flow_key")]

    def __str__(self) -> str:
        return f"flow of {self.queue_id}/{self.group_key}: {self.tokens:g} tokens, {len(self.leases)} leases"
