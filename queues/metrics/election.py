"""Who samples: a session-level PostgreSQL advisory lock, held for as long as its connection lives.

Every web process runs a candidate; the one whose ``pg_try_advisory_lock`` succeeds leads and samples,
the others try again every few seconds. The lock belongs to the database session, so it goes away by
itself when the leader dies (PostgreSQL ends a session whose client is gone) and the next try of
another process takes over. No lease to renew, no clock to trust.

The lock is taken on the Django connection of the sampler's own thread (nothing else runs there, and
nothing closes it behind our back: ``close_old_connections`` only touches the calling thread's
connections). If that connection is ever replaced, the lock went with the old session: leadership is
checked against the very DB-API connection object that took it, at no cost per tick.

It elects the sampler only. Upkeep (retention, reaping, sample pruning) has its own lock in
:mod:`queues.upkeep`, because workers and ``mq_prune`` sweep too and never stand in this election.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from django.db import connections

from queues import conf

logger = logging.getLogger("queues.metrics")

LOCK_KEY = int.from_bytes(b"mqsample", "big")
"""The advisory lock key of the sampler election (one per database)."""


class Election:
    """Leadership of one candidate. Call its methods from one thread only (the sampler's)."""

    def __init__(self, *, key: int = LOCK_KEY, using: str | None = None, name: str | None = None) -> None:
        self.key = key
        self.using = using or conf.database_alias()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._held_on: Any = None

    @property
    def leading(self) -> bool:
        """True while the lock is held on the live connection that took it."""
        held = self._held_on
        if held is None:
            return False
        conn = connections[self.using]
        if conn.connection is not held or held.closed:
            logger.warning("sampler %s lost the lead: its database connection was replaced", self.name)
            self._held_on = None
            return False
        return True

    def try_lead(self) -> bool:
        """Lead if nobody does; True if this candidate leads now. One cheap query when not leading."""
        if self.leading:
            return True
        conn = connections[self.using]
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
            got = bool(cur.fetchone()[0])
            if got:
                # application_name: pg_stat_activity shows which process leads (operators, tests).
                # synchronous_commit off: a crash may lose the last second or so of samples, which history
                # charts shrug off, and the tick does not wait for a WAL flush every second.
                cur.execute(
                    "SELECT set_config('application_name', %s, false), set_config('synchronous_commit', 'off', false)",
                    [f"mqadmin sampler {self.name}"],
                )
        if got:
            self._held_on = conn.connection
            logger.info("sampler %s leads", self.name)
        return got

    def resign(self) -> None:
        """Give up the lead (if held) and close this thread's connection, which releases it in any case."""
        conn = connections[self.using]
        if self._held_on is not None and conn.connection is self._held_on and not self._held_on.closed:
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            except Exception:
                logger.debug("unlock failed; closing the connection releases the lock", exc_info=True)
        self._held_on = None
        conn.close()
