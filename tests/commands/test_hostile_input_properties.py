"""No tracebacks, by construction: every ``mq_*`` command meets generated hostile arguments and either
succeeds or raises ``CommandError`` (one line, no traceback), and a refusal changes nothing.

Run in-process through ``call_command``: argparse's usage errors become ``CommandError`` there too.
The hostile classes are those of the dashboard's suite (``tests/dashboard/test_hostile_input_properties.py``)
plus lone surrogates, which a command line can carry (``os.fsdecode`` of invalid UTF-8 bytes).
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

import queues

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.property, pytest.mark.slow]

DEEP = "[" * 10_000 + "]" * 10_000
LITERALS = [
    "a\x00b", "\x00", "a\ud800b", "\udcff", "²", "١٢", "NaN", "Infinity", "-Infinity", "1e999", "2147483648",
    "-2147483649", "9223372036854775808", "9" * 5000, "0x10", "1.5", "-1", "0", "", " ", "x" * 100_000,
    "99999999999d", "1e308s", "99999999999999MiB", "Orders", "has space", "orders.dlq",
]
JSONS = ['{"a": "\\u0000"}', '{"\\u0000": 1}', '{"a": "\\ud800"}', '{"a": NaN}', '{"a": 1e999}',
         '{"a": ' + "9" * 5000 + "}", DEEP, '{"a": "x\x00"}', '{"a": 1,', '"\\udfff"']

hostile = st.one_of(
    st.sampled_from(LITERALS),
    st.text(max_size=30),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Nd", "No"]), max_size=8),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.from_regex(r"[0-9.]{1,8}(ms|s|m|h|d|k|KiB|MiB)?", fullmatch=True),
)


def _small_or_invalid(value: str) -> bool:
    """``--count`` values that end quickly: invalid ones, or at most 5 messages."""
    from queues.management.base import positive_int

    try:
        return positive_int(value) <= 5
    except Exception:
        return True


# command, argv of a valid call, options (or "@positional" to replace argv[index]) to make hostile
COMMANDS: list[tuple[str, list[str], list[str]]] = [
    ("mq_send", ["orders", "--body", "{}"],
     ["@0", "--body", "--header", "--delay", "--priority", "--group", "--dedup-id", "--batch-size"]),
    ("mq_send", ["orders", "--count", "1"], ["--rate", "--groups", "--batch-size"]),
    ("mq_queue", ["create", "fresh"],
     ["@1", "--kind", "--visibility-timeout", "--max-receives", "--dead-letter-queue", "--default-delay",
      "--retention", "--max-message-size", "--dedup-window"]),
    ("mq_queue", ["update", "orders", "--paused"],
     ["@1", "--visibility-timeout", "--max-receives", "--dead-letter-queue", "--default-delay", "--retention",
      "--max-message-size", "--dedup-window"]),
    ("mq_queue", ["delete", "gone", "--yes"], ["@1"]),
    ("mq_purge", ["gone", "--yes"], ["@0"]),
    ("mq_redrive", ["orders.dlq"], ["@0", "--to", "--rate", "--limit"]),
    ("mq_stats", ["orders"], ["@0"]),
    ("mq_prune", [], ["--batch"]),
    ("mq_worker", ["empty", "--burst"],
     ["@0", "--concurrency", "--prefetch", "--visibility-timeout", "--max-messages", "--max-seconds", "--grace",
      "--poll-interval", "--log-interval", "--prune-interval"]),
    ("mq_demo", ["--setup-only"], ["--workers", "--concurrency", "--rate", "--port", "--duration", "--grace"]),
    ("mq_db", ["url"], []),
]
CALLS = [(name, argv, option) for name, argv, options in COMMANDS for option in options]


def snapshot() -> tuple:
    """Queues, messages, counters, dedup ids, redrives and topics (audit rows may be added by a refusal)."""
    with connection.cursor() as cur:
        out = []
        for table in ("queues_queue", "queues_message", "queues_counter", "queues_dedup", "queues_redrive",
                      "queues_topic", "queues_subscription"):
            cur.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t")
            out.append((table, *cur.fetchone()))
    return tuple(out)


@pytest.fixture
def site(make_queue) -> None:
    make_queue("orders")
    make_queue("gone")
    make_queue("empty")


def run(name: str, argv: list[str]) -> Any:
    """Run a command; return None on success, the CommandError if refused. Anything else propagates."""
    try:
        call_command(name, *argv, stdout=io.StringIO(), stderr=io.StringIO())
    except CommandError as exc:
        return exc
    return None


# Spread over some 50 options: four times the profile's count (240 in make test).
@settings(max_examples=settings.default.max_examples * 4)
@given(call=st.sampled_from(CALLS), value=hostile, json_body=st.sampled_from(JSONS))
def test_every_command_option_refuses_hostile_values_with_a_command_error(site, call, value, json_body):
    name, argv, option = call
    if option == "--body" and value in ("", " "):
        value = json_body
    if option == "--count" and not _small_or_invalid(value):
        value = "3"
    argv = list(argv)
    if option.startswith("@"):
        argv[int(option[1:])] = value
    else:
        argv.append(f"{option}={value}")
    before = snapshot()
    refused = run(name, argv)
    if refused is not None:
        assert str(refused).strip(), f"{name} {argv!r:.200} refused without a message"
        assert "Traceback" not in str(refused)
        assert snapshot() == before, f"{name} {argv!r:.200} was refused but changed the database"


@given(body=st.one_of(st.sampled_from(JSONS), hostile))
def test_mq_send_refuses_hostile_json_bodies_with_a_command_error(site, body):
    before, depth = snapshot(), queues.queue_stats("orders").depth
    refused = run("mq_send", ["orders", "--body", body])
    if refused is not None:
        assert snapshot() == before, f"--body {body!r:.100} was refused but changed the database"
    else:
        assert queues.queue_stats("orders").depth == depth + 1


@pytest.mark.parametrize("argv, fragment", [
    (["--port", "99999"], "1 to 65,535"),
    (["--port", "²"], "digits 0-9"),
    (["--host", "a\x00b"], "cannot serve on"),
    (["--host", "a\ud800"], "cannot serve on"),
])
def test_mq_demo_refuses_a_bad_address_before_starting_anything(argv, fragment):
    with pytest.raises(CommandError, match=fragment):
        call_command("mq_demo", "--no-producer", "--workers", "0", "--duration", "0", *argv,
                     stdout=io.StringIO(), stderr=io.StringIO())
