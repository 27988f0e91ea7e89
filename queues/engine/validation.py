"""What the engine accepts: names, limits, value checks and the encoding of bodies and headers.

Every limit of a queue setting or a message lives here, so the engine, the dashboard's forms
(``queues.forms``) and the start-up checks (``queues.checks``) apply the same bounds. The checks raise
the engine's own errors (``queues.engine.errors``): ``InvalidQueueSettings`` for a setting,
``InvalidMessage`` for a message, a plain ``ValueError`` for an argument of a call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from queues.engine import text
from queues.engine.errors import InvalidMessage, InvalidQueueName, InvalidQueueSettings
from queues.engine.limits import LIMIT_SETTINGS, clean_limit_settings
from queues.engine.types import JSONText

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
"""A queue or topic name: 1-80 characters of ``a-z 0-9 . _ -``, starting with a letter or digit."""
MAX_NAME_LENGTH = 80
PRIORITY_MIN, PRIORITY_MAX = -100, 100
MAX_BATCH = 10_000
"""Most messages one call sends, receives or redrives."""
MAX_KEY_LENGTH = 128
"""Longest group key or dedup id."""
INT_MAX, BIGINT_MAX = 2**31 - 1, 2**63 - 1
# A nack's error text is cut to this many characters (it is kept on the message and in its history).
MAX_ERROR_LENGTH = 8000
MIN_VISIBILITY_TIMEOUT = 0.1
MAX_VISIBILITY_TIMEOUT = 12 * 3600.0
MAX_DELAY = 15 * 24 * 3600.0
"""Longest delay of a message, and longest default delay of a queue: 15 days."""
MIN_RETENTION, MAX_RETENTION = 60.0, 365 * 24 * 3600.0
MAX_DEDUP_WINDOW = 7 * 24 * 3600.0
MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE = 16, 16 * 1024 * 1024
"""Bounds of a queue's ``max_message_size`` setting (bytes of body and headers)."""
HEALTH_SETTINGS = (
    "health_backing_up_after", "health_stalled_after", "health_dead_letter_window", "health_retention_warning",
)
"""A queue's health thresholds (seconds, a ``timedelta`` or None for the default; see queues/queue_health.py)."""
MIN_HEALTH_THRESHOLD, MAX_HEALTH_THRESHOLD = 1.0, 365 * 24 * 3600.0
MAX_WAIT = 3600.0
"""Longest a receive may wait for a message."""
MIN_REDRIVE_RATE = 0.1
"""Slowest redrive pace, in messages per second."""
MIN_TTL, MAX_TTL = 0.001, 365 * 24 * 3600.0
"""Bounds of a time to live (a message's ``ttl``, a queue's ``message_ttl``), in seconds."""
MAX_QUEUE_LENGTH = INT_MAX
"""Largest ``max_length`` of a queue (the column's bound)."""
DLQ_SUFFIX = ".dlq"
# Fifo claims walk at most this many groups per call; the walk resumes where it stopped next time.
FIFO_MAX_GROUPS = 1000


def validate_name(name: object, what: str = "queue") -> str:
    """Return ``name`` if it is a valid queue or topic name, else raise :class:`InvalidQueueName`."""
    # fullmatch: with match, "$" would also accept a trailing newline.
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidQueueName(
            f"invalid {what} name {name!r}: use 1-80 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit (for example 'orders' or 'billing.invoices')"
        )
    return name


