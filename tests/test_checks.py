"""`manage.py check` catches each misconfiguration a host can make, with the fix, before any request."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client

from queues.conf import DEFAULTS


def _check() -> str:
    try:
        call_command("check")
    except SystemCheckError as exc:
        return str(exc)
    return ""


def _ids(output: str) -> set[str]:
    return set(re.findall(r"\((queues\.[EW]\d+)\)", output))


def test_a_misspelt_mqadmin_key_names_the_closest_valid_one(settings):
    settings.MQADMIN = {"HIDE_BODY": True}
    out = _check()
    assert "queues.E010" in out and "Did you mean 'HIDE_BODIES'?" in out


NAN, INF = float("nan"), float("inf")

# At least one bad value for every key of queues.conf.DEFAULTS: wrong type, negative or zero, NaN or
# infinity, out of range, and values the setting's reader refuses although they look plausible.
BAD_VALUES: list[tuple[str, object]] = [
    ("DATABASE", "nope"),
    ("DATABASE", 3),
    ("READ_ONLY", "yes"),
    ("HIDE_BODIES", 1),
    ("SAMPLER_ENABLED", None),
    ("METRICS_PUBLIC", "false"),
    ("ASYNC_COMMIT_LEASES", "off"),
    ("ASYNC_COMMIT_LEASES", 0),
    ("ASYNC_COMMIT_LEASES", None),
    ("PAGE_SIZE", 0),
    ("PAGE_SIZE", 1001),
    ("PAGE_SIZE", "50"),
    ("PAGE_SIZE", 2.5),
    ("PAGE_SIZE", True),
    ("SOCKET_RECHECK_INTERVAL", -1),
    ("SOCKET_RECHECK_INTERVAL", NAN),
    ("SOCKET_RECHECK_INTERVAL", INF),
    ("SOCKET_RECHECK_INTERVAL", "30"),
    ("SAMPLE_INTERVAL", NAN),
    ("SAMPLE_INTERVAL", INF),
    ("SAMPLE_INTERVAL", 0.01),
    ("SAMPLE_INTERVAL", 120),
    ("SAMPLE_INTERVAL", "1"),
    ("SAMPLE_RETENTION", {"1": "two hours"}),
    ("SAMPLE_RETENTION", {60: 7200}),
    ("SAMPLE_RETENTION", {1: 100, 90: 10, 120: 10}),
    ("SAMPLE_RETENTION", {1: INF}),
    ("SAMPLE_RETENTION", {1: NAN}),
    ("SAMPLE_RETENTION", {1: -5}),
    ("SAMPLE_RETENTION", {1: 7200, 10**12: 60}),
    ("SAMPLE_RETENTION", {}),
    ("SAMPLE_RETENTION", [1, 7200]),
    ("METRICS_TOKEN", "short"),
    ("METRICS_TOKEN", 12345678901234567890),
    ("METRICS_TOKEN", " padded-token-0123456 "),
    ("METRICS_TOKEN", ""),
    ("DB_SNAPSHOT_WARN_AFTER", 0),
    ("DB_SNAPSHOT_WARN_AFTER", -1),
    ("DB_SNAPSHOT_WARN_AFTER", NAN),
    ("DB_SNAPSHOT_WARN_AFTER", INF),
    ("HANDLERS", ["orders"]),
    ("HANDLERS", {"orders": 3}),
    ("HANDLERS", {"orders": "handle"}),
    ("HANDLERS", {"Bad Name": "shop.handlers.handle"}),
    ("HEARTBEAT_INTERVAL", 0),
    ("HEARTBEAT_INTERVAL", 0.01),
    ("HEARTBEAT_INTERVAL", NAN),
    ("HEARTBEAT_INTERVAL", INF),
    ("HEARTBEAT_INTERVAL", "5"),
    ("WORKER_DEAD_AFTER", -1),
    ("WORKER_DEAD_AFTER", 0.1),
    ("WORKER_DEAD_AFTER", INF),
    ("REDRIVE_STALE_AFTER", 0),
    ("REDRIVE_STALE_AFTER", 1.0),
    ("REDRIVE_STALE_AFTER", NAN),
    ("REDRIVE_STALE_AFTER", INF),
    ("REDRIVE_STALE_AFTER", "30"),
    ("SCHEDULER_INTERVAL", -1),
    ("SCHEDULER_INTERVAL", 0.01),
    ("SCHEDULER_INTERVAL", NAN),
    ("SCHEDULER_INTERVAL", False),
    ("SCHEDULER_INTERVAL", "1"),
    ("SCHEDULES", ["nightly"]),
    ("SCHEDULES", {"Bad Name": {"cron": "0 3 * * *", "queue": "reports"}}),
    ("SCHEDULES", {"nightly": {"cron": "61 * * * *", "queue": "reports"}}),
    ("SCHEDULES", {"nightly": {"cron": "* * *", "queue": "reports"}}),
    ("SCHEDULES", {"nightly": {"cron": "0 3 * * *\x00", "queue": "reports"}}),
    ("SCHEDULES", {"nightly": {"cron": "0 3 * * *", "queue": "reports", "timezone": "Mars/Olympus"}}),
    ("SCHEDULES", {"nightly": {"cron": "0 3 * * *"}}),
    ("SCHEDULES", {"nightly": {"cron": "0 3 * * *", "queue": "reports", "body": float("nan")}}),
    ("SCHEDULES", {"nightly": {"cron": "0 3 * * *", "task": "no.such.task"}}),
    ("SCHEDULES", {"nightly": {"cron": "0 3 * * *", "queue": "reports", "every": 5}}),
    ("SCHEDULES", {"nightly": "0 3 * * *"}),
]


def test_every_mqadmin_key_has_bad_values_under_test():
    assert set(DEFAULTS) == {key for key, _ in BAD_VALUES}


@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=lambda v: repr(v)[:40])
def test_a_bad_mqadmin_value_fails_the_checks_not_a_request(settings, key, value):
    settings.MQADMIN = {key: value}
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    out = str(raised.value)
    assert f"settings.MQADMIN[{key!r}]" in out, out  # names the key
    assert "HINT: Use " in out or "HINT: Add " in out, out  # and the fix
    assert _ids(out) & {"queues.E011", "queues.E012"}


def test_a_sample_retention_that_breaks_the_series_api_fails_the_checks_instead(settings, admin_user):
    # Accepted by the checks before: no 1 s resolution, which the sampler's retention() refuses.
    settings.MQADMIN = {"SAMPLE_RETENTION": {60: 7200, 3600: 86400}}
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    assert client.get("/api/series/", {"window": "300"}).status_code == 500  # what a request would meet
    with pytest.raises(SystemCheckError, match=r"(?s)SAMPLE_RETENTION.*must keep the 1 s samples.*HINT: Use"):
        call_command("check")
    settings.MQADMIN = {"SAMPLE_RETENTION": {1: 7200, 60: 86400}}
    call_command("check")  # a good one passes, and the page answers
    assert client.get("/api/series/", {"window": "300"}).status_code == 200


def test_task_backend_options_are_checked_by_manage_py_check(settings):
    settings.TASKS = {
        "default": {
            "BACKEND": "queues.tasks.QueuesBackend",
            "QUEUES": ["default"],
            "OPTIONS": {"QUEUE_PREFIXX": "jobs."},
        }
    }
    out = _check()
    assert "queues.E001" in out and "QUEUE_PREFIXX" in out


def test_check_runs_the_task_checks_in_a_fresh_process(run_manage, subprocess_env, monkeypatch):
    # A host process that never imported django.tasks: the backend's own checks must still run.
    monkeypatch.setitem(
        subprocess_env,
        "MQADMIN_TASKS",
        '{"default": {"BACKEND": "queues.tasks.QueuesBackend", '
        '"QUEUES": ["default"], "OPTIONS": {"QUEUE_PREFIXX": "x"}}}',
    )
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
    err = StringIO()
    try:
        call_command("check", stderr=err, stdout=err)
    except SystemCheckError as exc:
        return str(exc)
    return err.getvalue()


def test_every_mqadmin_setting_is_documented():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()
    missing = [key for key in DEFAULTS if f"| `{key}` |" not in doc]
    assert not missing, f"docs/settings.md has no row for {missing}"
