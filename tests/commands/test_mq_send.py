"""mq_send: one message, a JSON-lines file, or generated load."""

from __future__ import annotations

import io
import time

import pytest
from django.core.management.base import CommandError

import queues
from queues.models import Message


def bodies(queue: str) -> list:
    return [m.body for m in queues.peek(queue, limit=1000)]


def test_one_message_with_every_option(cmd, make_queue):
    make_queue("orders")
    out = cmd("mq_send", "orders", "--body", '{"order_id": 42}', "--header", "source=cli", "--header", "tenant=a=b",
              "--delay", "5m", "--priority", "7", "--group", "g1", "--dedup-id", "o-42").out
    [message] = queues.peek("orders")
    assert message.body == {"order_id": 42}
    assert message.headers == {"source": "cli", "tenant": "a=b"}
    assert (message.priority, message.group, message.dedup_id, message.state) == (7, "g1", "o-42", "delayed")
    assert 290 < (message.available_at - message.enqueued_at).total_seconds() <= 300
    assert out.strip() == f"Sent message {message.id} to 'orders'."


def test_dedup_id_sends_once(cmd, make_queue):
    make_queue("orders")
    first = cmd("mq_send", "orders", "--body", "1", "--dedup-id", "x").out
    second = cmd("mq_send", "orders", "--body", "2", "--dedup-id", "x").out
    assert first == second
    assert bodies("orders") == [1]


def test_body_file_and_stdin(cmd, make_queue, tmp_path, monkeypatch):
    make_queue("orders")
    path = tmp_path / "body.json"
    path.write_text('{\n  "a": [1, 2]\n}\n')
    cmd("mq_send", "orders", "--body-file", str(path))
    monkeypatch.setattr("sys.stdin", io.StringIO('"from stdin"'))
    cmd("mq_send", "orders", "--body-file", "-")
    assert bodies("orders") == [{"a": [1, 2]}, "from stdin"]


def test_invalid_json_names_the_line(cmd, make_queue, tmp_path):
    make_queue("orders")
    with pytest.raises(CommandError, match=r"--body, line 1, column 2: invalid JSON .*'\{\"order_id\": 42\}'"):
        cmd("mq_send", "orders", "--body", "{a: 1}")
    path = tmp_path / "body.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(CommandError, match=rf"{path}, line 4, column 1: invalid JSON"):
        cmd("mq_send", "orders", "--body-file", str(path))
    assert not Message.objects.exists()


def test_missing_body_file(cmd, make_queue, tmp_path):
    make_queue("orders")
    with pytest.raises(CommandError, match=r"--body-file '.*nope.json': cannot read it \(No such file"):
        cmd("mq_send", "orders", "--body-file", str(tmp_path / "nope.json"))


def test_file_of_bare_bodies_in_batches(cmd, make_queue, tmp_path):
    make_queue("orders")
    path = tmp_path / "messages.jsonl"
    path.write_text('{"n": 1}\n\n"two"\n3\n[4]\nnull\n')
    out = cmd("mq_send", "orders", "--file", str(path), "--batch-size", "2", "--priority", "3").out
    assert bodies("orders") == [{"n": 1}, "two", 3, [4], None]
    assert {m.priority for m in queues.peek("orders")} == {3}
    assert out.startswith("Sent 5 messages to 'orders' in ") and "msg/s" in out


def test_file_from_stdin(cmd, make_queue, monkeypatch):
    make_queue("orders")
    monkeypatch.setattr("sys.stdin", io.StringIO("1\n2\n"))
    cmd("mq_send", "orders", "--file", "-")
    assert bodies("orders") == [1, 2]


def test_bad_line_in_file_sends_nothing(cmd, make_queue, tmp_path):
    make_queue("orders")
    path = tmp_path / "messages.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}\n{"n": 3\n{"n": 4}\n')
    # batch size 1: the first two lines were sent before line 3 was read; they roll back too.
    with pytest.raises(CommandError, match=r"messages.jsonl, line 3, column 8: invalid JSON"):
        cmd("mq_send", "orders", "--file", str(path), "--batch-size", "1")
    assert not Message.objects.exists()
    assert queues.queue_stats("orders").sent_total == 0


def test_envelope_lines_carry_their_own_options(cmd, make_queue, tmp_path):
    make_queue("pay", kind="fifo")
    path = tmp_path / "messages.jsonl"
    path.write_text(
        '{"body": {"a": 1}, "group": "acct-1", "priority": 5, "headers": {"k": "line"}}\n'
        '{"body": {"a": 2}, "dedup_id": "d2", "delay": 60}\n'
        '{"body": {"a": 3}, "dedup_id": "d2"}\n'
    )
    cmd("mq_send", "pay", "--file", str(path), "--envelope", "--group", "default", "--header", "k=cli",
        "--header", "src=cli")
    first, second = queues.peek("pay")
    assert (first.body, first.group, first.priority, first.headers) == (
        {"a": 1}, "acct-1", 5, {"k": "line", "src": "cli"})
    assert (second.body, second.group, second.dedup_id, second.state, second.headers) == (
        {"a": 2}, "default", "d2", "delayed", {"k": "cli", "src": "cli"})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"priority": 1}', r"line 2: with --envelope each line must be an object with a \"body\" key"),
        ('[1, 2]', r"line 2: with --envelope each line must be an object"),
        ('{"body": 1, "prio": 1}', r"line 2: unknown key\(s\) 'prio': an envelope may hold body, dedup_id"),
        ('{"body": 1, "priority": 300}', r"line 2: priority must be an integer from -100 to 100, got 300"),
        ('{"body": 1, "delay": "soon"}', r"line 2: delay must be a number of seconds, got 'soon'"),
        ('{"body": 1, "headers": {"n": 1}}', r"line 2: headers must map strings to strings"),
    ],
)
def test_bad_envelope_line_sends_nothing(cmd, make_queue, tmp_path, line, message):
    make_queue("orders")
    path = tmp_path / "messages.jsonl"
    path.write_text('{"body": "fine"}\n' + line + "\n" + '{"body": "also fine"}\n')
    with pytest.raises(CommandError, match=message):
        cmd("mq_send", "orders", "--file", str(path), "--envelope", "--batch-size", "10")
    assert not Message.objects.exists()