def check_seconds(value: object, setting: str, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    """``value`` (seconds or a ``timedelta``) as float seconds within the bounds; else :class:`InvalidQueueSettings`."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, int) and abs(value) > BIGINT_MAX:  # isfinite() and float() overflow past a double
        raise InvalidQueueSettings(f"{setting} must be a number of seconds, got a {value.bit_length()}-bit integer")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidQueueSettings(f"{setting} must be a (finite) number of seconds, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise InvalidQueueSettings(f"{setting} must be at least {minimum:g}{upper} seconds, got {value!r}")
    return float(value)


def check_int(value: object, setting: str, *, minimum: int = 0, maximum: int = INT_MAX) -> int:
    """``value`` if it is an int (not a bool) within the bounds; else :class:`InvalidQueueSettings`."""
    # The bound is the column's (integer): past it PostgreSQL would answer with a DataError.
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidQueueSettings(f"{setting} must be an integer from {minimum} to {maximum}, got {value!r}")
    return value


def encode_body(body: Any) -> str:
    """The JSON text stored for ``body``: JSON text as sent for a :class:`JSONText`, else compact JSON."""
    if isinstance(body, JSONText):
        text.parse_json_text(body, "message body")
        return str(body)
    return text.encode_json(body, "message body")


def encode_headers(headers: Mapping[str, Any] | None) -> str:
    """The JSON text stored for ``headers`` (a dict of strings); :class:`InvalidMessage` if it is not one."""
    if headers is None:
        return "{}"
    if not isinstance(headers, Mapping):
        raise InvalidMessage(f"headers must be a dict of strings, got {headers!r}")
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidMessage(f"headers must map strings to strings, got {key!r}: {value!r}")
        text.check_text(key, "header name")
        text.check_text(value, f"header {key!r}")
    return text.encode_json(dict(headers), "headers")


def check_priority(priority: object) -> int:
    """``priority`` if it is an int from -100 to 100; else :class:`InvalidMessage`."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidMessage(f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}, got {priority!r}")
    return priority


def check_delay(delay: object) -> float | None:
    """A message delay as float seconds (None stays None); :class:`InvalidMessage` if out of range."""
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay != delay:
        raise InvalidMessage(f"delay must be a number of seconds, got {delay!r}")
    if delay < 0 or delay > MAX_DELAY:
        raise InvalidMessage(f"delay must be between 0 and {MAX_DELAY:g} seconds (15 days), got {delay!r}")
    return float(delay)


def check_ttl(ttl: object) -> float | None:
    """A message's time to live as float seconds (None stays None); :class:`InvalidMessage` if out of range."""
    if ttl is None:
        return None
    if isinstance(ttl, timedelta):
        ttl = ttl.total_seconds()
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
        raise InvalidMessage(f"ttl must be a number of seconds, got {ttl!r}")
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise InvalidMessage(f"ttl must be between {MIN_TTL:g} and {MAX_TTL:g} seconds (365 days), got {ttl!r}")
    return float(ttl)


def check_key(value: object, what: str) -> str | None:
    """A group key or dedup id (None stays None); :class:`InvalidMessage` if unusable."""
    if value is None:
        return None
    return text.check_text(value, what, min_length=1, max_length=MAX_KEY_LENGTH)


def check_ids(ids: Iterable[object]) -> list[int]:
    """Message ids as a list; ``ValueError`` if one is not a positive bigint."""
    out = []
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= BIGINT_MAX:
            raise ValueError(f"message ids must be integers from 1 to {BIGINT_MAX}, got {value!r}")
        out.append(value)
    return out


def receive_args(max_messages: object, visibility_timeout: object, wait: object) -> tuple[int, float | None, float]:
    """The arguments of a receive, checked: (max messages, lease seconds or None, seconds to wait)."""
    if isinstance(max_messages, bool) or not isinstance(max_messages, int) or not 1 <= max_messages <= MAX_BATCH:
        raise ValueError(f"max_messages must be an integer from 1 to {MAX_BATCH}, got {max_messages!r}")
    vt = None
    if visibility_timeout is not None:
        vt = check_seconds(
            visibility_timeout, "visibility_timeout", minimum=MIN_VISIBILITY_TIMEOUT, maximum=MAX_VISIBILITY_TIMEOUT
        )
    w = check_seconds(wait, "wait", maximum=MAX_WAIT)
    return max_messages, vt, w


