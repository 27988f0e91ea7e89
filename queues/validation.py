"""One normalising step for what reaches SQL from outside: request parameters, form fields, command options.

The engine checks what it is given (``queues.engine.errors``); this module is for the layers above it,
which read text from people and scripts and must answer a clear 400 or ``CommandError`` instead of
letting PostgreSQL, ``int()`` or ``json.loads`` raise from deep inside a request. Every rule here names
the value and the fix, and raises :class:`InvalidInput` (a ``ValueError``) before anything is written:

- **text**: no NUL (PostgreSQL ``text`` cannot hold it), no lone surrogates (not encodable as UTF-8),
  at most a given length;
- **integers**: ASCII digits only (``"²"`` and ``"١٢"`` pass ``str.isdigit()``/``int()``), within the
  column's bounds (PostgreSQL ``integer`` is ±2^31-1, ``bigint`` ±2^63-1);
- **floats**: finite (``NaN``, ``Infinity`` and ``1e999`` are refused), within bounds;
- **command-line numbers**: durations (``30s``, ``5m``, ``1h30m``), sizes (``256KiB``), counts, rates and
  priorities as the ``mq_*`` commands take them (``queues.management.base`` adapts these parsers to
  argparse, which shows their message as the usage error);
- **JSON**: at most :data:`MAX_JSON_DEPTH` levels deep, numbers of at most :data:`MAX_JSON_NUMBER_CHARS`
  characters, no ``NaN``/``Infinity``, no NUL or lone surrogates in strings or keys; checked before
  ``json.loads`` builds anything.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""PostgreSQL ``integer`` (Django ``IntegerField``; ``PositiveIntegerField`` is 0..INT32_MAX)."""
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
"""PostgreSQL ``bigint`` (Django ``BigIntegerField``, ``BigAutoField``: message, redrive and audit ids)."""

MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects accepted in JSON typed by people (bodies, headers, search values).

PostgreSQL's jsonb parser and Python's ``json`` both recurse per level; thousands of levels exhaust
their stacks. A hundred is far past what a message needs.
"""
MAX_JSON_NUMBER_CHARS = 100
"""Longest number accepted in such JSON: beyond a double's range or precision it means nothing to a
consumer, and Python refuses integers past 4,300 digits with an error of its own."""

_INT = re.compile(r"-?[0-9]{1,4000}")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,4})?")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


class InvalidInput(ValueError):
    """A value from a request or a command line that cannot be used; the message says which and why."""


def _show(value: str, limit: int = 60) -> str:
    """A value for an error message: repr'd and cut, so a 100,000-character value stays readable."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"… ({len(value):,} characters)"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as PostgreSQL text (``None``: it can)."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return f"contains a NUL character at position {found.start()}"
    return f"contains a lone surrogate {found.group()!r} at position {found.start()} (not encodable as UTF-8)"


def clean_text(value: str, what: str, *, max_length: int | None = None) -> str:
    """``value`` if PostgreSQL can store it and it is at most ``max_length`` long; else :class:`InvalidInput`."""
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{what} {_show(value)} {problem}: remove it")
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(f"{what} is too long ({len(value):,} characters): use at most {max_length:,}")
    return value


def parse_int(text: str, what: str, *, minimum: int = INT32_MIN, maximum: int = INT32_MAX) -> int:
    """A whole number written in ASCII digits, within ``minimum``..``maximum``; else :class:`InvalidInput`."""
    stripped = text.strip()
    if not _INT.fullmatch(stripped):
        raise InvalidInput(f"{what} must be a whole number written with the digits 0-9, got {_show(text)}")
    value = int(stripped)
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{what} must be from {minimum:,} to {maximum:,}, got {_show(text)}")
    return value


