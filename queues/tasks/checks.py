"""The system checks of one ``QueuesBackend``, run by its ``check()`` (as Django's own backends do).

IDs: ``queues.E001`` options, ``E002`` QUEUES, ``E003`` a queue name, ``E004`` an option's value,
``E005`` two aliases sharing an mqadmin queue with different handler options. Each is listed with its
fix in docs/settings.md and docs/tasks.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.core.checks import CheckMessage, Error
from django.tasks.exceptions import InvalidTask

from queues.engine import core
from queues.engine.errors import InvalidQueueName, InvalidQueueSettings
from queues.tasks.options import OPTION_DEFAULTS, QUEUE_SETTING_KEYS

if TYPE_CHECKING:
    from queues.tasks.backend import QueuesBackend


def _is_seconds(value: Any, *, allow_zero: bool = True) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return False
    return value >= 0 if allow_zero else value > 0


def _options_errors(backend: QueuesBackend, where: str) -> list[CheckMessage]:
    options = backend.options
    if not isinstance(options, Mapping):
        return [Error(f"{where}['OPTIONS'] must be a dict, got {options!r}.",
                      hint="Use {} or a dict of the options in docs/tasks.md.", obj=backend, id="queues.E001")]
    errors: list[CheckMessage] = []
    for key in options:
        if key not in OPTION_DEFAULTS:
            errors.append(Error(
                f"{where}['OPTIONS'] has the unknown option {key!r}.",
                hint=f"Known options: {', '.join(sorted(OPTION_DEFAULTS))} (see docs/tasks.md).",
                obj=backend, id="queues.E001",
            ))
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
    for key, want in bad:
        errors.append(Error(f"{where}['OPTIONS'][{key!r}] = {s[key]!r} is not valid.",
                            hint=f"Use {want}.", obj=backend, id="queues.E004"))
    errors += _queue_settings_errors(backend, where)
    return errors


def _queue_settings_errors(backend: QueuesBackend, where: str) -> list[CheckMessage]:
    value = backend.settings["QUEUE_SETTINGS"]
    label = f"{where}['OPTIONS']['QUEUE_SETTINGS']"
    if not isinstance(value, Mapping):
        return [Error(f"{label} must be a dict, got {value!r}.",
                      hint="Use keywords of queues.create_queue, e.g. {'max_receives': 3}.",
                      obj=backend, id="queues.E004")]
    unknown = sorted(set(value) - QUEUE_SETTING_KEYS)
    if unknown:
        return [Error(f"{label} has unknown queue settings: {', '.join(map(repr, unknown))}.",
                      hint=f"Known: {', '.join(sorted(QUEUE_SETTING_KEYS))}.", obj=backend, id="queues.E004")]
    errors: list[CheckMessage] = []
    plain = {k: v for k, v in value.items() if k != "dead_letter_queue"}
    try:
        core._clean_settings(plain)  # the engine's own validation, so the two never disagree
    except InvalidQueueSettings as exc:
        errors.append(Error(f"{label} is not valid: {exc}.", obj=backend, id="queues.E004"))
    dlq = value.get("dead_letter_queue", "")
    if dlq not in ("", None):
        try:
            core.validate_name(dlq, "dead-letter queue")
        except InvalidQueueName as exc:
            errors.append(Error(f"{label} is not valid: {exc}.", obj=backend, id="queues.E004"))
    return errors


def _queues_errors(backend: QueuesBackend, where: str) -> list[CheckMessage]:
    raw = backend.raw_queues
    if not isinstance(raw, (list, tuple)) or not all(isinstance(q, str) for q in raw):
        return [Error(f"{where}['QUEUES'] must be a list of queue names, got {raw!r}.",
                      hint="For example ['default', 'emails'].", obj=backend, id="queues.E002")]
    if not raw:
        return [Error(f"{where}['QUEUES'] is empty.",
                      hint="List the queue names tasks may use, e.g. ['default'], so workers know what to serve.",
                      obj=backend, id="queues.E002")]
    if not isinstance(backend.settings["QUEUE_PREFIX"], str):
        return []  # reported as E004; every name would fail for the same reason
    errors: list[CheckMessage] = []
    makes_dlq = backend.settings["CREATE_QUEUES"] is True and "dead_letter_queue" not in (
        backend.settings["QUEUE_SETTINGS"] if isinstance(backend.settings["QUEUE_SETTINGS"], Mapping) else {}
    )
    for queue_name in raw:
        try:
            name = backend.queue_for(queue_name)
        except InvalidTask as exc:
            errors.append(Error(f"{where}['QUEUES'] has an unusable queue name: {exc}.",
                                hint="Use lowercase letters, digits, '.', '_' and '-', e.g. 'emails'.",
                                obj=backend, id="queues.E003"))
            continue
        if makes_dlq and len(name) + 4 > 80:
            errors.append(Error(
                f"{where}['QUEUES'] has {queue_name!r}: its dead-letter queue {name + '.dlq'!r} would be longer "
                "than 80 characters.",
                hint="Use a shorter queue name or QUEUE_PREFIX, or set QUEUE_SETTINGS['dead_letter_queue'].",
                obj=backend, id="queues.E003",
            ))
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
    errors: list[CheckMessage] = []
    options = backend.handler_options()
    for queue in backend.mq_queues():
        earlier = first.get(queue)
        if earlier is not None and earlier.handler_options() != options:
            errors.append(Error(
                f"TASKS[{earlier.alias!r}] and TASKS[{backend.alias!r}] both use the mqadmin queue {queue!r} "
                "with different BACKOFF, MAX_BACKOFF or TIMEOUT.",
                hint="Give them the same options, or a different QUEUE_PREFIX each.",
                obj=backend, id="queues.E005",
            ))
    return errors


def check_backend(backend: QueuesBackend, configured: Iterable[QueuesBackend]) -> list[CheckMessage]:
    """Every problem of one ``QueuesBackend``'s settings, and its conflicts with the ``configured`` ones."""
    where = f"TASKS[{backend.alias!r}]"
    return (_options_errors(backend, where) + _queues_errors(backend, where)
            + _conflict_errors(backend, configured))
