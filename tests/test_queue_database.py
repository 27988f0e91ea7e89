"""``MQADMIN = {"DATABASE": "queues"}``: mqadmin's migrations build its tables on a fresh database of its own."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.conftest import ROOT


@pytest.fixture
def fresh_database(transactional_db) -> Iterator[str]:
    """An empty database on the test server, dropped afterwards."""
    from django.db import connection

    s = connection.settings_dict
    admin = {"dbname": "postgres", "user": s["USER"], "password": s["PASSWORD"] or None,
             "host": s["HOST"] or None, "port": s["PORT"] or None, "autocommit": True}
    name = f"test_queue_db_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrate_builds_the_queue_tables_on_a_database_without_user_tables(
    fresh_database: str, subprocess_env: dict[str, str]
) -> None:
    """The queue database holds no ``auth_user``: no migration may point a constraint at it."""
    env = {**subprocess_env, "DJANGO_SETTINGS_MODULE": "tests.queue_database_settings",
           "MQADMIN_QUEUE_DB": fresh_database}
    proc = subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--database=queues", "--no-input"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    from django.db import connection

    s = connection.settings_dict
    with psycopg.connect(dbname=fresh_database, user=s["USER"], password=s["PASSWORD"] or None,
                         host=s["HOST"] or None, port=s["PORT"] or None) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"queues_queue", "queues_message", "queues_audit"} <= tables, sorted(tables)
    assert not [t for t in tables if t.startswith(("auth_", "django_session", "django_admin"))], sorted(tables)
