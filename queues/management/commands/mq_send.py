"""``mq_send QUEUE``: send one message, a JSON-lines file of them, or generated load."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import CommandError, CommandParser

import queues
from queues import conf
from queues.engine.errors import MQError
from queues.engine.types import JSONText, Outgoing
from queues.management.base import (
    MQCommand,
    Progress,
    header,
    parse_duration,
    positive_float,
    positive_int,
    priority,
    sleep_unless,
    stop_on_signal,
)
from queues.validation import InvalidInput, parse_json

ENVELOPE_KEYS = {"body", "headers", "delay", "priority", "group", "dedup_id"}
MAX_BATCH = 10_000


class Command(MQCommand):
    help = (
        "Send messages to a queue. One message: --body '{\"a\": 1}' or --body-file msg.json. "
        "A file of messages: --file messages.jsonl (one JSON body per line; with --envelope each line is "
        "an object with \"body\" and optional \"headers\", \"delay\", \"priority\", \"group\", \"dedup_id\"). "
        "Generated load: --count 10000 --rate 500. The per-message options (--header, --delay, "
        "--priority, --group) apply to every message; in --envelope files a line's own values win. "
        "Sends are not audited: this is a producer, like queues.send in code (a row per message, as the "
        "dashboard's publish writes, would bury the operators' actions under load tests)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue", help="The queue to send to (it must exist: mq_queue create NAME).")
        what = parser.add_argument_group("what to send (exactly one)")
        what.add_argument("--body", metavar="JSON",
                          help="The message body as JSON: '{\"order_id\": 42}', '[1, 2]', '\"text\"', '7'.")
        what.add_argument("--body-file", metavar="PATH",
                          help="Read the body (one JSON document) from a file; - reads stdin.")
        what.add_argument("--file", metavar="PATH",
                          help="Send every line of a JSON-lines file (blank lines are skipped); - reads stdin. "
                               "All lines are sent in one transaction: a bad line sends nothing.")
        what.add_argument("--count", type=positive_int, metavar="N",
                          help="Send N generated messages with bodies {\"n\": i, \"sent_at\": \"<ISO time>\"}.")

        opts = parser.add_argument_group("message options")
        opts.add_argument("--header", type=header, action="append", default=[], metavar="NAME=VALUE",
                          help="A string header; repeat for several (--header source=cli --header tenant=7).")
        opts.add_argument("--delay", type=parse_duration, metavar="DURATION",
                          help="Deliver after this long (30, 30s, 5m; up to 15d). Default: the queue's default delay.")
        opts.add_argument("--ttl", type=parse_duration, metavar="DURATION",
                          help="Time to live: the message expires if still unreceived this long after it becomes "
                               "available (10s, 5m, 1d; up to 365d). Default: the queue's message TTL.")
        opts.add_argument("--priority", type=priority, default=0, metavar="N",
                          help="-100..100, larger is delivered first. Default: 0.")
        opts.add_argument("--group", metavar="KEY",
                          help="Group key (fifo queues deliver a group strictly in order, one at a time).")
        opts.add_argument("--dedup-id", metavar="ID",
                          help="Deduplication id: a repeat within the queue's dedup window is not stored again "
                               "(single messages and --envelope lines only).")

        file_opts = parser.add_argument_group("--file options")
        file_opts.add_argument("--envelope", action="store_true",
                               help="Each line is {\"body\": ..., \"headers\": {...}, \"delay\": seconds, "
                                    "\"priority\": n, \"group\": \"...\", \"dedup_id\": \"...\"} "
                                    "instead of a bare body.")

        load = parser.add_argument_group("--count options")
        load.add_argument("--rate", type=positive_float, metavar="R",
                          help="Messages per second at most. Default: as fast as possible.")
        load.add_argument("--groups", type=positive_int, metavar="N",
                          help="Spread messages over N group keys g0..g(N-1) (for fifo queues).")
        parser.add_argument("--batch-size", type=positive_int, default=500, metavar="N",
                            help=f"Messages per statement for --file and --count (1..{MAX_BATCH}). Default: 500.")

    def handle(self, *args: Any, **options: Any) -> None:
        modes = [m for m in ("body", "body_file", "file", "count") if options.get(m) is not None]
        if len(modes) != 1:
            given = ", ".join("--" + m.replace("_", "-") for m in modes)
            raise CommandError(
                ("choose one of --body, --body-file, --file or --count, not " + given) if modes else
                "nothing to send: pass --body JSON, --body-file PATH, --file PATH or --count N"
            )
        if options["batch_size"] > MAX_BATCH:
            raise CommandError(f"--batch-size {options['batch_size']} is too large: use at most {MAX_BATCH}")
        mode = modes[0]
        if mode != "count" and (options["rate"] is not None or options["groups"] is not None):
            raise CommandError("--rate and --groups apply to --count only")
        if mode != "file" and options["envelope"]:
            raise CommandError("--envelope applies to --file only")
        if mode in ("file", "count") and options["dedup_id"] is not None:
            raise CommandError(
                "--dedup-id would make every message after the first a duplicate: "
                "give each line its own \"dedup_id\" with --file and --envelope instead"
            )
        if options["groups"] is not None and options["group"] is not None:
            raise CommandError("pass --group (one key for all) or --groups N (spread), not both")
        template = Outgoing(
            body=None, headers=dict(options["header"]) or None, delay=options["delay"],
            priority=options["priority"], group=options["group"], dedup_id=options["dedup_id"], ttl=options["ttl"],
        )
        queue = options["queue"]
        queues.validate_name(queue)
        getattr(self, f"_send_{mode}")(queue, template, options)

    # -- one message --------------------------------------------------------------------------------
    def _send_body(self, queue: str, template: Outgoing, options: dict[str, Any]) -> None:
        _parse_json(options["body"], "--body")
        # Sent as the text given: key order, duplicate keys and spelling reach the consumer as written.
        self._send_one(queue, replace(template, body=JSONText(options["body"].strip())))

    def _send_body_file(self, queue: str, template: Outgoing, options: dict[str, Any]) -> None:
        path = options["body_file"]
        with _open(path, "--body-file") as handle:
            text = handle.read()
        _parse_json(text, path if path != "-" else "stdin")
        self._send_one(queue, replace(template, body=JSONText(text.strip())))

    def _send_one(self, queue: str, message: Outgoing) -> None:
        [message_id] = queues.send_batch(queue, [message])
        self.stdout.write(f"Sent message {message_id} to {queue!r}.")

    # -- a JSON-lines file --------------------------------------------------------------------------
    def _send_file(self, queue: str, template: Outgoing, options: dict[str, Any]) -> None:
        path = options["file"]
        label = "stdin" if path == "-" else path
        batch_size = options["batch_size"]
        started = time.monotonic()
        sent = 0
        # One transaction: a bad line anywhere (bad JSON, or a value the engine refuses) sends nothing.
        with _open(path, "--file") as handle, conf.atomic():
            batch: list[tuple[int, Outgoing]] = []
            for lineno, item in _read_lines(handle, label, template, options["envelope"]):
                batch.append((lineno, item))
                if len(batch) >= batch_size:
                    sent += _send_file_batch(queue, batch, label)
                    batch = []
            if batch:
                sent += _send_file_batch(queue, batch, label)
        if not sent:
            self.stdout.write(f"{label} holds no messages (only blank lines): nothing sent.")
            return
        self._summary(queue, sent, time.monotonic() - started)

    # -- generated load -----------------------------------------------------------------------------
    def _send_count(self, queue: str, template: Outgoing, options: dict[str, Any]) -> None:
        total = options["count"]
        rate = options["rate"]
        groups = options["groups"]
        # Small batches under a rate keep the pace smooth (about 20 sends a second).
        batch_size = options["batch_size"] if rate is None else max(1, min(options["batch_size"], int(rate / 20)))
        progress = Progress(self, total=total, label=f"sending to {queue}")
        sent = 0
        started = time.monotonic()
        with stop_on_signal() as stopped:
            while sent < total and not stopped():
                n = min(batch_size, total - sent)
                now = datetime.now(UTC).isoformat()
                batch = [
                    replace(template, body={"n": i, "sent_at": now},
                            group=f"g{i % groups}" if groups else template.group)
                    for i in range(sent, sent + n)
                ]
                queues.send_batch(queue, batch)
                sent += n
                progress.update(sent)
                if rate is not None and sent < total:
                    # An absolute schedule holds the average rate whatever a batch costs.
                    sleep_unless(stopped, started + sent / rate - time.monotonic())
            interrupted = stopped() and sent < total
        progress.update(sent, force=True)
        progress.finish()
        self._summary(queue, sent, time.monotonic() - started, interrupted=interrupted, total=total)

    def _summary(self, queue: str, sent: int, seconds: float, *, interrupted: bool = False,
                 total: int | None = None) -> None:
        rate = sent / seconds if seconds > 0 else float(sent)
        stop = f" (stopped by a signal before {total})" if interrupted else ""
        self.stdout.write(f"Sent {sent} messages to {queue!r} in {seconds:.2f} s ({rate:,.0f} msg/s){stop}.")


def _parse_json(text: str, where: str, lineno: int | None = None) -> Any:
    try:
        # Strict: no NaN/Infinity, no 5,000-digit numbers, no nesting thousands deep, no NUL.
        return parse_json(text, where if lineno is None else f"{where}, line {lineno}")
    except InvalidInput as exc:
        raise CommandError(str(exc)) from None
    except json.JSONDecodeError as exc:
        at = f"line {lineno}" if lineno is not None else f"line {exc.lineno}"
        raise CommandError(
            f"{where}, {at}, column {exc.colno}: invalid JSON ({exc.msg}). Bodies are JSON: "
            "'{\"order_id\": 42}', '\"a string in quotes\"', '7', 'null'"
        ) from None


class _open:
    """Open a path for reading, or stdin for ``-``; a missing or unreadable file is a CommandError."""

    def __init__(self, path: str, option: str) -> None:
        self.path = path
        self.option = option
        self.handle: TextIO | None = None

    def __enter__(self) -> TextIO:
        if self.path == "-":
            return sys.stdin
        try:
            self.handle = Path(self.path).open(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{self.option} {self.path!r}: cannot read it ({exc.strerror})") from None
        return self.handle

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()


def _read_lines(handle: TextIO, label: str, template: Outgoing, envelope: bool) -> Iterator[tuple[int, Outgoing]]:
    try:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            value = _parse_json(line.rstrip("\r\n"), label, lineno)
            if not envelope:
                yield lineno, replace(template, body=JSONText(line.strip()))
                continue
            if not isinstance(value, dict) or "body" not in value:
                raise CommandError(
                    f"{label}, line {lineno}: with --envelope each line must be an object with a \"body\" key, "
                    f"for example {{\"body\": {{\"a\": 1}}, \"priority\": 5}}; drop --envelope to send bare bodies"
                )
            unknown = set(value) - ENVELOPE_KEYS
            if unknown:
                raise CommandError(
                    f"{label}, line {lineno}: unknown key(s) {', '.join(sorted(map(repr, unknown)))}: "
                    f"an envelope may hold {', '.join(sorted(ENVELOPE_KEYS))}"
                )
            headers = value.get("headers")
            if template.headers and isinstance(headers, dict):
                headers = {**template.headers, **headers}
            elif headers is None:
                headers = template.headers
            yield lineno, Outgoing(
                body=value["body"], headers=headers,
                delay=value.get("delay", template.delay), priority=value.get("priority", template.priority),
                group=value.get("group", template.group), dedup_id=value.get("dedup_id"),
            )
    except UnicodeDecodeError as exc:
        raise CommandError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _send_file_batch(queue: str, batch: list[tuple[int, Outgoing]], label: str) -> int:
    try:
        with conf.atomic():
            queues.send_batch(queue, [item for _, item in batch])
    except MQError as exc:
        if isinstance(exc, queues.QueueNotFound):
            raise
        # The engine refused something in this batch; find the line so the user can fix it.
        for lineno, item in batch:
            try:
                with conf.atomic():
                    queues.send_batch(queue, [item])
            except MQError as line_exc:
                raise CommandError(f"{label}, line {lineno}: {line_exc}") from None
        raise
    return len(batch)
