"""System checks: misconfiguration of mqadmin is reported when Django starts, with the fix.

``check_tasks_backend`` runs for each ``queues.tasks.QueuesBackend`` through Django's own
``django.tasks`` check; :func:`register_checks` (called by ``QueuesConfig.ready``) adds the checks
that look across settings.

IDs: ``queues.E001``-``E005`` for ``TASKS`` entries of the backend, ``queues.E010``-``E013`` for
``MQADMIN``, ``queues.E020``/``W020``-``W022`` for what live updates need (channel layer, ASGI server).
Each is listed with its fix in docs/settings.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from django.core import checks
from django.core.checks import CheckMessage, Error, Warning

from queues.engine.errors import InvalidQueueName, InvalidQueueSettings
from queues.engine.validation import clean_settings, validate_name

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
        clean_settings(plain)  # the engine's own validation, so the two never disagree
    except InvalidQueueSettings as exc:
        errors.append(Error(f"{label} is not valid: {exc}.", obj=backend, id="queues.E004"))
    dlq = value.get("dead_letter_queue", "")
    if dlq not in ("", None):
        try:
            validate_name(dlq, "dead-letter queue")
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
    errors: list[CheckMessage] = []
    for key in value:
        if key in DEFAULTS:
            continue
        close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        errors.append(Error(f"settings.MQADMIN has the unknown key {key!r}.",
                            hint=f"{hint}Known keys: {', '.join(sorted(DEFAULTS))} (see docs/settings.md).",
                            id="queues.E010"))
    return errors + _value_errors(value)


def _value_errors(value: Mapping[str, Any]) -> list[CheckMessage]:
    """Each known ``MQADMIN`` key has a value of its documented kind (so no request meets a bad one)."""
    errors: list[CheckMessage] = []

    def bad(key: str, want: str) -> None:
        errors.append(Error(f"settings.MQADMIN[{key!r}] = {value[key]!r} is not valid.",
                            hint=f"Use {want} (see docs/settings.md).", id="queues.E011"))

    for key in ("READ_ONLY", "HIDE_BODIES", "SAMPLER_ENABLED", "METRICS_PUBLIC"):
        if key in value and not isinstance(value[key], bool):
            bad(key, "True or False")
    if "PAGE_SIZE" in value and not (_is_int(value["PAGE_SIZE"]) and 1 <= value["PAGE_SIZE"] <= 1000):
        bad("PAGE_SIZE", "an integer from 1 to 1000")
    for key in ("SAMPLE_INTERVAL", "HEARTBEAT_INTERVAL", "WORKER_DEAD_AFTER", "REDRIVE_STALE_AFTER",
                "DB_SNAPSHOT_WARN_AFTER"):
        if key in value and not (_is_seconds(value[key], allow_zero=False) and value[key] <= 86_400):
            bad(key, "a number of seconds above 0 (at most 86400)")
    if "SOCKET_RECHECK_INTERVAL" in value and not (_is_seconds(value["SOCKET_RECHECK_INTERVAL"])
                                                    and value["SOCKET_RECHECK_INTERVAL"] <= 86_400):
        bad("SOCKET_RECHECK_INTERVAL", "a number of seconds from 0 to 86400")
    token = value.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or len(token) < 16 or token != token.strip()):
        bad("METRICS_TOKEN", "None or a string of at least 16 characters without surrounding spaces, e.g. "
                             "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    if "SAMPLE_RETENTION" in value:
        retention = value["SAMPLE_RETENTION"]
        if not (isinstance(retention, Mapping) and retention
                and all(_is_int(r) and r > 0 and _is_seconds(keep, allow_zero=False) for r, keep in retention.items())):
            bad("SAMPLE_RETENTION", "a dict of resolution seconds (int > 0) to seconds kept (> 0), e.g. {1: 7200}")
    if "HANDLERS" in value:
        handlers = value["HANDLERS"]
        if not (isinstance(handlers, Mapping) and all(isinstance(k, str) for k in handlers)):
            bad("HANDLERS", "a dict of queue names to dotted paths of handlers")
    if "DATABASE" in value:
        errors += _database_errors(value["DATABASE"])
    return errors


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _database_errors(alias: Any) -> list[CheckMessage]:
    from django.conf import settings

    if not isinstance(alias, str) or alias not in settings.DATABASES:
        return [Error(f"settings.MQADMIN['DATABASE'] = {alias!r} is not an alias of settings.DATABASES.",
                      hint=f"Use one of {', '.join(map(repr, settings.DATABASES))}.", id="queues.E012")]
    if alias != "default" and "queues.routers.QueuesRouter" not in [
        r if isinstance(r, str) else f"{type(r).__module__}.{type(r).__qualname__}"
        for r in getattr(settings, "DATABASE_ROUTERS", [])
    ]:
        return [Error(f"settings.MQADMIN['DATABASE'] = {alias!r} needs mqadmin's router.",
                      hint='Add "queues.routers.QueuesRouter" to DATABASE_ROUTERS, so the dashboard and the '
                           "admin read the same database as the engine.", id="queues.E013")]
    return []


def check_live_updates(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """What the dashboard's live updates need: a channel layer, and an ASGI server for the socket."""
    from django.conf import settings

    messages: list[CheckMessage] = []
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if not isinstance(layers, Mapping) or "default" not in layers:
        messages.append(Warning(
            "settings.CHANNEL_LAYERS has no 'default' layer: the dashboard's pages work, but they never go live.",
            hint='Add CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}} for one '
                 "web process, or channels_redis.core.RedisChannelLayer for several (docs/quickstart.md).",
            id="queues.W020",
        ))
    else:
        try:
            from channels.layers import get_channel_layer

            get_channel_layer()
        except Exception as exc:  # the layer's own import or config error, reported here instead of by daphne
            messages.append(Error(
                f"settings.CHANNEL_LAYERS['default'] cannot be loaded: {exc}",
                hint="Check its BACKEND path and CONFIG (channels-redis needs `pip install django-mqadmin[redis]`).",
                id="queues.E020",
            ))
    apps = list(settings.INSTALLED_APPS)
    if "daphne" in apps and "django.contrib.staticfiles" in apps and (
        apps.index("daphne") > apps.index("django.contrib.staticfiles")
    ):
        messages.append(Warning(
            "'daphne' comes after 'django.contrib.staticfiles' in INSTALLED_APPS, so `runserver` is not "
            "daphne's: the dashboard's socket answers 404 in development.",
            hint="Put 'daphne' first in INSTALLED_APPS.", id="queues.W021",
        ))
    if not getattr(settings, "ASGI_APPLICATION", None):
        messages.append(Warning(
            "settings.ASGI_APPLICATION is not set: the dashboard's live updates need an ASGI server and the "
            "socket route.",
            hint="Set ASGI_APPLICATION to your asgi.py's application and build it with "
                 "queues.asgi.dashboard_application (docs/quickstart.md).", id="queues.W022",
        ))
    return messages


def register_checks() -> None:
    """Register mqadmin's checks with Django's framework (called by ``QueuesConfig.ready``)."""
    # Django registers its django.tasks backend check only when django.tasks is imported, which a
    # project that never imports it (or imports it lazily) does not: import it so `check` always runs
    # the QueuesBackend checks (E001-E005).
    import django.tasks  # noqa: F401

    checks.register(check_task_queue_conflicts, checks.Tags.compatibility)
    checks.register(check_mqadmin_settings, checks.Tags.compatibility)
    checks.register(check_live_updates, checks.Tags.compatibility)