def parse_float(text: str, what: str, *, minimum: float = -math.inf, maximum: float = math.inf) -> float:
    """A finite decimal number within ``minimum``..``maximum``; else :class:`InvalidInput`."""
    stripped = text.strip()
    value = float(stripped) if _FLOAT.fullmatch(stripped) else math.nan
    if not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number such as 30 or 0.5, got {_show(text)}")
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{what} must be from {minimum:g} to {maximum:g}, got {_show(text)}")
    return value


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON ``text`` (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not a JSON number: use a finite number, or a string")


def _number(kind: type) -> Any:
    def parse(literal: str) -> Any:
        if len(literal) > MAX_JSON_NUMBER_CHARS:
            raise InvalidInput(f"the number {_show(literal, 20)} is too long: use at most "
                               f"{MAX_JSON_NUMBER_CHARS} characters (send big numbers as strings)")
        value = kind(literal)
        if kind is float and not math.isfinite(value):
            raise InvalidInput(f"the number {_show(literal, 20)} is out of range: send it as a string")
        return value

    return parse


def check_json_value(value: Any, what: str) -> Any:
    """``value`` (parsed JSON) if every string and key in it can be stored; else :class:`InvalidInput`."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            clean_text(item, f"a string in {what}")
        elif isinstance(item, Mapping):
            for key, inner in item.items():
                clean_text(key, f"a key in {what}")
                stack.append(inner)
        elif isinstance(item, Iterable):
            stack.extend(item)
    return value


def parse_json(text: str, what: str, *, check_strings: bool = True) -> Any:
    """Parse JSON ``text`` strictly: ``json.JSONDecodeError`` if it is malformed (callers word that
    themselves), :class:`InvalidInput` naming ``what`` if it is too deep, holds unusable numbers, or
    (with ``check_strings``) strings PostgreSQL cannot store.

    Pass ``check_strings=False`` for a message body or headers on their way to the engine: it refuses
    NUL and lone surrogates itself (``InvalidMessage``), and the service audits that attempt with what
    was sent. Depth and numbers are checked here because ``json.loads`` itself fails on them."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(f"{what} nests {depth:,} levels deep: at most {MAX_JSON_DEPTH} are accepted")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_number(int), parse_float=_number(float))
    except json.JSONDecodeError:
        raise
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # a refusal of int() past its digit limit, a stack's end
        raise InvalidInput(f"{what} cannot be read: {exc}") from None
    return check_json_value(value, what) if check_strings else value


def loads_json(text: str, what: str, *, check_strings: bool = True) -> Any:
    """:func:`parse_json` with every refusal an :class:`InvalidInput` (syntax errors say line and column)."""
    try:
        return parse_json(text, what, check_strings=check_strings)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None


def unstorable_parameter(items: Iterable[tuple[str, Iterable[str]]]) -> str | None:
    """The first request parameter (name or value) PostgreSQL could not store, described; ``None`` if all can."""
    for key, values in items:
        problem = text_problem(key)
        if problem is not None:
            return f"the parameter name {_show(key)} {problem}"
        for value in values:
            problem = text_problem(value)
            if problem is not None:
                return f"the parameter {key!r} {problem}"
    return None


# -- numbers as the mq_* commands take them ---------------------------------------------------------
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SPACE = re.compile(r"(?<=[a-z])\s+|\s+(?=[a-z])")
MAX_DURATION = 10 * 365 * 86400.0
"""Longest duration accepted (10 years): longer than anything waits, and past it timedelta and sleep() overflow."""
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^([0-9]{1,12})\s*(b|kb|kib|k|mb|mib|m)?$")
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1000, "k": 1024, "kib": 1024, "mb": 1000**2, "m": 1024**2, "mib": 1024**2}


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``2.5``, ``500ms``, ``30s``, ``5m``, ``2h``, ``4d`` or combinations like ``1h30m``.

    From 0 to :data:`MAX_DURATION`; else :class:`InvalidInput`.
    """
    # "1h 30m" and "4 d" read as people write them: spaces next to a unit go; "1 0" stays an error.
    value = _UNIT_SPACE.sub("", text.strip().lower())
    try:
        seconds = parse_float(value, "duration")
    except InvalidInput:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise InvalidInput(
                f"invalid duration {_show(text)}: use seconds (30, 2.5) or a number with a unit: "
                "500ms, 30s, 5m, 2h, 4d, 1h30m"
            ) from None
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not 0 <= seconds <= MAX_DURATION:
        raise InvalidInput(f"invalid duration {_show(text)}: it must be from 0 to {MAX_DURATION:g} seconds (10 years)")
    return seconds


def parse_size(text: str) -> int:
    """Bytes from ``262144``, ``256KiB``, ``256k``, ``1MiB``, ``1MB``; else :class:`InvalidInput`."""
    match = _SIZE.match(text.strip().lower())
    if not match:
        raise InvalidInput(
            f"invalid size {_show(text)}: use bytes (262144) or a number with a unit: 256KiB, 1MiB, 500KB"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_count(text: str, *, minimum: int, maximum: int = INT32_MAX, example: str = "10") -> int:
    """A whole number in ASCII digits from ``minimum`` to ``maximum``; else :class:`InvalidInput`.

    The message says which bound was missed (``at least 1``, ``at most 65,535``), not only the range.
    """
    try:
        value = parse_int(text, "the number", minimum=-INT32_MAX * 2**32, maximum=INT32_MAX * 2**32)
    except InvalidInput:
        raise InvalidInput(f"invalid number {_show(text)}: use a whole number (digits 0-9) such as {example}") from None
    if maximum != INT32_MAX and not minimum <= value <= maximum:
        raise InvalidInput(f"invalid number {_show(text)}: it must be from {minimum:,} to {maximum:,}")
    if value < minimum:
        least = "0 or more" if minimum == 0 else f"at least {minimum:,}"
        raise InvalidInput(f"invalid number {_show(text)}: it must be {least}")
    if value > maximum:
        raise InvalidInput(f"invalid number {_show(text)}: it must be at most {maximum:,}")
    return value


def parse_positive_float(text: str) -> float:
    """A finite number greater than 0 (rates, intervals); else :class:`InvalidInput`."""
    try:
        value = parse_float(text, "the number")
    except InvalidInput:
        raise InvalidInput(f"invalid number {_show(text)}: use a number such as 100 or 0.5") from None
    if not value > 0:
        raise InvalidInput(f"invalid number {_show(text)}: it must be greater than 0")
    return value


def parse_priority(text: str) -> int:
    """A message priority, -100..100 (larger first); else :class:`InvalidInput`."""
    try:
        value = parse_int(text, "priority", minimum=-INT32_MAX, maximum=INT32_MAX)
    except InvalidInput:
        raise InvalidInput(f"invalid priority {_show(text)}: use a whole number from -100 to 100") from None
    if not -100 <= value <= 100:
        raise InvalidInput(f"invalid priority {_show(text)}: it must be from -100 to 100 (larger first)")
    return value


_DATE_ONLY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones() | {"UTC"})


def parse_instant(text: str, what: str, *, zone: str = "UTC", end_of_day: bool = False) -> datetime:
    """An aware datetime from ISO 8601 text typed by a person: ``2026-12-03``, ``2026-12-03 14:02``,
    ``2026-12-03T14:02:35.123``, each with an optional offset (``Z``, ``+05:30``).

    Without an offset the text is read in ``zone`` (an IANA name: the zone the page showed times in).
    A date alone is its first instant, or with ``end_of_day`` the first instant of the next day (an
    exclusive end). Anything else is :class:`InvalidInput` naming the value and the form to use.
    """
    value = text.strip()
    # Looked up in the known names, never handed to ZoneInfo as it is: the name is a path in tzdata.
    if zone not in _zone_names():
        raise InvalidInput(f"unknown time zone {_show(zone)}: use an IANA name such as UTC or Europe/Paris")
    tz = ZoneInfo(zone)
    try:
        if len(value) > 40:
            raise ValueError
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"invalid {what} {_show(text)}: use a date and time such as 2026-12-03 or 2026-12-03 14:05:00"
        ) from None
    if not 1900 <= parsed.year <= 9000:  # far years overflow once shifted to UTC, and mean a typo
        raise InvalidInput(f"invalid {what} {_show(text)}: the year must be from 1900 to 9000")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    if end_of_day and _DATE_ONLY.match(value):
        parsed += timedelta(days=1)
    return parsed
