"""What every mq_* command promises: --help explains each option, errors are one line, never a traceback."""

from __future__ import annotations

import argparse
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.core.management import load_command_class

from queues.formatting import format_duration
from queues.management.base import parse_duration, parse_size

COMMANDS = ["mq_queue", "mq_send", "mq_stats", "mq_purge", "mq_cancel", "mq_redrive", "mq_prune", "mq_db", "mq_demo"]
# Which app provides each command: mq_db and mq_demo belong to the demo site, not to the app hosts install.
APP_OF = {"mq_db": "mqadmin", "mq_demo": "mqadmin"}


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_explains_every_option(name):
    command = load_command_class(APP_OF.get(name, "queues"), name)
    assert command.help
    for parser in _parsers(command.create_parser("manage.py", name)):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(a.help for a in action._choices_actions), f"{name}: a subcommand has no help"
                continue
            assert action.help, f"{name} {parser.prog}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_from_the_shell(run_manage, name):
    result = run_manage(name, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: manage.py " + name)


@pytest.mark.parametrize(
    "args",
    [["mq_stats"], ["mq_queue", "list"], ["mq_send", "orders", "--body", "1"], ["mq_prune"]],
)
def test_unreachable_database_is_one_clear_line(run_manage, subprocess_env, args, monkeypatch):
    monkeypatch.setitem(subprocess_env, "DATABASE_URL", "postgresql://postgres@/nowhere?host=/nonexistent-dir")
    result = run_manage(*args)
    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: cannot reach PostgreSQL (")
    assert "check DATABASE_URL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unmigrated_database_says_to_migrate(run_manage, subprocess_env, database_url, monkeypatch):
    def on(database: str) -> str:
        return urlunsplit(urlsplit(database_url)._replace(path="/" + database))

    name = f"test_commands_empty_{uuid.uuid4().hex[:8]}"
    admin_url = on("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        monkeypatch.setitem(subprocess_env, "DATABASE_URL", on(name))
        result = run_manage("mq_stats")
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "CommandError: the database is not ready (relation \"queues_queue\" does not exist): "
            "run `python manage.py migrate` first"
        )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("2.5", 2.5), ("500ms", 0.5), ("30s", 30), ("5m", 300), ("2h", 7200), ("4d", 345600),
     ("1h30m", 5400), ("1m30s", 90), ("0", 0)],
)
def test_durations_parse_and_print_back(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "-3", "1 0", "1h 3 0m", "m5", "nan", "inf"])
def test_bad_durations(text):
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "size"), [("262144", 262144), ("256KiB", 262144), ("256k", 262144),
                                            ("1MiB", 1048576), ("1MB", 1000000), ("16b", 16)])
def test_sizes(text, size):
    assert parse_size(text) == size