def test_count_generates_numbered_bodies_spread_over_groups(cmd, make_queue):
    make_queue("pay", kind="fifo")
    out = cmd("mq_send", "pay", "--count", "7", "--groups", "3", "--batch-size", "2").out
    messages = queues.peek("pay")
    assert [m.body["n"] for m in messages] == list(range(7))
    assert all("sent_at" in m.body for m in messages)
    assert [m.group for m in messages] == ["g0", "g1", "g2", "g0", "g1", "g2", "g0"]
    assert "Sent 7 messages to 'pay'" in out


def test_count_at_a_rate_is_paced(cmd, make_queue):
    make_queue("orders")
    started = time.monotonic()
    out = cmd("mq_send", "orders", "--count", "12", "--rate", "10").out
    # 12 messages at 10/s: the last batch goes out 1.1 s after the first at the earliest.
    assert time.monotonic() - started >= 1.0
    assert queues.queue_stats("orders").depth == 12
    assert "Sent 12 messages" in out


def test_progress_is_a_bar_on_a_terminal(cmd, make_queue):
    make_queue("orders")
    result = cmd("mq_send", "orders", "--count", "300", "--batch-size", "100", tty=True)
    assert "\r" in result.err
    assert "[" + "#" * 30 + "] 300/300 msg (100%)" in result.err
    assert "\x1b[31m" not in result.err  # not painted as an error
    assert "Sent 300 messages" in result.out


def test_progress_is_plain_lines_otherwise(cmd, make_queue):
    make_queue("orders")
    result = cmd("mq_send", "orders", "--count", "300", "--batch-size", "100")
    assert "\r" not in result.err
    assert result.err.splitlines()[-1].startswith("sending to orders: 300/300 msg (100%), ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], r"nothing to send: pass --body JSON, --body-file PATH, --file PATH or --count N"),
        (["--body", "1", "--count", "2"], r"choose one of .* not --body, --count"),
        (["--body", "1", "--rate", "5"], r"--rate and --groups apply to --count only"),
        (["--body", "1", "--envelope"], r"--envelope applies to --file only"),
        (["--count", "2", "--dedup-id", "x"], r"--dedup-id would make every message after the first a duplicate"),
        (["--file", "-", "--envelope", "--dedup-id", "x"], r"give each line its own \"dedup_id\""),
        (["--count", "2", "--group", "a", "--groups", "2"], r"not both"),
        (["--count", "2", "--batch-size", "20000"], r"--batch-size 20000 is too large: use at most 10000"),
        (["--count", "0"], r"invalid number '0': it must be at least 1"),
        (["--body", "1", "--priority", "101"], r"invalid priority '101': it must be from -100 to 100"),
        (["--body", "1", "--delay", "later"], r"invalid duration 'later'"),
        (["--body", "1", "--delay", "16d"], r"delay must be between 0 and 1.296e\+06 seconds \(15 days\)"),
        (["--body", "1", "--header", "novalue"], r"invalid header 'novalue': use NAME=VALUE"),
        (["--body", "1", "--group", "x" * 129], r"group must be a string of 1 to 128 characters"),
        (["--body", '"' + "x" * 300 + '"'], r"message of \d+ bytes exceeds queue 'orders'.*max message size of 256"),
    ],
)
def test_bad_input_sends_nothing(cmd, make_queue, args, message):
    make_queue("orders", max_message_size=256)
    with pytest.raises(CommandError, match=message):
        cmd("mq_send", "orders", *args)
    assert not Message.objects.exists()


def test_unknown_queue(cmd):
    with pytest.raises(CommandError, match=r"queue 'nope' does not exist: create it first"):
        cmd("mq_send", "nope", "--count", "3")
    with pytest.raises(CommandError, match=r"invalid queue name 'No'"):
        cmd("mq_send", "No", "--body", "1")


@pytest.mark.slow
def test_ctrl_c_stops_generated_load_after_a_batch(spawn_manage, make_queue):
    make_queue("orders")
    running = spawn_manage("mq_send", "orders", "--count", "100000", "--rate", "40")
    running.wait_for_output("sending to orders:")
    running.signal()
    assert running.finish() == 0
    assert "Traceback" not in running.stderr
    summary = running.stdout.strip()
    assert "(stopped by a signal before 100000)" in summary
    sent = int(summary.split()[1])
    assert 0 < sent < 100000
    assert queues.queue_stats("orders").depth == sent
