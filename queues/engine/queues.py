"""Queues and topics: create, ensure, get, list, update, delete, pause and resume a queue; subscribe
a queue to a topic, unsubscribe it, publish to a topic.

The models are imported inside the functions: ``queues.engine`` is importable before Django's app
registry is ready (``import queues`` must work then), and the models are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import IntegrityError

from queues import conf
from queues.engine import sql
from queues.engine.connection import clear_cache, queue_name, recovers_connection
from queues.engine.errors import InvalidQueueSettings, MessageTooLarge, QueueExists, QueueNotFound, TopicNotFound
from queues.engine.limits import apply_limits, check_limits
from queues.engine.validation import (
    DLQ_SUFFIX,
    MAX_NAME_LENGTH,
    check_delay,
    check_key,
    check_priority,
    clean_settings,
    encode_body,
    encode_headers,
    validate_name,
)

_UNSET: Any = object()


def _queue_model() -> Any:
    """The ``Queue`` model."""
    # deferred: the models need the app registry (see the module's docstring)
    from queues.models import Queue

    return Queue


def _resolve_dlq(name: str, dlq: Any, create: bool) -> Any:
    """The Queue model for a dead-letter setting: a name, None (no DLQ) or the default ``<name>.dlq``."""
    Queue = _queue_model()
    if dlq is None:
        return None
    if dlq is _UNSET:
        dlq = name + DLQ_SUFFIX
        if len(dlq) > MAX_NAME_LENGTH:
            raise InvalidQueueSettings(
                f"the default dead-letter queue name {dlq!r} is longer than 80 characters: "
                "pass dead_letter_queue='<shorter name>' or dead_letter_queue=None"
            )
    validate_name(dlq, "dead-letter queue")
    if dlq == name:
        raise InvalidQueueSettings(f"queue {name!r} cannot be its own dead-letter queue")
    target = Queue.objects.filter(name=dlq).first()
    if target is None:
        if not create:
            raise QueueNotFound(f"dead-letter queue {dlq!r} does not exist: create it first")
        target = Queue.objects.create(name=dlq, max_receives=0)
    return target


@recovers_connection
def create_queue(name: str, *, dead_letter_queue: str | None = _UNSET, **settings: Any):
    """Create a queue and return it (a ``queues.models.Queue``).

    Settings: ``kind`` ('standard' or 'fifo'), ``visibility_timeout``, ``max_receives`` (0: never
    dead-letter), ``default_delay``, ``retention``, ``max_message_size``, ``dedup_window`` (seconds or
    timedeltas), ``paused``; flow limits (standard queues, None for no limit): ``rate_limit`` ('100/s',
    '5000/min', '10/h'), ``rate_burst``, ``concurrency_limit``, ``limits_per_group`` (see docs/flow-control.md).
    ``dead_letter_queue`` defaults to ``<name>.dlq``, created if missing; ``None``
    means no dead-letter queue (messages are redelivered forever).
    """
    validate_name(name)
    fields = clean_settings(settings)
    Queue = _queue_model()
    with conf.atomic():
        if Queue.objects.filter(name=name).exists():
            raise QueueExists(f"queue {name!r} exists already: use update_queue to change it")
        dlq = _resolve_dlq(name, dead_letter_queue, create=True)
        check_limits(Queue(name=name, dead_letter_queue=dlq, **fields))
        try:
            with conf.atomic():
                queue = Queue.objects.create(name=name, dead_letter_queue=dlq, **fields)
        except IntegrityError:
            raise QueueExists(f"queue {name!r} exists already: use update_queue to change it") from None
        apply_limits(queue, rate_changed=True)
    clear_cache(name)
    return queue


@recovers_connection
def ensure_queue(name: str, **settings: Any):
    """Return the queue ``name``, creating it with ``settings`` if it does not exist."""
    Queue = _queue_model()
    queue = Queue.objects.filter(name=validate_name(name)).first()
    if queue is not None:
        return queue
    try:
        return create_queue(name, **settings)
    except QueueExists:
        return Queue.objects.get(name=name)


@recovers_connection
def get_queue(name: str):
    """The queue ``name`` (a ``queues.models.Queue``); :class:`QueueNotFound` if there is none."""
    Queue = _queue_model()
    queue = Queue.objects.filter(name=validate_name(name)).select_related("dead_letter_queue").first()
    if queue is None:
        raise QueueNotFound(f"queue {name!r} does not exist: create it first (queues.create_queue or mq_queue create)")
    return queue


@recovers_connection
def list_queues() -> list:
    """All queues, by name."""
    return list(_queue_model().objects.select_related("dead_letter_queue").order_by("name"))


@recovers_connection
def update_queue(name: str, **settings: Any):
    """Change settings of the queue ``name`` (same keywords as :func:`create_queue`); return it."""
    fields = clean_settings(settings)
    Queue = _queue_model()
    with conf.atomic():
        queue = Queue.objects.select_for_update().filter(name=validate_name(name)).first()
        if queue is None:
            raise QueueNotFound(f"queue {name!r} does not exist: create it first")
        if "dead_letter_queue" in fields:
            fields["dead_letter_queue"] = _resolve_dlq(name, fields["dead_letter_queue"], create=False)
        if "kind" in fields and fields["kind"] != queue.kind and queue.messages.exists():
            raise InvalidQueueSettings(
                f"queue {name!r} has messages: its kind can change only when it is empty (purge it first)"
            )
        rate_before = (queue.rate_limit, queue.rate_period, queue.rate_burst)
        per_group_before = queue.limits_per_group
        for key, value in fields.items():
            setattr(queue, key, value)
        check_limits(queue)
        queue.save()
        apply_limits(queue, rate_changed=(queue.rate_limit, queue.rate_period, queue.rate_burst) != rate_before,
                     per_group_changed=queue.limits_per_group != per_group_before)
    clear_cache(name)
    return queue


@recovers_connection
def delete_queue(name: str) -> int:
    """Delete the queue ``name`` and its messages; return how many messages went with it.

    Its dead-letter queue stays. A queue that is another queue's dead-letter queue is detached first.
    """
    Queue = _queue_model()
    with conf.atomic():
        queue = Queue.objects.select_for_update().filter(name=validate_name(name)).first()
        if queue is None:
            raise QueueNotFound(f"queue {name!r} does not exist")
        count = queue.messages.count()
        queue.delete()
    clear_cache(name)
    return count


def pause(name: str):
    """Stop deliveries from the queue ``name`` (sends are still accepted)."""
    return update_queue(name, paused=True)


def resume(name: str):
    """Resume deliveries from the queue ``name``."""
    return update_queue(name, paused=False)


# -- topics ---------------------------------------------------------------------------------------
@recovers_connection
def subscribe(topic: str, queue: str, *, filter: Mapping[str, str] | None = None):
    """Subscribe ``queue`` to ``topic`` (created if new); only messages whose headers contain all of
    ``filter`` are copied to it. Subscribing again replaces the filter. Returns the subscription."""
    # deferred: the models need the app registry (see the module's docstring)
    from queues.models import Subscription, Topic

    validate_name(topic, "topic")
    if filter is not None:
        encode_headers(filter)
        filter = dict(filter)
    target = get_queue(queue)
    with conf.atomic():
        t, _ = Topic.objects.get_or_create(name=topic)
        sub, _ = Subscription.objects.update_or_create(topic=t, queue=target, defaults={"filter": filter})
    return sub


@recovers_connection
def unsubscribe(topic: str, queue: str) -> bool:
    """Remove ``queue``'s subscription to ``topic``; False if there was none."""
    # deferred: the models need the app registry (see the module's docstring)
    from queues.models import Subscription

    validate_name(topic, "topic")
    validate_name(queue)
    deleted, _ = Subscription.objects.filter(topic__name=topic, queue__name=queue).delete()
    return bool(deleted)


