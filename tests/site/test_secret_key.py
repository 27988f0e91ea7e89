"""No secret key ships with the code: a deployment names its own, development keeps a generated one."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from mqadmin import environment
from tests.browser.servers import free_port
from tests.conftest import ROOT

PUBLIC_KEY = "dev-only-insecure-key-change-me-in-production"
PRINT_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


def test_manage_py_refuses_to_start_without_a_key_outside_development(manage, bare_env):
    result = manage("check", env=bare_env)
    assert result.returncode == 1, result.stdout
    assert "DJANGO_SECRET_KEY is not set" in result.stderr
    assert "secrets.token_urlsafe" in result.stderr  # says how to make one
    assert "Traceback" not in result.stderr


def test_the_web_server_refuses_to_start_without_a_key(bare_env):
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(free_port()), "mqadmin.asgi:application"],
        env=bare_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("daphne kept serving without DJANGO_SECRET_KEY")
    assert proc.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in err and "Traceback" not in err


def test_the_once_published_default_key_is_refused_even_when_set(manage, bare_env):
    result = manage("check", env={**bare_env, "DJANGO_SECRET_KEY": PUBLIC_KEY})
    assert result.returncode == 1
    assert "published example key" in result.stderr


def test_a_key_from_the_environment_is_used(manage, bare_env):
    result = manage("shell", "--no-imports", "-c", PRINT_KEY, env={**bare_env, "DJANGO_SECRET_KEY": "k" * 60})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "k" * 60


def test_development_generates_a_private_key_once_and_keeps_it(manage, bare_env, tmp_path: Path):
    env = {**bare_env, "DJANGO_DEBUG": "1", "MQADMIN_VAR_DIR": str(tmp_path)}
    first = manage("shell", "--no-imports", "-c", PRINT_KEY, env=env)
    second = manage("shell", "--no-imports", "-c", PRINT_KEY, env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    key = first.stdout.strip()
    assert key == second.stdout.strip()  # sessions survive a restart
    assert len(key) >= 50 and key != PUBLIC_KEY
    kept = tmp_path / "secret-key"
    assert kept.read_text().strip() == key
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_two_checkouts_do_not_share_a_development_key(tmp_path: Path):
    one = environment.secret_key({}, development=True, key_file=tmp_path / "a" / "secret-key")
    two = environment.secret_key({}, development=True, key_file=tmp_path / "b" / "secret-key")
    assert one != two


@pytest.mark.parametrize(("name", "value"), [
    ("DJANGO_DEBUG", "maybe"),
    ("DJANGO_BEHIND_PROXY", "²"),
    ("DJANGO_BEHIND_PROXY", "-1"),
    ("DJANGO_HSTS_SECONDS", "1e9"),
    ("DJANGO_CSRF_TRUSTED_ORIGINS", "mq.example.com"),
    ("DJANGO_SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto"),
    ("DJANGO_LOGIN_FAILURE_LIMIT", "0"),
])
def test_a_malformed_variable_stops_the_start_naming_itself(manage, bare_env, name, value):
    result = manage("check", env={**bare_env, "DJANGO_SECRET_KEY": "k" * 60, name: value})
    assert result.returncode == 1
    assert name in result.stderr and "Traceback" not in result.stderr


def test_settings_refusal_is_an_improperly_configured_error():
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY is not set"):
        environment.secret_key({}, development=False, key_file=Path("/nonexistent/secret-key"))
