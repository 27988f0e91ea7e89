"""mqadmin's settings: ``settings.MQADMIN`` (a dict) merged over the documented defaults below.

Read lazily through :func:`get`, so ``override_settings(MQADMIN={...})`` works in tests.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

DEFAULTS: dict[str, Any] = {
    # The database alias (a key of settings.DATABASES) that holds mqadmin's tables, sends, workers and
    # dashboard. Another alias than "default" needs "queues.routers.QueuesRouter" in DATABASE_ROUTERS;
    # sends then no longer join transactions on the default database (docs/settings.md).
    "DATABASE": "default",
    # Dashboard
    "READ_ONLY": False,  # disable every operator action for everyone
    "HIDE_BODIES": False,  # message bodies shown only on click (and the reveal is audited)
    "PAGE_SIZE": 50,  # rows per page in the message browser
    # An open dashboard socket re-checks its session and permission this often (seconds, on a push):
    # a revoked permission, a logout or a password change closes it with 4403. 0: on every push.
    "SOCKET_RECHECK_INTERVAL": 30.0,
    # Metrics
    "SAMPLE_INTERVAL": 1.0,  # seconds between samples of the live counts
    "SAMPLE_RETENTION": {1: 2 * 3600, 60: 2 * 24 * 3600, 3600: 30 * 24 * 3600},  # resolution -> seconds kept
    "SAMPLER_ENABLED": True,  # run the elected sampler inside web processes
    # Prometheus (/metrics, see docs/observability.md)
    # A scraper sending "Authorization: Bearer <this>" may read /metrics (compared in constant time).
    # None: only logged-in users with queues.view_dashboard (or everyone, with METRICS_PUBLIC).
    "METRICS_TOKEN": None,
    # True: anyone who can reach /metrics may read it, no token, no login. Only behind a private network.
    "METRICS_PUBLIC": False,
    # Database health (the Database page, mq_stats --database, mqadmin_db_* metrics)
    # A snapshot (open transaction) older than this many seconds that holds back vacuum gets a warning.
    "DB_SNAPSHOT_WARN_AFTER": 300.0,
    # Durability: a lease, ack, nack, extend or release (outside the caller's own transaction) commits
    # without waiting for the WAL flush; a server crash may then undo the last of them, which only
    # causes redeliveries (docs/engine.md, "What a server crash can do"). Sends always wait.
    "ASYNC_COMMIT_LEASES": True,
    # Workers
    "HANDLERS": {},  # {"queue name": "dotted.path.to.handler"}
    "HEARTBEAT_INTERVAL": 5.0,  # seconds between worker heartbeats
    "WORKER_DEAD_AFTER": 30.0,  # a worker silent this long is marked dead and its leases released
    # Redrives
    "REDRIVE_STALE_AFTER": 30.0,  # a running redrive silent this long lost its process: marked failed
    # Schedules (docs/flow-control.md, "Schedules")
    # {"name": {"cron": "0 3 * * *", "queue": "reports", "body": {...}, "timezone": "Europe/Paris"}} or
    # {"name": {"cron": ..., "task": "app.tasks.report", "args": [...]}}: written to the database by every scheduler.
    "SCHEDULES": {},
    # Seconds between two scheduler rounds in each worker and daphne process (one of them sends per
    # round); 0: this process runs no scheduler. The finest schedule is this coarse.
    "SCHEDULER_INTERVAL": 1.0,
}


def get(key: str) -> Any:
    """The value of one mqadmin setting."""
    if key not in DEFAULTS:
        raise KeyError(f"unknown mqadmin setting {key!r}; known: {', '.join(sorted(DEFAULTS))}")
    return getattr(settings, "MQADMIN", {}).get(key, DEFAULTS[key])


def database_alias() -> str:
    """The alias of the database that holds mqadmin's tables (``MQADMIN["DATABASE"]``)."""
    return str(get("DATABASE"))


def db() -> BaseDatabaseWrapper:
    """The Django connection (of this thread) to mqadmin's database."""
    return connections[database_alias()]


def atomic(**kwargs: Any) -> transaction.Atomic:
    """``transaction.atomic()`` on mqadmin's database."""
    return transaction.atomic(using=database_alias(), **kwargs)


def worker_stale_after() -> float:
    """Seconds without a heartbeat after which a worker no longer counts as online: two beats missed.

    The dashboard's worker list (``stale``), its counts and the sampler all use this one rule.
    """
    return 2 * float(get("HEARTBEAT_INTERVAL"))
