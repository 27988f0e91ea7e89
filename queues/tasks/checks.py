"""The system checks of one ``QueuesBackend``, run by its ``check()`` (as Django's own backends do).

IDs: ``queues.E001`` options, ``E002`` QUEUES, ``E003`` a queue name, ``E004`` an option's value,
``E005`` two aliases sharing an mqadmin queue with different handler options. Each is listed with its
fix in docs/settings.md and docs/tasks.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.core.checks import CheckMessage, Error
from django.tasks.exceptions import InvalidTask

from queues.engine.errors import InvalidQueueName, InvalidQueueSettings
from queues.engine.validation import clean_settings, validate_name
from queues.tasks.options import OPTION_DEFAULTS, QUEUE_SETTING_KEYS

if TYPE_CHECKING:
    from queues.tasks.backend import QueuesBackend


def _is_seconds(value: Any, *, allow_zero: bool = True) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= 0 if allow_zero else value > 0


def _error(backend: QueuesBackend, code: str, msg: str, hint: str | None = None) -> Error:
    return Error(msg, hint=hint, obj=backend, id=f"queues.{code}")


def _options_errors(backend: QueuesBackend, where: str) -> list[CheckMessage]:
    options = backend.options
    if not isinstance(options, Mapping):
        return [
            _error(
                backend,
                "E001",
                f"{where}['OPTIONS'] must be a dict, got {options!r}.",
                "Use {} or a dict of the options in docs/tasks.md.",
            )
        ]
    known = f"Known options: {', '.join(sorted(OPTION_DEFAULTS))} (see docs/tasks.md)."
    errors: list[CheckMessage] = [
        _error(backend, "E001", f"{where}['OPTIONS'] has the unknown option {key!r}.", known)
        for key in options
        if key not in OPTION_DEFAULTS
    ]
    s = backend.settings
    bad: list[tuple[str, str]] = []
    if not isinstance(s["QUEUE_PREFIX"], str):
        bad.append(("QUEUE_PREFIX", "a string such as 'tasks.' (or '' for none)"))
    if not isinstance(s["CREATE_QUEUES"], bool):
        bad.append(("CREATE_QUEUES", "True or False"))
    for key in ("BACKOFF", "MAX_BACKOFF"):
        if not _is_seconds(s[key]):
            bad.append((key, "a number of seconds >= 0"))
    if s["TIMEOUT"] is not None and not _is_seconds(s["TIMEOUT"], allow_zero=False):
        bad.append(("TIMEOUT", "a positive number of seconds, or None"))
    if s["RESULT_RETENTION"] is not None and not _is_seconds(s["RESULT_RETENTION"], allow_zero=False):
        bad.append(("RESULT_RETENTION", "a positive number of seconds, or None to keep results forever"))
    errors += [
        _error(backend, "E004", f"{where}['OPTIONS'][{key!r}] = {s[key]!r} is not valid.", f"Use {want}.")
        for key, want in bad
    ]
    return errors + _queue_settings_errors(backend, where)


def _queue_settings_errors(backend: QueuesBackend, where: str) -> list[CheckMessage]:
    value = backend.settings["QUEUE_SETTINGS"]
    label = f"{where}['OPTIONS']['QUEUE_SETTINGS']"
    if not isinstance(value, Mapping):
        return [
            _error(
                backend,
                "E004",
                f"{label} must be a dict, got {value!r}.",
                "Use keywords of queues.create_queue, e.g. {'max_receives': 3}.",
            )
        ]
    unknown = sorted(set(value) - QUEUE_SETTING_KEYS)
    if unknown:
        return [
            _error(
                backend,
                "E004",
                f"{label} has unknown queue settings: {', '.join(map(repr, unknown))}.",
                f"Known: {', '.join(sorted(QUEUE_SETTING_KEYS))}.",
            )
        ]
    errors: list[CheckMessage] = []
    plain = {k: v for k, v in value.items() if k != "dead_letter_queue"}
    try:
        clean_settings(plain)  # the engine's own validation, so the two never disagree
    except InvalidQueueSettings as exc:
        errors.append(_error(backend, "E004", f"{label} is not valid: {exc}."))
    dlq = value.get("dead_letter_queue", "")
    if dlq not in ("", None):
        try:
            validate_name(dlq, "dead-letter queue")
        except InvalidQueueName as exc:
            errors.append(_error(backend, "E004", f"{label} is not valid: {exc}."))
    return errors


def _queues_errors(backend: QueuesBackend, where: str) -> list[CheckMessage]:
    raw = backend.raw_queues
    if not isinstance(raw, (list, tuple)) or not all(isinstance(q, str) for q in raw):
        return [
            _error(
                backend,
                "E002",
                f"{where}['QUEUES'] must be a list of queue names, got {raw!r}.",
                "For example ['default', 'emails'].",
            )
        ]
    if not raw:
        return [
            _error(
                backend,
                "E002",
                f"{where}['QUEUES'] is empty.",
                "List the queue names tasks may use, e.g. ['default'], so workers know what to serve.",
            )
        ]
    if not isinstance(backend.settings["QUEUE_PREFIX"], str):
        return []  # reported as E004; every name would fail for the same reason
    errors: list[CheckMessage] = []
    queue_settings = backend.settings["QUEUE_SETTINGS"]
    makes_dlq = backend.settings["CREATE_QUEUES"] is True and "dead_letter_queue" not in (
        queue_settings if isinstance(queue_settings, Mapping) else {}
    )
    for queue_name in raw:
        try:
            name = backend.queue_for(queue_name)
        except InvalidTask as exc:
            errors.append(
                _error(
                    backend,
                    "E003",
                    f"{where}['QUEUES'] has an unusable queue name: {exc}.",
                    "Use lowercase letters, digits, '.', '_' and '-', e.g. 'emails'.",
                )
            )
            continue
        if makes_dlq and len(name) + 4 > 80:
            errors.append(
                _error(
                    backend,
                    "E003",
                    f"{where}['QUEUES'] has {queue_name!r}: its dead-letter queue {name + '.dlq'!r} would be longer "
                    "than 80 characters.",
                    "Use a shorter queue name or QUEUE_PREFIX, or set QUEUE_SETTINGS['dead_letter_queue'].",
                )
            )
    return errors


def _conflict_errors(backend: QueuesBackend, configured: Iterable[QueuesBackend]) -> list[CheckMessage]:
    """E005 for each of ``backend``'s queues that an earlier alias uses with other handler options.

    A queue has one handler, so one alias's backoff or timeout would silently win over the other's.
    Reported by the later alias only, so each shared queue is reported once.
    """
    first: dict[str, QueuesBackend] = {}
    for other in configured:
        if other.alias == backend.alias:
            break
        for queue in other.mq_queues():
            first.setdefault(queue, other)
    options = backend.handler_options()
    clashes = [
        (queue, first[queue])
        for queue in backend.mq_queues()
        if queue in first and first[queue].handler_options() != options
    ]
    return [
        _error(
            backend,
            "E005",
            f"TASKS[{earlier.alias!r}] and TASKS[{backend.alias!r}] both use the mqadmin queue {queue!r} "
            "with different BACKOFF, MAX_BACKOFF or TIMEOUT.",
            "Give them the same options, or a different QUEUE_PREFIX each.",
        )
        for queue, earlier in clashes
    ]


def check_backend(backend: QueuesBackend, configured: Iterable[QueuesBackend]) -> list[CheckMessage]:
    """Every problem of one ``QueuesBackend``'s settings, and its conflicts with the ``configured`` ones."""
    where = f"TASKS[{backend.alias!r}]"
    return _options_errors(backend, where) + _queues_errors(backend, where) + _conflict_errors(backend, configured)
