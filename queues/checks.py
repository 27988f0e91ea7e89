"""System checks: misconfiguration of mqadmin is reported when Django starts, with the fix.

``check_tasks_backend`` runs for each ``queues.tasks.QueuesBackend`` through Django's own
``django.tasks`` check; :func:`register_checks` (called by ``QueuesConfig.ready``) adds the checks
that look across settings.

IDs: ``queues.E001``-``E005`` for ``TASKS`` entries of the backend, ``queues.E010`` for ``MQADMIN``,
``queues.E011`` for its metrics and database-health settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core import checks
from django.core.checks import CheckMessage, Error

# The keywords of queues.create_queue that QUEUE_SETTINGS may hold.
QUEUE_SETTING_KEYS = frozenset({
    "kind", "visibility_timeout", "max_receives", "dead_letter_queue", "default_delay", "retention",
    "max_message_size", "dedup_window", "paused",
})


def _is_seconds(value: Any, *, allow_zero: bool = True) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return False
    return value >= 0 if allow_zero else value > 0


def _options_errors(backend: Any, where: str) -> list[CheckMessage]:
    from queues.tasks import OPTION_DEFAULTS

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


def _queue_settings_errors(backend: Any, where: str) -> list[CheckMessage]:
    from queues.engine import core
    from queues.engine.errors import InvalidQueueName, InvalidQueueSettings

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


def _queues_errors(backend: Any, where: str) -> list[CheckMessage]:
    from django.tasks.exceptions import InvalidTask

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


def check_tasks_backend(backend: Any) -> list[CheckMessage]:
    """Every problem of one ``QueuesBackend``'s settings."""
    where = f"TASKS[{backend.alias!r}]"
    return _options_errors(backend, where) + _queues_errors(backend, where)


def check_task_queue_conflicts(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Two ``QueuesBackend`` aliases may share an mqadmin queue only with the same handler options.

    A queue has one handler, so one alias's backoff or timeout would silently win over the other's.
    """
    from queues.tasks import queues_backends

    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    errors: list[CheckMessage] = []
    try:
        backends = list(queues_backends())
    except Exception:  # a backend that cannot even load is Django's own check's to report
        return []
    for backend in backends:
        options = backend.handler_options()
        for queue in backend.mq_queues():
            if queue in seen and seen[queue][1] != options:
                errors.append(Error(
                    f"TASKS[{seen[queue][0]!r}] and TASKS[{backend.alias!r}] both use the mqadmin queue {queue!r} "
                    "with different BACKOFF, MAX_BACKOFF or TIMEOUT.",
                    hint="Give them the same options, or a different QUEUE_PREFIX each.",
                    id="queues.E005",
                ))
            seen.setdefault(queue, (backend.alias, options))
    return errors


def check_mqadmin_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``settings.MQADMIN`` holds only known keys (a typo would otherwise be ignored silently)."""
    from django.conf import settings

    from queues.conf import DEFAULTS

    value = getattr(settings, "MQADMIN", {})
    if not isinstance(value, Mapping):
        return [Error(f"settings.MQADMIN must be a dict, got {value!r}.", hint="See docs/settings.md.",
                      id="queues.E010")]
    return [
        Error(f"settings.MQADMIN has the unknown key {key!r}.",
              hint=f"Known keys: {', '.join(sorted(DEFAULTS))} (see queues/conf.py).", id="queues.E010")
        for key in value if key not in DEFAULTS
    ]


def check_observability_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``METRICS_TOKEN``, ``METRICS_PUBLIC`` and ``DB_SNAPSHOT_WARN_AFTER`` have usable values."""
    from queues import conf

    errors: list[CheckMessage] = []
    token = conf.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or len(token) < 16 or token != token.strip()):
        errors.append(Error(
            "MQADMIN['METRICS_TOKEN'] must be None or a string of at least 16 characters without surrounding spaces.",
            hint="Generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))'", id="queues.E011"))
    if not isinstance(conf.get("METRICS_PUBLIC"), bool):
        errors.append(Error(f"MQADMIN['METRICS_PUBLIC'] = {conf.get('METRICS_PUBLIC')!r} is not True or False.",
                            hint="Use False (the default) unless /metrics is reachable only from a private network.",
                            id="queues.E011"))
    if not _is_seconds(conf.get("DB_SNAPSHOT_WARN_AFTER"), allow_zero=False):
        errors.append(Error(f"MQADMIN['DB_SNAPSHOT_WARN_AFTER'] = {conf.get('DB_SNAPSHOT_WARN_AFTER')!r} is not "
                            "a positive number of seconds.", hint="The default is 300.", id="queues.E011"))
    return errors


def register_checks() -> None:
    """Register the checks that look across settings (the per-backend ones run via Django's)."""
    checks.register(check_task_queue_conflicts, checks.Tags.compatibility)
    checks.register(check_mqadmin_settings, checks.Tags.compatibility)
    checks.register(check_observability_settings, checks.Tags.compatibility)
