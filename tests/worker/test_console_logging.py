"""``mq_worker`` prints what it and the host's handlers log, in a project with no logging set-up for them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

# A process set up like a host's: Django's own logging defaults plus the project's LOGGING (if any),
# then the worker command's console set-up, then a handler's line and a worker line.
SCRIPT = """
import logging, sys
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=[], LOGGING={logging_setting})
django.setup()
from queues.management.commands.mq_worker import _log_to_console_unless_configured
_log_to_console_unless_configured()
logging.getLogger("orders.handlers").info("order 7 paid")
logging.getLogger("queues.worker").info("event=started")
logging.getLogger("orders.handlers").debug("too detailed")
"""

QUEUES_HANDLER = {"version": 1, "disable_existing_loggers": False,
                  "handlers": {"console": {"class": "logging.StreamHandler"}},
                  "loggers": {"queues": {"handlers": ["console"], "level": "INFO"}}}
ROOT_HANDLER = {"version": 1, "disable_existing_loggers": False,
                "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "mine"}},
                "formatters": {"mine": {"format": "MINE %(name)s %(message)s"}},
                "root": {"handlers": ["console"], "level": "WARNING"}}


def _run(logging_setting: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", SCRIPT.replace("{logging_setting}", repr(logging_setting))],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_handlers_own_log_lines_print_without_any_logging_setup() -> None:
    out = _run({})
    assert out.count("INFO orders.handlers order 7 paid") == 1, out
    assert out.count("event=started") == 1, out
    assert "too detailed" not in out


def test_a_logger_the_project_configured_prints_once() -> None:
    out = _run(QUEUES_HANDLER)
    assert out.count("event=started") == 1, out  # by the project's handler, not again by the worker's
    assert out.count("order 7 paid") == 1, out


@pytest.mark.parametrize("level_line", ["order 7 paid", "event=started"])
def test_a_project_that_configured_the_root_logger_keeps_its_setup(level_line: str) -> None:
    out = _run(ROOT_HANDLER)
    assert level_line not in out, out  # its WARNING level stands; the worker adds no handler of its own
