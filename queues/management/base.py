"""What the ``mq_*`` commands share: error translation, option parsers, tables, progress, confirmation.

Commands stay thin: they parse options, call the engine, print. This module keeps the parts that
would otherwise be copied into each of them, so every command words errors and durations the same.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, OperationalError, ProgrammingError

from queues.engine.errors import MQError

# Re-exported: the commands format settings with these; queues.formatting is their one home.
from queues.formatting import format_duration as format_duration
from queues.formatting import format_size as format_size
from queues.validation import INT32_MAX, InvalidInput, parse_float, parse_int


class MQCommand(BaseCommand):
    """Base of the ``mq_*`` commands: bad input and unreachable databases become a ``CommandError``.

    The engine raises :class:`~queues.engine.errors.MQError` / ``ValueError`` subclasses whose
    messages already name the value and the fix; here they are re-raised as ``CommandError`` so the
    user sees one line, never a traceback. Ctrl-C outside a command's own handling exits with 130.
    """

    def execute(self, *args: Any, **options: Any) -> Any:
        """Run the command, translating expected failures into ``CommandError``."""
        try:
            return super().execute(*args, **options)
        except CommandError:
            raise
        except OperationalError as exc:  # before MQError: the engine's DatabaseUnavailable is both
            raise CommandError(f"cannot reach PostgreSQL ({first_line(exc)}): {database_hint()}") from None
        except (MQError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        except ProgrammingError as exc:
            raise CommandError(
                f"the database is not ready ({first_line(exc)}): run `python manage.py migrate` first"
            ) from None
        except DatabaseError as exc:
            raise CommandError(f"database error: {first_line(exc)}") from None
        except KeyboardInterrupt:
            self.stderr.write("Interrupted.")
            raise SystemExit(130) from None

    def write_plain_err(self, text: str, ending: str = "\n") -> None:
        """Write to stderr without the red error styling Django applies on a terminal."""
        self.stderr.write(text, style_func=_identity, ending=ending)
        self.stderr.flush()


def database_hint() -> str:
    """What to check when mqadmin's database does not answer, in this project's own terms."""
    from django.apps import apps

    from queues import conf

    alias = conf.database_alias()
    if apps.is_installed("mqadmin"):  # this repository's demo site: DATABASE_URL or its embedded server
        return "check DATABASE_URL, or unset it to use the embedded server (python manage.py mq_db status)"
    return f"check settings.DATABASES[{alias!r}] (HOST, PORT, NAME, USER) and that the server is running"


def _identity(text: str) -> str:
    return text


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (database errors carry multi-line details)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- option parsers (argparse ``type=`` callables: their message becomes the usage error) -----------
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
# Longer than anything a queue or a worker waits for; past it, timedelta and sleep() overflow.
MAX_DURATION = 10 * 365 * 86400.0
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``2.5``, ``500ms``, ``30s``, ``5m``, ``2h``, ``4d`` or combinations like ``1h30m``."""
    value = text.strip().lower()
    try:
        seconds = parse_float(value, "duration")
    except InvalidInput:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r}: use seconds (30, 2.5) or a number with a unit: "
                "500ms, 30s, 5m, 2h, 4d, 1h30m"
            ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 <= seconds <= MAX_DURATION:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text[:60]!r}: it must be from 0 to {MAX_DURATION:g} seconds (10 years)"
        )
    return seconds


_SIZE = re.compile(r"^([0-9]{1,12})\s*(b|kb|kib|k|mb|mib|m)?$")
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1000, "k": 1024, "kib": 1024, "mb": 1000**2, "m": 1024**2, "mib": 1024**2}


def parse_size(text: str) -> int:
    """Bytes from ``262144``, ``256KiB``, ``256k``, ``1MiB``, ``1MB``."""
    match = _SIZE.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use bytes (262144) or a number with a unit: 256KiB, 1MiB, 500KB"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def _bounded_int(text: str, *, example: str, minimum: int, maximum: int = INT32_MAX) -> int:
    try:
        value = parse_int(text, "the number", minimum=-INT32_MAX * 2**32, maximum=INT32_MAX * 2**32)
    except InvalidInput:
        raise argparse.ArgumentTypeError(
            f"invalid number {text[:60]!r}: use a whole number (digits 0-9) such as {example}"
        ) from None
    if maximum != INT32_MAX and not minimum <= value <= maximum:
        raise argparse.ArgumentTypeError(f"invalid number {text[:60]!r}: it must be from {minimum:,} to {maximum:,}")
    if value < minimum:
        least = "0 or more" if minimum == 0 else f"at least {minimum:,}"
        raise argparse.ArgumentTypeError(f"invalid number {text[:60]!r}: it must be {least}")
    if value > maximum:
        raise argparse.ArgumentTypeError(f"invalid number {text[:60]!r}: it must be at most {maximum:,}")
    return value


def positive_int(text: str) -> int:
    """An integer from 1 to 2^31-1 (what PostgreSQL's ``integer`` holds), in ASCII digits."""
    return _bounded_int(text, example="10", minimum=1)


def non_negative_int(text: str) -> int:
    """An integer from 0 to 2^31-1, in ASCII digits."""
    return _bounded_int(text, example="5", minimum=0)


def port_number(text: str) -> int:
    """A TCP port, 1..65535."""
    return _bounded_int(text, example="8000", minimum=1, maximum=65535)


