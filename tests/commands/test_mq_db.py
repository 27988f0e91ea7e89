"""mq_db: the database's URL, psql, status, and stopping the embedded server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mqadmin import embedded_db
from tests.conftest import ROOT


def test_url_prints_database_url(run_manage, database_url):
    result = run_manage("mq_db", "url")
    assert result.returncode == 0
    assert result.stdout.strip() == database_url


def test_psql_runs_on_the_database(run_manage):
    result = run_manage("mq_db", "psql", "--", "-At", "-c", "select current_database(), 6 * 7")
    assert result.returncode == 0, result.stderr
    name, answer = result.stdout.strip().split("|")
    assert answer == "42"
    assert name.startswith("test_")


def test_status_with_database_url(run_manage):
    result = run_manage("mq_db", "status")
    assert result.returncode == 0, result.stderr
    assert "Server:    DATABASE_URL" in result.stdout
    assert "Version:   PostgreSQL " in result.stdout
    assert "Status:    running" in result.stdout


def test_stop_refuses_when_database_url_is_set(run_manage):
    result = run_manage("mq_db", "stop")
    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: mqadmin is not using its embedded server (DATABASE_URL is set)")
    assert "Traceback" not in result.stderr
    assert run_manage("mq_db", "status").returncode == 0  # still there


def test_unknown_subcommand(run_manage):
    result = run_manage("mq_db", "restart")
    assert result.returncode != 0
    assert "invalid choice: 'restart'" in result.stderr


@pytest.mark.slow
def test_embedded_server_url_status_and_stop(tmp_path, subprocess_env):
    """A private embedded server (its own var/), so the shared one keeps running for everyone else."""
    env = {k: v for k, v in subprocess_env.items() if k != "DATABASE_URL"}
    env["MQADMIN_VAR_DIR"] = str(tmp_path / "var")

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    base = tmp_path / "var"
    try:
        first = manage("mq_db", "status")
        assert first.returncode == 0, first.stderr
        assert "Server:    embedded PostgreSQL" in first.stdout
        assert f"Data:      {base / 'pgdata'}" in first.stdout
        assert "it was not running; loading mqadmin's settings started it just now" in first.stdout
        second = manage("mq_db", "status")
        assert "not running" not in second.stdout and "Status:    running" in second.stdout

        url = manage("mq_db", "url").stdout.strip()
        server = embedded_db.Server(pgdata=base / "pgdata", socket_dir=embedded_db._socket_dir(base))
        assert url == server.url()
        psql = manage("mq_db", "psql", "--", "-At", "-c", "select 1")
        assert psql.stdout.strip() == "1"

        stopped = manage("mq_db", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == f"Stopped the embedded PostgreSQL (data kept in {base / 'pgdata'})."
        assert not os.path.exists(base / "pgdata" / "postmaster.pid")
    finally:
        embedded_db.stop_server(base=base, mode="immediate")
