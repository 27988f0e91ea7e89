"""System checks: misconfiguration of mqadmin is reported when Django starts, with the fix.

:func:`register_checks` (called by ``QueuesConfig.ready``) adds the checks of ``settings.MQADMIN``
and of what live updates need. The ``TASKS`` entries of ``queues.tasks.QueuesBackend`` are checked by
the backend itself (its ``check()``, see ``queues/tasks/checks.py``), run by Django's own tasks check.

IDs: ``queues.E001``-``E005`` for ``TASKS`` entries of the backend, ``queues.E010``-``E013`` for
``MQADMIN``, ``queues.E020``/``W020``-``W022`` for what live updates need (channel layer, ASGI server).
Each is listed with its fix in docs/settings.md.

Every ``MQADMIN`` key has a rule here that accepts only values its readers can use, so a bad value
fails ``manage.py check`` instead of a request: where a reader already validates (the sampler's
``retention()`` and ``sample_interval()``), the check calls that reader, so the two never disagree.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

# Imported so that Django registers its django.tasks check, which runs each QueuesBackend's check()
# (E001-E005), even in a project that never imports django.tasks itself.
import django.tasks  # noqa: F401
from channels.layers import get_channel_layer
from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Error, Warning

from queues import schedules
from queues.conf import DEFAULTS
from queues.engine import validate_name
from queues.engine.errors import InvalidQueueName
from queues.metrics import sampler

MAX_SECONDS = 86_400.0
"""The largest interval setting accepted (a day): larger ones are typos that would stall a loop."""

MIN_REDRIVE_STALE_AFTER = 2.0
"""Two of the engine's redrive beats (1 s each): ``reap_redrives`` refuses a shorter ``stale_after``."""

MAX_SAMPLE_RESOLUTION = 366 * 86_400
"""The coarsest sample resolution accepted: a year, well inside the ``resolution`` column."""

MAX_SAMPLE_KEPT = 100 * 365 * 86_400.0
"""The longest a sample may be kept: a century, inside PostgreSQL's interval and Python's timedelta."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds_between(value: Any, low: float, high: float, *, low_included: bool = True) -> bool:
    """Whether ``value`` is a real number of seconds (not a bool, NaN or infinity) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (low <= value if low_included else low < value) and value <= high


def _reader_error(read: Callable[[], Any]) -> str | None:
    """The ``ValueError`` message of a setting's own reader, or None if it accepts the value."""
    try:
        read()
    except ValueError as exc:
        return str(exc)
    return None