def clean_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Validate queue settings given as keyword arguments; return model field values.

    ``InvalidQueueSettings`` names the first bad one. Used by ``create_queue``/``update_queue`` and by the
    start-up checks of ``MQADMIN["QUEUES"]``, so a setting is refused the same way everywhere.
    """
    # deferred: the models need the app registry, and the engine is importable before Django is set up
    from queues.models import QueueKind

    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "kind":
            if value not in QueueKind.values:
                raise InvalidQueueSettings(f"kind must be one of {', '.join(QueueKind.values)}, got {value!r}")
            out[key] = value
        elif key == "visibility_timeout":
            seconds = check_seconds(value, key, minimum=MIN_VISIBILITY_TIMEOUT, maximum=MAX_VISIBILITY_TIMEOUT)
            out[key] = timedelta(seconds=seconds)
        elif key in ("default_delay",):
            out[key] = timedelta(seconds=check_seconds(value, key, maximum=MAX_DELAY))
        elif key == "retention":
            out[key] = timedelta(seconds=check_seconds(value, key, minimum=MIN_RETENTION, maximum=MAX_RETENTION))
        elif key == "dedup_window":
            out[key] = timedelta(seconds=check_seconds(value, key, maximum=MAX_DEDUP_WINDOW))
        elif key == "max_receives":
            out[key] = check_int(value, key)
        elif key == "max_message_size":
            out[key] = check_int(value, key, minimum=MIN_MESSAGE_SIZE)
            if out[key] > MAX_MESSAGE_SIZE:
                raise InvalidQueueSettings(f"max_message_size must be at most 16 MiB, got {value!r}")
        elif key == "paused":
            if not isinstance(value, bool):
                raise InvalidQueueSettings(f"paused must be True or False, got {value!r}")
            out[key] = value
        elif key == "dead_letter_queue":
            out[key] = value
        elif key in LIMIT_SETTINGS:
            out.update(clean_limit_settings({key: value}))
        elif key == "message_ttl":
            out[key] = None if value is None else timedelta(
                seconds=check_seconds(value, key, minimum=MIN_TTL, maximum=MAX_TTL))
        elif key == "max_length":
            out[key] = None if value is None else check_int(value, key, minimum=1, maximum=MAX_QUEUE_LENGTH)
        elif key in ("expiry_action", "overflow"):
            # deferred: the models need the app registry (as QueueKind above)
            from queues.models import ExpiryAction, Overflow

            choices = (ExpiryAction if key == "expiry_action" else Overflow).values
            if value not in choices:
                raise InvalidQueueSettings(f"{key} must be one of {', '.join(choices)}, got {value!r}")
            out[key] = value
        elif key in HEALTH_SETTINGS:
            # None: back to the default (queues/queue_health.py DEFAULTS).
            out[key] = None if value is None else timedelta(
                seconds=check_seconds(value, key, minimum=MIN_HEALTH_THRESHOLD, maximum=MAX_HEALTH_THRESHOLD)
            )
        else:
            raise InvalidQueueSettings(f"unknown queue setting {key!r}")
    return out


__all__ = [
    "BIGINT_MAX", "DLQ_SUFFIX", "INT_MAX", "MAX_BATCH", "MAX_DEDUP_WINDOW", "MAX_DELAY", "MAX_ERROR_LENGTH",
    "MAX_KEY_LENGTH", "MAX_MESSAGE_SIZE", "MAX_NAME_LENGTH", "MAX_RETENTION", "MAX_VISIBILITY_TIMEOUT", "MAX_WAIT",
    "MIN_MESSAGE_SIZE", "MIN_REDRIVE_RATE", "MIN_RETENTION", "MIN_VISIBILITY_TIMEOUT", "PRIORITY_MAX", "PRIORITY_MIN",
    "validate_name",
]
# Flow control (docs/flow-control.md).
__all__ += ["MAX_QUEUE_LENGTH", "MAX_TTL", "MIN_TTL"]
