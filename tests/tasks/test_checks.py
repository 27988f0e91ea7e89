"""System checks report a misconfigured backend with the fix, before anything runs."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tests.tasks.conftest import TEST_TASKS


def backend_with(**changes):
    return {"default": {**TEST_TASKS["default"], **changes}}


def ids(settings_tasks, settings) -> list[str]:
    settings.TASKS = settings_tasks
    return sorted(m.id for m in run_checks() if m.id and m.id.startswith("queues."))


def messages(settings) -> str:
    return "\n".join(f"{m.msg} {m.hint}" for m in run_checks() if m.id and m.id.startswith("queues."))


def test_valid_settings_pass(settings):
    assert ids(TEST_TASKS, settings) == []


def test_unknown_option_is_reported(settings):
    assert ids(backend_with(OPTIONS={"QUEUE_PREFIXX": "x."}), settings) == ["queues.E001"]
    assert "'QUEUE_PREFIXX'" in messages(settings) and "QUEUE_PREFIX" in messages(settings)


def test_options_not_a_dict_is_reported(settings):
    assert ids(backend_with(OPTIONS=["BACKOFF"]), settings) == ["queues.E001"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("QUEUE_PREFIX", 3),
        ("CREATE_QUEUES", "yes"),
        ("BACKOFF", -1),
        ("BACKOFF", float("inf")),
        ("TIMEOUT", float("nan")),
        ("MAX_BACKOFF", "5"),
        ("TIMEOUT", 0),
        ("RESULT_RETENTION", 0),
        ("RESULT_RETENTION", "7 days"),
        ("QUEUE_SETTINGS", {"max_receivez": 3}),
        ("QUEUE_SETTINGS", {"visibility_timeout": -5}),
        ("QUEUE_SETTINGS", {"dead_letter_queue": "Bad DLQ"}),
        ("QUEUE_SETTINGS", "max_receives=3"),
    ],
)
def test_bad_option_value_is_reported(settings, option, value):
    assert ids(backend_with(OPTIONS={option: value}), settings) == ["queues.E004"]
    assert option in messages(settings)


@pytest.mark.parametrize("queues_setting", ["default", [], [1, 2], None])
def test_bad_queues_setting_is_reported(settings, queues_setting):
    assert ids(backend_with(QUEUES=queues_setting), settings) == ["queues.E002"]


def test_queue_name_that_is_no_mqadmin_name_is_reported(settings):
    assert ids(backend_with(QUEUES=["default", "Emails", "a b"]), settings) == ["queues.E003", "queues.E003"]
    assert "'Emails'" in messages(settings) and "'a b'" in messages(settings)


def test_queue_name_whose_dead_letter_queue_would_be_too_long_is_reported(settings):
    assert ids(backend_with(QUEUES=["x" * 74]), settings) == ["queues.E003"]
    assert ids(backend_with(QUEUES=["x" * 74], OPTIONS={"QUEUE_SETTINGS": {"dead_letter_queue": None}}), settings) == []


def test_two_backends_sharing_a_queue_with_different_options_are_reported(settings):
    second = {**TEST_TASKS["default"], "OPTIONS": {"BACKOFF": 9.0}}
    # One error per shared queue: both "default" and "other".
    assert ids({**TEST_TASKS, "second": second}, settings) == ["queues.E005", "queues.E005"]
    same = {**TEST_TASKS["default"]}
    assert ids({**TEST_TASKS, "second": same}, settings) == []
    apart = {**TEST_TASKS["default"], "OPTIONS": {"QUEUE_PREFIX": "second.", "BACKOFF": 9.0}}
    assert ids({**TEST_TASKS, "second": apart}, settings) == []


def test_unknown_mqadmin_setting_is_reported(settings):
    settings.MQADMIN = {"PAGE_SIZ": 10}
    assert ids(TEST_TASKS, settings) == ["queues.E010"]
    assert "PAGE_SIZE" in messages(settings)


def test_manage_py_check_fails_on_a_bad_backend(settings):
    settings.TASKS = backend_with(OPTIONS={"RETRIES": 3})

    with pytest.raises(SystemCheckError, match=r"queues.E001.*'RETRIES'"):
        call_command("check")
