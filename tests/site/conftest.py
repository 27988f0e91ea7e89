"""Fixtures of the demo site's own tests (``mqadmin/``): processes started with a chosen environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.conftest import ROOT

# A key such as an operator would generate: long and random-looking, used only by these tests.
PRODUCTION_KEY = "prod-test-7Hq2vN9xLr4TzW8kPb3YcFm6Js1Ud5Ge0Ao2Ri7Xn4Kv9Ls3Bw"


@pytest.fixture
def bare_env(database_url: str) -> dict[str, str]:
    """The environment of a deployment that has said nothing yet: no DJANGO_* variables at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(DATABASE_URL=database_url, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def production_env(bare_env: dict[str, str]) -> dict[str, str]:
    """What docs/deploy.md tells a deployment behind a TLS-terminating proxy to set."""
    return {
        **bare_env,
        "DJANGO_SECRET_KEY": PRODUCTION_KEY,
        "DJANGO_ALLOWED_HOSTS": "mq.example.com",
        "DJANGO_BEHIND_PROXY": "1",
        "DJANGO_HSTS_PRELOAD": "1",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://mq.example.com",
    }


@pytest.fixture
def manage() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``manage.py`` with exactly the given environment."""

    def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    return run