def check_mqadmin_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``settings.MQADMIN`` holds only known keys (a typo would otherwise be ignored silently)."""
    value = getattr(settings, "MQADMIN", {})
    if not isinstance(value, Mapping):
        return [
            Error(f"settings.MQADMIN must be a dict, got {value!r}.", hint="See docs/settings.md.", id="queues.E010")
        ]
    errors: list[CheckMessage] = []
    for key in value:
        if key in DEFAULTS:
            continue
        close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        errors.append(
            Error(
                f"settings.MQADMIN has the unknown key {key!r}.",
                hint=f"{hint}Known keys: {', '.join(sorted(DEFAULTS))} (see docs/settings.md).",
                id="queues.E010",
            )
        )
    return errors + _value_errors(value)


def _value_errors(value: Mapping[str, Any]) -> list[CheckMessage]:
    """Each known ``MQADMIN`` key has a value of its documented kind (so no request meets a bad one)."""
    errors: list[CheckMessage] = []

    def bad(key: str, want: str, why: str = "") -> None:
        errors.append(
            Error(
                f"settings.MQADMIN[{key!r}] = {value[key]!r} is not valid{why}.",
                hint=f"Use {want} (see docs/settings.md).",
                id="queues.E011",
            )
        )

    for key in ("READ_ONLY", "HIDE_BODIES", "SAMPLER_ENABLED", "METRICS_PUBLIC", "ASYNC_COMMIT_LEASES"):
        if key in value and not isinstance(value[key], bool):
            bad(key, "True or False")
    if "PAGE_SIZE" in value and not (_is_int(value["PAGE_SIZE"]) and 1 <= value["PAGE_SIZE"] <= 1000):
        bad("PAGE_SIZE", "an integer from 1 to 1000")
    if "DB_SNAPSHOT_WARN_AFTER" in value and not _seconds_between(
        value["DB_SNAPSHOT_WARN_AFTER"], 0, MAX_SECONDS, low_included=False
    ):
        bad("DB_SNAPSHOT_WARN_AFTER", "a number of seconds above 0 (at most 86400)")
    # The minimums are the worker's own (WorkerConfig refuses a shorter heartbeat or dead-after).
    for key, low in (
        ("HEARTBEAT_INTERVAL", 0.1),
        ("WORKER_DEAD_AFTER", 0.5),
        ("REDRIVE_STALE_AFTER", MIN_REDRIVE_STALE_AFTER),
    ):
        if key in value and not _seconds_between(value[key], low, MAX_SECONDS):
            bad(key, f"a number of seconds from {low:g} to 86400")
    if "SOCKET_RECHECK_INTERVAL" in value and not _seconds_between(value["SOCKET_RECHECK_INTERVAL"], 0, MAX_SECONDS):
        bad("SOCKET_RECHECK_INTERVAL", "a number of seconds from 0 to 86400")
    token = value.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or len(token) < 16 or token != token.strip()):
        bad(
            "METRICS_TOKEN",
            "None or a string of at least 16 characters without surrounding spaces, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    if "SAMPLE_INTERVAL" in value and (why := _reader_error(sampler.sample_interval)):
        bad("SAMPLE_INTERVAL", "a number of seconds from 0.1 to 60", f": {why}")
    if "SAMPLE_RETENTION" in value:
        errors += _sample_retention_errors(value["SAMPLE_RETENTION"])
    if "HANDLERS" in value:
        errors += _handlers_errors(value["HANDLERS"])
    if "DATABASE" in value:
        errors += _database_errors(value["DATABASE"])
    interval = value.get("SCHEDULER_INTERVAL")
    if "SCHEDULER_INTERVAL" in value and not (
        _seconds_between(interval, 0.1, 3600) or _seconds_between(interval, 0, 0)
    ):
        bad("SCHEDULER_INTERVAL", "a number of seconds from 0.1 to 3600, or 0 for no scheduler in this process")
    if "SCHEDULES" in value:
        errors += _schedules_errors(value["SCHEDULES"])
    return errors


def _schedules_errors(value: Any) -> list[CheckMessage]:
    """``MQADMIN["SCHEDULES"]``: a dict of valid schedule names to specs :mod:`queues.schedules` accepts."""
    hint = ('Use {"name": {"cron": "0 3 * * *", "queue": "reports", "body": {...}}} or {"name": {"cron": ..., '
            '"task": "app.tasks.report"}} (see docs/flow-control.md, "Schedules").')
    if not isinstance(value, Mapping):
        return [Error(f"settings.MQADMIN['SCHEDULES'] = {value!r} is not valid: it must be a dict.", hint=hint,
                      id="queues.E011")]
    errors: list[CheckMessage] = []
    for name, spec in value.items():
        try:
            schedules.check_name(name)
            schedules.check_spec(name, spec)
        except ValueError as exc:
            errors.append(Error(f"settings.MQADMIN['SCHEDULES'][{name!r}] is not valid: {exc}.", hint=hint,
                                id="queues.E011"))
    return errors


def _sample_retention_errors(retention: Any) -> list[CheckMessage]:
    """The sampler's own rule (1 s kept, each resolution a multiple of the finer), plus finite bounds."""
    why = _reader_error(sampler.retention)
    if why is None and not all(
        r <= MAX_SAMPLE_RESOLUTION and _seconds_between(keep, 0, MAX_SAMPLE_KEPT) for r, keep in retention.items()
    ):
        why = (
            f"resolutions are at most {MAX_SAMPLE_RESOLUTION} seconds and samples are kept at most "
            f"{MAX_SAMPLE_KEPT:.0f} seconds (a finite number)"
        )
    if why is None:
        return []
    return [
        Error(
            f"settings.MQADMIN['SAMPLE_RETENTION'] = {retention!r} is not valid: {why}.",
            hint="Use a dict of resolution seconds (whole, 1 first, each a multiple of the one before) "
            "to seconds kept (> 0), e.g. {1: 7200, 60: 172800} (see docs/settings.md).",
            id="queues.E011",
        )
    ]


