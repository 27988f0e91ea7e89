"""Packaging fixtures: the built distributions, a virtualenv holding only the wheel, PostgreSQL databases.

Each is built once per session: ``python -m build`` and ``pip install`` take most of this folder's
runtime. PyPI must be reachable (the isolated build and the virtualenv download what they need).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from packaging.requirements import Requirement
from psycopg import sql

from tests.packaging import quickstart

ROOT = Path(__file__).resolve().parent.parent.parent
HOST_REQUIREMENTS = Path(__file__).with_name("host-requirements.txt")
ARTIFACTS = ROOT / "test-artifacts"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything here builds, installs or starts processes: slow, and given more than the default timeout."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.timeout(900))


def run(args: list[str | Path], *, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command; on failure, fail the test with its output (not a bare CalledProcessError)."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if proc.returncode:
        out = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        pytest.fail(f"{shlex.join(map(str, args))} exited {proc.returncode}\n{out}")
    return proc


def tree_size(path: Path) -> int:
    """Bytes in the files under ``path`` (apparent sizes; symlinks not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@dataclass(frozen=True)
class Dists:
    """What ``python -m build`` made: the sdist, the wheel built from it, and a wheel built from the tree."""

    sdist: Path
    wheel: Path
    tree_wheel: Path
    log: str


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dists]:
    """``python -m build`` (sdist, then the wheel from the unpacked sdist) and ``python -m build --wheel``."""
    out = tmp_path_factory.mktemp("dist")
    # The default build makes the wheel from the sdist, in a directory without node_modules: the proof
    # that the sdist carries the chart files. The second build is what `pip install <checkout>` does.
    # Both at once: they spend most of their time setting up their isolated environments.
    builds = {
        name: subprocess.Popen(
            [sys.executable, "-m", "build", *args, "--outdir", str(out / name), str(ROOT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, args in (("sdist", []), ("tree", ["--wheel"]))
    }
    try:
        logs = {name: proc.communicate(timeout=600)[0] for name, proc in builds.items()}
    finally:
        for proc in builds.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, proc in builds.items():
        if proc.returncode:
            pytest.fail(f"python -m build ({name}) exited {proc.returncode}:\n{logs[name][-6000:]}")
    (sdist,) = (out / "sdist").glob("*.tar.gz")
    (wheel,) = (out / "sdist").glob("*.whl")
    (tree_wheel,) = (out / "tree").glob("*.whl")
    yield Dists(sdist, wheel, tree_wheel, logs["sdist"] + logs["tree"])
    shutil.rmtree(out, ignore_errors=True)


@dataclass
class HostVenv:
    """A virtualenv with the wheel (plus the quickstart's extras and the host's test tools) and nothing else."""

    path: Path
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def bin(self) -> Path:
        """The scripts directory (python, daphne, django-admin)."""
        return self.path / "bin"

    @property
    def python(self) -> Path:
        """The virtualenv's interpreter."""
        return self.bin / "python"

    @property
    def site_packages(self) -> Path:
        """Where the wheel's ``queues`` package went."""
        (site,) = self.path.glob("lib/python3.*/site-packages")
        return site

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment for the host's processes: nothing of the outer suite leaks in."""
        keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env["PATH"] = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
        env["VIRTUAL_ENV"] = str(self.path)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env


def _install_requirement(wheel: Path) -> str:
    """The quickstart's ``pip install`` line, pointed at the built wheel instead of the index."""
    pip_steps = [c for s in quickstart.steps() if s.action == "run" for c in s.commands if c.startswith("pip ")]
    assert len(pip_steps) == 1, f"the quickstart should install with one pip command, found {pip_steps}"
    args = shlex.split(pip_steps[0])
    assert args[:2] == ["pip", "install"] and len(args) == 3, f"unexpected install command {pip_steps[0]!r}"
    req = Requirement(args[2])
    assert req.name == "django-mqadmin", f"the quickstart installs {req.name!r}, not the distribution django-mqadmin"
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras} @ {wheel.as_uri()}"


@pytest.fixture(scope="session")
def host_venv(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostVenv]:
    """A fresh virtualenv (the suite's Python) with the wheel and its dependencies, sizes measured on the way."""
    venv = HostVenv(tmp_path_factory.mktemp("host-venv") / "venv")
    try:
        run([sys.executable, "-m", "venv", venv.path])
        pip = [venv.python, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        # Measured without extras: what every host pays.
        before = tree_size(venv.path)
        run([*pip, "install", "--quiet", dists.wheel], env=venv.env())
        venv.sizes = {
            "wheel_bytes": dists.wheel.stat().st_size,
            "queues_package_bytes": tree_size(venv.site_packages / "queues"),
            "venv_growth_bytes": tree_size(venv.path) - before,
        }
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "packaging-sizes.json").write_text(json.dumps(venv.sizes, indent=2) + "\n")
        print(f"\ninstalled sizes: {venv.sizes}")
        run([*pip, "install", "--quiet", _install_requirement(dists.wheel), "-r", HOST_REQUIREMENTS], env=venv.env())
        yield venv
    finally:
        shutil.rmtree(venv.path.parent, ignore_errors=True)  # a few hundred MB, kept by pytest for three runs


class PgServer:
    """The suite's PostgreSQL server, for databases of the host projects (created and dropped here)."""

    def __init__(self, settings_dict: dict[str, Any]) -> None:
        self.settings = settings_dict

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        """An autocommit connection to ``dbname``."""
        s = self.settings
        return psycopg.connect(
            dbname=dbname,
            user=s["USER"],
            password=s["PASSWORD"] or None,
            host=s["HOST"] or None,
            port=s["PORT"] or None,
            autocommit=True,
        )

    def django_database(self, name: str) -> dict[str, str]:
        """A ``DATABASES`` entry for ``name`` on this server."""
        s = self.settings
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": s["USER"],
            "PASSWORD": s["PASSWORD"],
            "HOST": s["HOST"],
            "PORT": str(s["PORT"] or ""),
        }

    def create(self, name: str) -> None:
        """``CREATE DATABASE name``."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop(self, name: str) -> None:
        """Drop ``name`` (and a pytest-django ``test_`` copy left by a failed run), ending its sessions first."""
        with self.connect() as conn:
            for db in (name, f"test_{name}"):
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [db])
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))

    def exists(self, name: str) -> bool:
        """Whether database ``name`` exists."""
        with self.connect() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None

    def tables(self, name: str) -> set[str]:
        """The tables of the public schema of database ``name``."""
        with self.connect(name) as conn:
            rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        return {r[0] for r in rows}


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    """The server the suite's own test database lives on (embedded or ``DATABASE_URL``)."""
    return PgServer(dict(connection.settings_dict))


def wait_until_serving(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers (any HTTP status), failing early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout}s:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Path]:
    """``test-artifacts/`` (screenshots, measured sizes)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield ARTIFACTS
