"""Database health: what keeps the queue tables lean or makes them grow, read from catalog views only.

A queue table is a churn table: every ack deletes a row and every receive rewrites one. Autovacuum
keeps it small, but only down to the *xmin horizon*: a dead row that some open snapshot might still see
stays on disk. One session left ``idle in transaction`` (or a replication slot nobody consumes) pins
the horizon, and the tables grow until it lets go. This module reads:

- per queue table (the tables of ``queues.models``): live and dead tuples, size on disk, last vacuum
  (``pg_stat_user_tables``, ``pg_total_relation_size``: counters and file sizes, no table scan);
- the sessions holding a snapshot or a transaction id in this database (``pg_stat_activity`` where
  ``backend_xmin`` or ``backend_xid`` is set), oldest first: the first one pins the horizon;
- replication slots with an ``xmin`` (``pg_replication_slots``).

Three statements on catalog views, cheap at 1 Hz whatever the backlog (docs/benchmarks.md). Used by the
Database page, ``mq_stats --database`` and ``/metrics`` (``mqadmin_db_*``). :func:`end_backend` signals a
holder; it is called only through ``queues.services.cancel_backend`` (permission and audit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.apps import apps

from queues import conf
from queues.formatting import format_age

TABLES_SQL = """
SELECT s.relname, s.n_live_tup, s.n_dead_tup, pg_total_relation_size(s.relid),
       s.last_autovacuum, s.last_vacuum, s.autovacuum_count,
       extract(epoch FROM statement_timestamp() - greatest(s.last_autovacuum, s.last_vacuum))
FROM pg_stat_user_tables s
WHERE s.relname = ANY(%(tables)s::text[]) AND s.schemaname = ANY(current_schemas(false))
ORDER BY pg_total_relation_size(s.relid) DESC, s.relname
"""

_SESSION_COLUMNS = """
SELECT a.pid, coalesce(a.usename, ''), coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''),
       coalesce(a.state, ''), a.backend_start, a.xact_start, a.query_start,
       extract(epoch FROM statement_timestamp() - a.xact_start),
       greatest(age(a.backend_xmin), age(a.backend_xid)),
       left(coalesce(a.query, ''), 500), coalesce(r.rolsuper, false), a.usename = current_user,
       coalesce(a.backend_type, '')
FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
"""

# Walsenders (hot_standby_feedback) have no database but hold the horizon of every one.
HOLDERS_SQL = _SESSION_COLUMNS + """
WHERE (a.datname = current_database() OR a.datname IS NULL)
  AND (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
  AND a.pid <> pg_backend_pid()
ORDER BY greatest(age(a.backend_xmin), age(a.backend_xid)) DESC, a.xact_start NULLS LAST
LIMIT %(limit)s
"""

SESSION_SQL = _SESSION_COLUMNS + """
WHERE a.pid = %(pid)s AND (a.datname = current_database() OR a.datname IS NULL)
"""

SLOTS_SQL = """
SELECT slot_name, slot_type, active, active_pid, age(xmin), age(catalog_xmin), coalesce(database, '')
FROM pg_replication_slots
WHERE (xmin IS NOT NULL OR catalog_xmin IS NOT NULL) AND (database IS NULL OR database = current_database())
ORDER BY greatest(age(xmin), age(catalog_xmin)) DESC
"""

BACKEND_SQL = """
SELECT a.pid, coalesce(a.usename, ''), coalesce(r.rolsuper, false), a.usename = current_user, a.backend_start,
       a.pid = pg_backend_pid(), coalesce(a.application_name, ''), coalesce(a.state, '')
FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.pid = %(pid)s AND (a.datname = current_database() OR a.datname IS NULL)
"""


@dataclass(frozen=True, slots=True)
class TableHealth:
    """One queue table as the statistics collector sees it."""

    table: str
    live_tuples: int
    dead_tuples: int
    size_bytes: int
    last_autovacuum: datetime | None
    last_vacuum: datetime | None
    autovacuum_count: int
    vacuumed_ago: float | None
    """Seconds since the last vacuum, automatic or manual; None if never."""

    @property
    def vacuumed_ago_text(self) -> str:
        """How long ago the table was last vacuumed, for the page."""
        return "never" if self.vacuumed_ago is None else f"{format_age(self.vacuumed_ago)} ago"

    @property
    def dead_ratio(self) -> float:
        """Dead tuples as a share of all tuples (0 for an empty table)."""
        total = self.live_tuples + self.dead_tuples
        return self.dead_tuples / total if total else 0.0


@dataclass(frozen=True, slots=True)
class SnapshotHolder:
    """A session holding a snapshot or a transaction id, which keeps vacuum from removing newer dead rows."""

    pid: int
    user: str
    application: str
    client: str
    state: str
    backend_start: datetime | None
    xact_start: datetime | None
    query_start: datetime | None
    age_seconds: float | None
    """Seconds since its transaction began (None for a walsender, which has none)."""
    xid_age: int | None
    """Transactions since its snapshot (``age(backend_xmin)``): how far it holds the horizon back."""
    query: str
    superuser: bool
    own_role: bool
    """Connected as the role mqadmin itself uses."""
    backend_type: str

    @property
    def endable(self) -> bool:
        """Whether mqadmin offers to end it: not a superuser's session unless it is mqadmin's own role."""
        return self.own_role or not self.superuser


@dataclass(frozen=True, slots=True)
class SlotHolder:
    """A replication slot with an ``xmin``: it holds the horizon until its consumer catches up."""

    name: str
    slot_type: str
    active: bool
    active_pid: int | None
    xmin_age: int | None
    catalog_xmin_age: int | None
    database: str


@dataclass(frozen=True, slots=True)
class DatabaseHealth:
    """Everything the Database page shows, read in three catalog statements."""

    tables: list[TableHealth]
    holders: list[SnapshotHolder]
    slots: list[SlotHolder]
    warn_after: float
    warnings: list[str] = field(default_factory=list)

    @property
    def oldest(self) -> SnapshotHolder | None:
        """The session pinning the xmin horizon (the oldest snapshot), if any."""
        return self.holders[0] if self.holders else None

    @property
    def dead_tuples(self) -> int:
        """Dead tuples across the queue tables."""
        return sum(t.dead_tuples for t in self.tables)

    @property
    def size_bytes(self) -> int:
        """Size on disk of the queue tables with their indexes and TOAST."""
        return sum(t.size_bytes for t in self.tables)


def queue_tables() -> list[str]:
    """The tables of the ``queues`` app's models."""
    return sorted(m._meta.db_table for m in apps.get_app_config("queues").get_models())


def read(*, holders: int = 5) -> DatabaseHealth:
    """Read the queue tables' vacuum state, the oldest snapshot holders and the slots; derive warnings."""
    with conf.db().cursor() as cur:
        cur.execute(TABLES_SQL, {"tables": queue_tables()})
        tables = [
            TableHealth(table=r[0], live_tuples=int(r[1]), dead_tuples=int(r[2]), size_bytes=int(r[3]),
                        last_autovacuum=r[4], last_vacuum=r[5], autovacuum_count=int(r[6]),
                        vacuumed_ago=float(r[7]) if r[7] is not None else None)
            for r in cur.fetchall()
        ]
        cur.execute(HOLDERS_SQL, {"limit": holders})
        found = [_session(r) for r in cur.fetchall()]
        cur.execute(SLOTS_SQL)
        slots = [
            SlotHolder(name=r[0], slot_type=r[1], active=bool(r[2]), active_pid=r[3],
                       xmin_age=int(r[4]) if r[4] is not None else None,
                       catalog_xmin_age=int(r[5]) if r[5] is not None else None, database=r[6])
            for r in cur.fetchall()
        ]
    warn_after = float(conf.get("DB_SNAPSHOT_WARN_AFTER"))
    health = DatabaseHealth(tables=tables, holders=found, slots=slots, warn_after=warn_after)
    health.warnings.extend(_warnings(health))
    return health


def _session(r: tuple) -> SnapshotHolder:
    return SnapshotHolder(pid=r[0], user=r[1], application=r[2], client=r[3], state=r[4], backend_start=r[5],
                          xact_start=r[6], query_start=r[7], age_seconds=float(r[8]) if r[8] is not None else None,
                          xid_age=int(r[9]) if r[9] is not None else None, query=r[10], superuser=bool(r[11]),
                          own_role=bool(r[12]), backend_type=r[13])


def get_session(pid: int) -> SnapshotHolder | None:
    """One session of this database by pid (holding a snapshot or not), or None."""
    with conf.db().cursor() as cur:
        cur.execute(SESSION_SQL, {"pid": pid})
        row = cur.fetchone()
    return _session(row) if row is not None else None


def _warnings(health: DatabaseHealth) -> list[str]:
    out = []
    oldest = health.oldest
    dead = f"{health.dead_tuples:,} dead rows in the queue tables"
    if oldest is not None and oldest.age_seconds is not None and oldest.age_seconds >= health.warn_after:
        who = f"pid {oldest.pid}" + (f" ({oldest.application})" if oldest.application else "")
        out.append(
            f"A transaction open for {format_age(oldest.age_seconds)} in {who}, {oldest.state or 'no state'}, "
            f"holds a snapshot: vacuum cannot remove rows deleted after it began, so the queue tables grow "
            f"({dead} now). Fix: commit or roll back that transaction in the application that holds it, or end "
            f"the session below; to stop it happening again, set idle_in_transaction_session_timeout (for "
            f"example ALTER ROLE ... SET idle_in_transaction_session_timeout = '5min') and keep transactions "
            f"short."
        )
    for slot in health.slots:
        if slot.xmin_age is not None and not slot.active:
            out.append(
                f"The replication slot {slot.name!r} is inactive and holds the xmin horizon back by "
                f"{slot.xmin_age:,} transactions: vacuum cannot clean the queue tables ({dead} now). Fix: bring "
                f"its consumer back, or drop the slot if nothing uses it "
                f"(SELECT pg_drop_replication_slot('{slot.name}'))."
            )
    return out


class BackendRefused(ValueError):
    """mqadmin will not signal this backend; the message says why."""


class BackendNotFound(BackendRefused, LookupError):
    """No session with that pid in this database (it may have ended)."""


def end_backend(pid: int, *, terminate: bool, backend_start: datetime | None = None) -> dict[str, object]:
    """Cancel the running query of ``pid`` (``terminate=False``) or end its session, which rolls back its
    transaction and releases its snapshot. Returns what was done, for the audit row.

    Refused (:class:`BackendRefused`) for a pid not in this database, mqadmin's own connection, a session
    that is no longer the one the operator saw (``backend_start`` differs: the pid was reused), and a
    superuser's session unless it runs as mqadmin's own role.
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise BackendRefused(f"pid must be a positive whole number, got {pid!r}")
    with conf.db().cursor() as cur:
        cur.execute(BACKEND_SQL, {"pid": pid})
        row = cur.fetchone()
        if row is None:
            raise BackendNotFound(f"no session with pid {pid} in this database: it may have ended already")
        _, user, superuser, own_role, started, is_self, application, state = row
        if is_self:
            raise BackendRefused(f"pid {pid} is mqadmin's own connection serving this request")
        if backend_start is not None and started != backend_start:
            raise BackendRefused(
                f"pid {pid} is now a different session (started {started:%Y-%m-%d %H:%M:%S%z}): the one you saw "
                "has ended; reload the page"
            )
        if superuser and not own_role:
            raise BackendRefused(
                f"pid {pid} belongs to the superuser role {user!r}, which mqadmin does not own: ask a database "
                f"administrator to end it (SELECT pg_terminate_backend({pid}))"
            )
        cur.execute("SELECT pg_terminate_backend(%s)" if terminate else "SELECT pg_cancel_backend(%s)", [pid])
        signalled = bool(cur.fetchone()[0])
    if not signalled:
        raise BackendRefused(f"PostgreSQL refused to signal pid {pid} (the role mqadmin uses may lack "
                             "pg_signal_backend), or it ended meanwhile")
    return {"pid": pid, "mode": "terminate" if terminate else "cancel", "user": user, "application": application,
            "state": state}
