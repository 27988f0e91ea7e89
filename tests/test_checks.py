"""`manage.py check` catches each misconfiguration a host can make, with the fix, before any request."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError


def _check() -> str:
    try:
        call_command("check")
    except SystemCheckError as exc:
        return str(exc)
    return ""


def _ids(output: str) -> set[str]:
    import re

    return set(re.findall(r"\((queues\.[EW]\d+)\)", output))


def test_a_misspelt_mqadmin_key_names_the_closest_valid_one(settings):
    settings.MQADMIN = {"HIDE_BODY": True}
    out = _check()
    assert "queues.E010" in out and "Did you mean 'HIDE_BODIES'?" in out


@pytest.mark.parametrize("key, value", [
    ("SAMPLE_RETENTION", {"1": "two hours"}),
    ("PAGE_SIZE", 0),
    ("HIDE_BODIES", "yes"),
    ("SAMPLE_INTERVAL", float("nan")),
    ("HANDLERS", ["orders"]),
])
def test_a_bad_mqadmin_value_fails_the_checks_not_a_request(settings, key, value):
    settings.MQADMIN = {key: value}
    assert "queues.E011" in _ids(_check())


def test_task_backend_options_are_checked_by_manage_py_check(settings):
    settings.TASKS = {"default": {"BACKEND": "queues.tasks.QueuesBackend", "QUEUES": ["default"],
                                  "OPTIONS": {"QUEUE_PREFIXX": "jobs."}}}
    out = _check()
    assert "queues.E001" in out and "QUEUE_PREFIXX" in out


def test_check_runs_the_task_checks_in_a_fresh_process(run_manage, subprocess_env, monkeypatch):
    # A host process that never imported django.tasks: the backend's own checks must still run.
    monkeypatch.setitem(subprocess_env, "MQADMIN_TASKS", '{"default": {"BACKEND": "queues.tasks.QueuesBackend", '
                        '"QUEUES": ["default"], "OPTIONS": {"QUEUE_PREFIXX": "x"}}}')
    result = run_manage("check")
    assert result.returncode == 1
    assert "queues.E001" in result.stderr


def test_no_channel_layer_warns_that_pages_never_go_live(settings):
    settings.CHANNEL_LAYERS = {}
    assert "queues.W020" in _ids(_check_warnings())


def test_an_unloadable_channel_layer_is_an_error(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "no.such.Layer"}}
    assert "queues.E020" in _ids(_check())


def test_daphne_after_staticfiles_is_reported(settings):
    apps = [a for a in settings.INSTALLED_APPS if a != "daphne"]
    settings.INSTALLED_APPS = [*apps, "daphne"]
    assert "queues.W021" in _ids(_check_warnings())


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_a_queue_database_needs_an_existing_alias_and_the_router(settings):
    settings.MQADMIN = {"DATABASE": "nope"}
    assert "queues.E012" in _ids(_check())
    settings.DATABASES = {**settings.DATABASES, "queues": settings.DATABASES["default"]}
    settings.MQADMIN = {"DATABASE": "queues"}
    assert "queues.E013" in _ids(_check())
    settings.DATABASE_ROUTERS = ["queues.routers.QueuesRouter"]
    assert not {"queues.E012", "queues.E013"} & _ids(_check())


def test_the_demo_site_is_clean():
    assert _check() == ""


def _check_warnings() -> str:
    from io import StringIO

    err = StringIO()
    try:
        call_command("check", stderr=err, stdout=err)
    except SystemCheckError as exc:
        return str(exc)
    return err.getvalue()


def test_every_mqadmin_setting_is_documented():
    from pathlib import Path

    from queues.conf import DEFAULTS

    doc = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()
    missing = [key for key in DEFAULTS if f"| `{key}` |" not in doc]
    assert not missing, f"docs/settings.md has no row for {missing}"