@recovers_connection
def publish(
    topic: str,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    delay: float | timedelta | None = None,
    priority: int = 0,
    group: str | None = None,
) -> dict[str, int]:
    """Copy one message into every queue subscribed to ``topic`` whose filter matches, in one statement.

    Returns ``{queue name: message id}``; empty if nobody is subscribed (or no filter matched).
    Each copy is checked against the smallest max message size of the subscribed queues.
    """
    # deferred: the models need the app registry (see the module's docstring)
    from queues.models import Topic

    validate_name(topic, "topic")
    encoded = encode_body(body)
    encoded_headers = encode_headers(headers)
    topic_row = Topic.objects.filter(name=topic).first()
    if topic_row is None:
        raise TopicNotFound(f"topic {topic!r} does not exist: subscribe a queue to it first (queues.subscribe)")
    size = len(encoded.encode()) + len(encoded_headers.encode())
    smallest = min((s.queue.max_message_size for s in topic_row.subscriptions.select_related("queue")), default=None)
    if smallest is not None and size > smallest:
        raise MessageTooLarge(
            f"message of {size} bytes exceeds the max message size ({smallest} bytes) of a queue "
            f"subscribed to {topic!r}: send a smaller body"
        )
    params = {
        "topic": topic, "body": encoded, "headers": encoded_headers, "priority": check_priority(priority),
        "group": check_key(group, "group"), "delay": check_delay(delay),
    }
    with conf.db().cursor() as cur:
        cur.execute(sql.PUBLISH, params)
        rows = cur.fetchall()
    return {queue_name(queue_id): message_id for message_id, queue_id, _ in rows}


__all__ = [
    "create_queue", "delete_queue", "ensure_queue", "get_queue", "list_queues", "pause", "publish", "resume",
    "subscribe", "unsubscribe", "update_queue",
]
