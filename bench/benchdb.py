"""The databases of the bench scripts: fresh and migrated, on the project's embedded server or beside a
given one, and Django set up against one of them. Importing this module does nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def embedded_admin_dsn() -> str:
    """The embedded server (started if needed), database ``postgres``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    # deferred: starting the embedded server is only for runs that use it, not for a worker importing a handler
    from mqadmin.embedded_db import ensure_server

    return ensure_server().url("postgres")


def server_url() -> str:
    """The server the benchmarks use: ``DATABASE_URL``'s, else the embedded one (started if needed)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    return embedded_admin_dsn()


def with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/" + name))


def kept_database(name: str, *, refill: bool) -> bool:
    """Create ``name`` on :func:`server_url`'s server unless it is there (``refill``: drop it first) and point
    ``DATABASE_URL`` at it, for the scripts whose database takes long to fill and is kept between runs.
    True if it is new (the caller migrates and fills it)."""
    import psycopg  # deferred: the workers that import a bench handler never need it

    server = server_url()
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and refill:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = with_database(server, name)
    return not exists


def migrate(dsn: str) -> None:
    """``manage.py migrate`` against ``dsn``, in a child process (this one's Django may point elsewhere)."""
    env = dict(os.environ, DATABASE_URL=dsn, DJANGO_SETTINGS_MODULE="mqadmin.settings")
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(f"migrate failed:\n{done.stdout}\n{done.stderr}")


def fresh_database(admin_dsn: str | None, name: str) -> str:
    """DROP and CREATE ``name`` beside ``admin_dsn``'s database (default: the embedded server), migrate
    it, return its URL."""
    import psycopg  # deferred: the workers that import a bench handler never need it

    admin_dsn = admin_dsn or embedded_admin_dsn()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(admin_dsn, name)
    migrate(dsn)
    return dsn


def setup_django(dsn: str) -> None:
    """Set Django up in this process with the project's settings against ``dsn``."""
    os.environ["DATABASE_URL"] = dsn
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django  # deferred: the settings read DATABASE_URL when Django is set up, not before

    django.setup()