def _handlers_errors(handlers: Any) -> list[CheckMessage]:
    hint = (
        'Use a dict of queue names to dotted paths of handlers, e.g. {"orders": "shop.handlers.handle_order"} '
        "(see docs/settings.md)."
    )
    if not isinstance(handlers, Mapping):
        return [Error(f"settings.MQADMIN['HANDLERS'] = {handlers!r} is not valid.", hint=hint, id="queues.E011")]
    errors: list[CheckMessage] = []
    for queue, path in handlers.items():
        try:
            validate_name(queue)
        except InvalidQueueName as exc:
            errors.append(
                Error(
                    f"settings.MQADMIN['HANDLERS'] has the key {queue!r}, which is no queue name: {exc}.",
                    hint=hint,
                    id="queues.E011",
                )
            )
        if not isinstance(path, str) or "." not in path.strip("."):
            errors.append(
                Error(
                    f"settings.MQADMIN['HANDLERS'][{queue!r}] = {path!r} is not a dotted path.",
                    hint=hint,
                    id="queues.E011",
                )
            )
    return errors


def _database_errors(alias: Any) -> list[CheckMessage]:
    if not isinstance(alias, str) or alias not in settings.DATABASES:
        return [
            Error(
                f"settings.MQADMIN['DATABASE'] = {alias!r} is not an alias of settings.DATABASES.",
                hint=f"Use one of {', '.join(map(repr, settings.DATABASES))}.",
                id="queues.E012",
            )
        ]
    if alias != "default" and "queues.routers.QueuesRouter" not in [
        r if isinstance(r, str) else f"{type(r).__module__}.{type(r).__qualname__}"
        for r in getattr(settings, "DATABASE_ROUTERS", [])
    ]:
        return [
            Error(
                f"settings.MQADMIN['DATABASE'] = {alias!r} needs mqadmin's router.",
                hint='Add "queues.routers.QueuesRouter" to DATABASE_ROUTERS, so the dashboard and the '
                "admin read the same database as the engine.",
                id="queues.E013",
            )
        ]
    return []


def check_live_updates(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """What the dashboard's live updates need: a channel layer, and an ASGI server for the socket."""
    messages: list[CheckMessage] = []
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if not isinstance(layers, Mapping) or "default" not in layers:
        messages.append(
            Warning(
                "settings.CHANNEL_LAYERS has no 'default' layer: the dashboard's pages work, but they never go live.",
                hint='Add CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}} for one '
                "web process, or channels_redis.core.RedisChannelLayer for several (docs/quickstart.md).",
                id="queues.W020",
            )
        )
    else:
        try:
            get_channel_layer()
        except Exception as exc:  # the layer's own import or config error, reported here instead of by daphne
            messages.append(
                Error(
                    f"settings.CHANNEL_LAYERS['default'] cannot be loaded: {exc}",
                    hint="Check its BACKEND path and CONFIG "
                    "(channels-redis needs `pip install django-mqadmin[redis]`).",
                    id="queues.E020",
                )
            )
    apps = list(settings.INSTALLED_APPS)
    if (
        "daphne" in apps
        and "django.contrib.staticfiles" in apps
        and (apps.index("daphne") > apps.index("django.contrib.staticfiles"))
    ):
        messages.append(
            Warning(
                "'daphne' comes after 'django.contrib.staticfiles' in INSTALLED_APPS, so `runserver` is not "
                "daphne's: the dashboard's socket answers 404 in development.",
                hint="Put 'daphne' first in INSTALLED_APPS.",
                id="queues.W021",
            )
        )
    if not getattr(settings, "ASGI_APPLICATION", None):
        messages.append(
            Warning(
                "settings.ASGI_APPLICATION is not set: the dashboard's live updates need an ASGI server and the "
                "socket route.",
                hint="Set ASGI_APPLICATION to your asgi.py's application and build it with "
                "queues.asgi.dashboard_application (docs/quickstart.md).",
                id="queues.W022",
            )
        )
    return messages


def register_checks() -> None:
    """Register mqadmin's checks with Django's framework (called by ``QueuesConfig.ready``)."""
    checks.register(check_mqadmin_settings, checks.Tags.compatibility)
    checks.register(check_live_updates, checks.Tags.compatibility)
