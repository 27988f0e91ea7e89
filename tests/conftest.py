"""Fixtures shared by the whole suite: real PostgreSQL (embedded or DATABASE_URL), real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

ROOT = Path(__file__).resolve().parent.parent

# Property-based tests: a bounded run in `make test`, a long one in `make fuzz` (HYPOTHESIS_PROFILE=fuzz).
# No deadline: every example talks to a real PostgreSQL, whose latency is not the property under test.
_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
hypothesis_settings.register_profile("default", max_examples=60, deadline=None, suppress_health_check=_QUIET)
hypothesis_settings.register_profile(
    "fuzz", max_examples=int(os.environ.get("HYPOTHESIS_FUZZ_EXAMPLES", 5_000)), deadline=None,
    suppress_health_check=_QUIET, print_blob=True
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _fresh_engine_cache() -> Iterator[None]:
    """Queue ids change when tables are flushed between tests; drop the engine's config cache."""
    # deferred: importing the engine needs Django configured, which pytest-django does after this import
    from queues import engine

    engine.clear_cache()
    yield
    engine.clear_cache()


@pytest.fixture(scope="session", autouse=True)
def _close_listener_at_end(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Stop the process's LISTEN connection before pytest-django drops the test database.

    The listener is a daemon thread holding its own connection; left alone it makes DROP DATABASE
    fail with "database is being accessed by other users".
    """
    yield
    from queues.engine.notify import stop_listener

    with django_db_blocker.unblock():
        stop_listener()


@pytest.fixture
def database_url(transactional_db) -> str:
    """A URL of the test database, for subprocesses (workers, producers) that must share it."""
    from django.db import connection

    s = connection.settings_dict
    host = s["HOST"]
    auth = quote(s["USER"]) + (":" + quote(s["PASSWORD"]) if s["PASSWORD"] else "")
    if host.startswith("/"):
        port = f"&port={s['PORT']}" if s["PORT"] else ""
        return f"postgresql://{auth}@/{s['NAME']}?host={host}{port}"
    port = f":{s['PORT']}" if s["PORT"] else ""
    return f"postgresql://{auth}@{host}{port}/{s['NAME']}"


@pytest.fixture
def private_server() -> Iterator[tuple[Path, str]]:
    """An embedded PostgreSQL of this test's own (tests stop and restart it), migrated; yields (base dir, URL).

    ``mqadmin.embedded_db.stop_server(base=base)`` / ``ensure_server(base=base)`` take it down and up.
    """
    from mqadmin.embedded_db import ensure_server, stop_server

    base = Path(tempfile.mkdtemp(prefix="mqw-chaos-", dir="/tmp"))
    try:
        url = ensure_server(base=base).url()
        env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "mqadmin.settings"}
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env, cwd=ROOT, check=True,
                       timeout=120)
        yield base, url
    finally:
        stop_server(base=base, mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def make_queue(db) -> Callable[..., str]:
    """Factory: create a queue with the given settings and return its name."""
    import queues

    counter = iter(range(1_000_000))

    def make(name: str | None = None, **settings) -> str:
        name = name or f"q{next(counter)}"
        queues.create_queue(name, **settings)
        return name

    return make


@pytest.fixture
def subprocess_env(database_url: str) -> dict[str, str]:
    """Environment for a child process that talks to the test database."""
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url
    env["PYTHONPATH"] = str(ROOT)
    env["DJANGO_SETTINGS_MODULE"] = "mqadmin.settings"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def run_manage(subprocess_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``manage.py`` in a child process against the test database."""

    def run(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=subprocess_env, capture_output=True, text=True, input=input, timeout=timeout, cwd=ROOT,
        )

    return run


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> object:
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Terminate a child process and wait for it; kill it if it ignores the request."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