def positive_float(text: str) -> float:
    """A finite number > 0 (rates, intervals)."""
    try:
        value = parse_float(text, "the number")
    except InvalidInput:
        raise argparse.ArgumentTypeError(f"invalid number {text[:60]!r}: use a number such as 100 or 0.5") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid number {text[:60]!r}: it must be greater than 0")
    return value


def priority(text: str) -> int:
    """A message priority, -100..100."""
    try:
        value = parse_int(text, "priority", minimum=-INT32_MAX, maximum=INT32_MAX)
    except InvalidInput:
        raise argparse.ArgumentTypeError(
            f"invalid priority {text[:60]!r}: use a whole number from -100 to 100"
        ) from None
    if not -100 <= value <= 100:
        raise argparse.ArgumentTypeError(f"invalid priority {text[:60]!r}: it must be from -100 to 100 (larger first)")
    return value


def header(text: str) -> tuple[str, str]:
    """A ``NAME=VALUE`` message header."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"invalid header {text!r}: use NAME=VALUE, for example --header source=cli")
    return name, value


# -- formatting -------------------------------------------------------------------------------------
def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """A plain-text table; columns whose index is in ``right`` are right-aligned (numbers)."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def to_json(value: Any) -> str:
    """JSON for ``--json`` output: timedeltas as seconds, datetimes as ISO 8601."""

    def default(obj: Any) -> Any:
        if isinstance(obj, timedelta):
            return obj.total_seconds()
        if isinstance(obj, datetime):
            return obj.isoformat()
        raise TypeError(f"cannot encode {type(obj).__name__}")

    return json.dumps(value, default=default, ensure_ascii=False)


# -- interaction ------------------------------------------------------------------------------------
def confirm_by_name(
    command: MQCommand, *, name: str, action: str, yes: bool, stdin: TextIO | None = None, summary: str = ""
) -> None:
    """Go ahead only if ``--yes`` was given or the user types ``name`` at a terminal.

    Without ``--yes`` and without a terminal to ask at (a script, a pipe, cron), refuse: a
    destructive action never happens silently. Raises ``CommandError`` when not confirmed.
    """
    if yes:
        return
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        raise CommandError(
            f"refusing to {action} {name!r} without confirmation: stdin is not a terminal, so I cannot ask. "
            "Pass --yes to confirm in scripts."
        )
    if summary:
        command.stdout.write(summary)
    command.stdout.write(f"Type the queue name ({name}) to {action} it, or anything else to cancel: ", ending="")
    command.stdout.flush()
    answer = stdin.readline()
    if answer.strip() != name:
        raise CommandError(f"not confirmed (you typed {answer.strip()!r}): nothing was changed")


def cli_actor() -> str:
    """Who runs a command, for audit rows: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


def audit(action: str, *, queue: str = "", count: int = 0, detail: dict[str, Any] | None = None) -> None:
    """Record an operator action done from the command line, named like the dashboard's.

    ``action`` is a ``queues.permissions.Action``; the dashboard's services audit their own actions.
    Commands run with shell access to the database, so they check no Django permission.
    """
    from queues.models import AuditEvent
    from queues.services import clean_json, clean_text

    AuditEvent.objects.create(
        actor=None, actor_name=clean_text(cli_actor(), 150), action=action, queue_name=clean_text(queue, 80),
        count=count, detail=clean_json({"via": "command line", **(detail or {})}),
    )


@contextmanager
def stop_on_signal(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[Callable[[], bool]]:
    """Turn Ctrl-C (and SIGTERM) into a flag the command checks between batches.

    Yields a function that says whether a stop was asked for. A second signal raises
    ``KeyboardInterrupt`` for users who really want out now.
    """
    asked: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)

    previous = {}
    for sig in signals:
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: no signal handling, the command just runs
            pass
    try:
        yield lambda: bool(asked)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def sleep_unless(stopped: Callable[[], bool], seconds: float) -> None:
    """Sleep up to ``seconds``, waking early when ``stopped()`` turns true."""
    deadline = time.monotonic() + seconds
    while not stopped():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


class Progress:
    """Progress of a long command on stderr: a redrawn bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, command: MQCommand, *, total: int | None, label: str, unit: str = "msg",
                 interval: float = 2.0) -> None:
        self.command = command
        self.total = total
        self.label = label
        self.unit = unit
        self.interval = interval
        self.tty = command.stderr.isatty()
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def rate(self, done: int) -> float:
        """Average items per second so far."""
        elapsed = time.monotonic() - self.started
        return done / elapsed if elapsed > 0 else 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        """Show ``done`` items, at most every 0.1 s on a terminal or every ``interval`` seconds otherwise."""
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self.tty else self.interval):
            return
        self._last = now
        rate = self.rate(done)
        if self.total:
            share = min(done / self.total, 1.0)
            text = f"{done}/{self.total} {self.unit} ({share:.0%}), {rate:,.0f} {self.unit}/s"
        else:
            text = f"{done} {self.unit}, {rate:,.0f} {self.unit}/s"
        if self.tty:
            bar = ""
            if self.total:
                filled = int(share * 30)
                bar = "[" + "#" * filled + "." * (30 - filled) + "] "
            self.command.write_plain_err(f"\r\033[K{self.label} {bar}{text}", ending="")
            self._drawn = True
        else:
            self.command.write_plain_err(f"{self.label}: {text}")

    def finish(self) -> None:
        """End the redrawn line so the summary starts on its own line."""
        if self._drawn:
            self.command.write_plain_err("")
            self._drawn = False
