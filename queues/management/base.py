"""What the ``mq_*`` commands share: error translation, option parsers, tables, progress, confirmation.

Commands stay thin: they parse options, call one service (operator actions) or the engine (sends,
reads), print. This module keeps the parts that
would otherwise be copied into each of them, so every command words errors and durations the same.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any, TextIO

from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, OperationalError, ProgrammingError

from queues import conf, validation
from queues.engine.errors import MQError
from queues.permissions import Action, CommandLineActor


class MQCommand(BaseCommand):
    """Base of the ``mq_*`` commands: bad input and unreachable databases become a ``CommandError``.

    The engine raises :class:`~queues.engine.errors.MQError` / ``ValueError`` subclasses whose
    messages already name the value and the fix; here they are re-raised as ``CommandError`` so the
    user sees one line, never a traceback. Ctrl-C outside a command's own handling exits with 130.

    Operator actions go through ``queues.services`` as :attr:`actor` (a
    :class:`~queues.permissions.CommandLineActor`), which audits them like the dashboard's. A command
    names the action it attempts with :meth:`attempt` first, so a failure before the service is reached
    (an unknown queue, a refused confirmation) is audited as the same action, outcome ``error``.
    """

    actor: CommandLineActor
    _attempt: tuple[Action, str] | None = None

    audits: dict[str, Action] = {}
    """The operator action a run attempts, by subcommand (``""``: the command itself). A usage error
    (an option value that does not parse) is audited as that action, like the dashboard's refused form."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """Django's parser, with usage errors of the :attr:`audits` actions audited before they are shown."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        if self.audits:
            _audit_usage_errors(parser, self.audits)
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        """Run the command, translating expected failures into ``CommandError`` (audited once)."""
        self.actor = CommandLineActor.current()
        self._attempt = None
        try:
            return super().execute(*args, **options)
        except CommandError as exc:
            self._audit_failure(exc)
            raise
        except KeyboardInterrupt:
            self.stderr.write("Interrupted.")
            raise SystemExit(130) from None
        except Exception as exc:
            error = self._command_error(exc)
            if error is None:
                raise
            raise error from None

    def _command_error(self, exc: Exception) -> CommandError | None:
        """``exc`` as the one line the user sees (None: unexpected, keep the traceback); audited once."""
        if isinstance(exc, OperationalError):  # before MQError: the engine's DatabaseUnavailable is both
            return CommandError(f"cannot reach PostgreSQL ({first_line(exc)}): {database_hint()}")
        if _audited(exc):  # a service refused it and wrote its row
            return CommandError(str(exc))
        if isinstance(exc, MQError | ValueError):
            self._audit_failure(exc)
            return CommandError(str(exc))
        if isinstance(exc, ProgrammingError):
            return CommandError(f"the database is not ready ({first_line(exc)}): run `python manage.py migrate` first")
        if isinstance(exc, DatabaseError):
            return CommandError(f"database error: {first_line(exc)}")
        return None

    def attempt(self, action: Action, *, queue: str = "") -> None:
        """Say which operator action this run is, so a failure before its service is audited as it."""
        self._attempt = (action, queue)

    def _audit_failure(self, exc: BaseException) -> None:
        if self._attempt is None or _audited(exc):
            return
        action, queue = self._attempt
        _services().refuse(actor=self.actor, action=action, queue=queue, error=str(exc))

    def write_plain_err(self, text: str, ending: str = "\n") -> None:
        """Write to stderr without the red error styling Django applies on a terminal."""
        self.stderr.write(text, style_func=_identity, ending=ending)
        self.stderr.flush()


def _services() -> ModuleType:
    # deferred: the services import the models, and this module is also imported where the queues app
    # is not installed (mq_worker's logging setup is tested so); only a running command needs them
    from queues import services

    return services


def _audit_usage_errors(parser: CommandParser, audits: dict[str, Action]) -> None:
    # call_command and run_from_argv both call parse_args(tokens); the tokens name the queue, because
    # a failed parse leaves no namespace to read it from.
    tokens: list[str] = []
    parse_args = parser.parse_args

    def remembering(args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        tokens[:] = [str(t) for t in (sys.argv[2:] if args is None else args)]
        return parse_args(args, namespace)

    parser.parse_args = remembering  # type: ignore[method-assign]
    # argparse's _actions is the same door Django's call_command uses to read a parser's options.
    targets = [("", parser)] + [
        (name, sub) for action in parser._actions if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
    ]
    for name, target in targets:
        if name in audits:
            _hook_error(target, audits[name], name, tokens)


def _hook_error(parser: argparse.ArgumentParser, action: Action, subcommand: str, tokens: list[str]) -> None:
    shown = parser.error

    def error(message: str) -> Any:
        rest = tokens[tokens.index(subcommand) + 1:] if subcommand in tokens else list(tokens)
        try:
            _services().refuse(actor=CommandLineActor.current(), action=action, queue=_first_positional(parser, rest),
                            error=message)
        except DatabaseError:  # no database to write to: the usage error is still worth showing
            pass
        return shown(message)

    parser.error = error  # type: ignore[method-assign]


def _first_positional(parser: argparse.ArgumentParser, tokens: Sequence[str]) -> str:
    """The first positional argument among ``tokens`` (the queue, for every audited command), or ``""``."""
    takes_value = {s for a in parser._actions for s in a.option_strings if a.nargs != 0}
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token.startswith("-") and token != "-":
            skip = token in takes_value
        else:
            return token
    return ""


def _audited(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, or was raised while handling, a failure a service has written a row for."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, _services().ActionFailed | PermissionDenied):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def database_hint() -> str:
    """What to check when mqadmin's database does not answer, in this project's own terms."""
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


# -- option parsers (argparse ``type=`` callables) ---------------------------------------------------
# The rules live in queues.validation (one home for commands and requests); argparse shows an
# ArgumentTypeError's message as the usage error but words any other ValueError as "invalid value".


def _parsed[T](parse: Callable[..., T], text: str, **limits: Any) -> T:
    try:
        return parse(text, **limits)
    except validation.InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``500ms``, ``5m``, ``1h30m``: :func:`queues.validation.parse_duration` for argparse."""
    return _parsed(validation.parse_duration, text)


def parse_size(text: str) -> int:
    """Bytes from ``262144``, ``256KiB``, ``1MiB``: :func:`queues.validation.parse_size` for argparse."""
    return _parsed(validation.parse_size, text)


def positive_int(text: str) -> int:
    """An integer from 1 to 2^31-1 (what PostgreSQL's ``integer`` holds), in ASCII digits."""
    return _parsed(validation.parse_count, text, minimum=1, example="10")


def non_negative_int(text: str) -> int:
    """An integer from 0 to 2^31-1, in ASCII digits."""
    return _parsed(validation.parse_count, text, minimum=0, example="5")


def port_number(text: str) -> int:
    """A TCP port, 1..65535."""
    return _parsed(validation.parse_count, text, minimum=1, maximum=65535, example="8000")


def positive_float(text: str) -> float:
    """A finite number > 0 (rates, intervals)."""
    return _parsed(validation.parse_positive_float, text)


def priority(text: str) -> int:
    """A message priority, -100..100."""
    return _parsed(validation.parse_priority, text)


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
