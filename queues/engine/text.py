"""What text may reach PostgreSQL, checked in one place.

PostgreSQL ``text`` and ``json``/``jsonb`` refuse some values that Python strings carry happily, and
the refusal comes back as a raw ``DataError`` from deep inside a statement (or, in a worker, looked
like an outage). Every engine entry point runs what it sends to SQL through this module first:

- **NUL** (``"\\x00"``; ``\\u0000`` inside JSON): ``text`` cannot hold it, ``jsonb`` refuses the escape;
- **lone surrogates** (``"\\ud800"``; a ``\\ud800`` escape in JSON): not encodable as UTF-8;
- **non-finite numbers** (``NaN``, ``Infinity``, ``1e999``): JSON has no spelling for them;
- **too long**: past a column's length.

Values from producers (bodies, headers, names, group keys, dedup ids) are *refused* with the caller's
exception class (:func:`check_text`, :func:`check_json_text`); diagnostics recorded on a message's behalf
(error texts) are *made safe* instead (:func:`safe_text`), so the record is never lost to its content.
Other layers (forms, commands, search) can ask the same question with :func:`text_problem`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from queues.engine.errors import InvalidMessage

# A JSON escape of NUL not itself escaped: an odd run of backslashes before "u0000" (an even run is
# literal backslashes followed by the letters "u0000").
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_SURROGATES = re.compile("[\ud800-\udfff]")
_NUL_OR_SURROGATE = re.compile("[\x00\ud800-\udfff]")

REPLACEMENT = "\ufffd"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as PostgreSQL text (``None``: it can)."""
    if "\x00" in value:
        return f"contains a NUL character at position {value.index(chr(0))}"
    # Only non-ASCII text can hold a surrogate, and a str knows whether it is ASCII (isascii() reads a flag).
    found = None if value.isascii() else _SURROGATES.search(value)
    if found is not None:
        return (f"contains a lone surrogate {found.group()!r} at position {found.start()} "
                "(not a character: it cannot be encoded as UTF-8)")
    return None


def check_text(
    value: object,
    what: str,
    *,
    error: type[ValueError] = InvalidMessage,
    min_length: int = 0,
    max_length: int | None = None,
) -> str:
    """Return ``value`` if it is a str PostgreSQL can store within the bounds, else raise ``error``
    naming ``what``, the value and the fix."""
    if not isinstance(value, str):
        raise error(f"{what} must be a string, got {value!r}")
    problem = text_problem(value)
    if problem is not None:
        raise error(f"{what} {value[:200]!r} {problem}: remove it (encode binary data, e.g. as base64)")
    if len(value) < min_length or (max_length is not None and len(value) > max_length):
        if max_length is None:
            bound = f"at least {min_length}"
        else:
            bound = f"{min_length} to {max_length}" if min_length else f"at most {max_length}"
        raise error(f"{what} must be a string of {bound} characters, got {len(value)}: {value[:200]!r}")
    return value


def safe_text(value: str, *, max_length: int | None = None) -> str:
    """``value`` with NUL and lone surrogates replaced by U+FFFD and cut to ``max_length``: always storable.

    For text recorded on a message's behalf (a handler's error): losing the record over one
    character would be worse than showing the character as ``�``.
    """
    if _NUL_OR_SURROGATE.search(value) is not None:
        value = _NUL_OR_SURROGATE.sub(REPLACEMENT, value)
    if max_length is not None and len(value) > max_length:
        value = value[:max_length]
    return value


def json_text_problem(text: str) -> str | None:
    """Why JSON ``text`` as the engine's encoder writes it (``ensure_ascii=False``: only control
    characters escaped) cannot be stored in a ``json``/``jsonb`` column (``None``: it can)."""
    if "\\u0000" in text and _JSON_NUL.search(text) is not None:
        return "contains a NUL character (\\u0000)"
    return text_problem(text)


def check_json_text(text: str, what: str, *, error: type[ValueError] = InvalidMessage) -> str:
    """Return JSON ``text`` if PostgreSQL can store it, else raise ``error`` naming ``what``."""
    problem = json_text_problem(text)
    if problem is not None:
        raise error(f"{what} {problem}: remove it (encode binary data, e.g. as base64)")
    return text


# One encoder for every message: json.dumps with options builds a new encoder at each call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_json(value: Any, what: str, *, error: type[ValueError] = InvalidMessage) -> str:
    """``value`` as compact JSON text that PostgreSQL can store, else ``error`` naming ``what``."""
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        raise error(f"{what} is nested too deeply (or contains itself): flatten it") from None
    except (TypeError, ValueError) as exc:
        raise error(
            f"{what} is not JSON-serialisable ({exc}): send dicts, lists, strings, finite numbers, "
            "booleans or None; convert other objects (dates, Decimals, models) first"
        ) from None
    return check_json_text(text, what, error=error)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text[:40]} is out of range of a double (non-finite)")
    return number


def parse_json_text(text: object, what: str, *, error: type[ValueError] = InvalidMessage) -> Any:
    """Parse JSON ``text`` strictly (no ``NaN``/``Infinity``, no numbers that overflow a double, no NUL
    or lone surrogates, no nesting past Python's recursion limit); return the value or raise ``error``."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except UnicodeDecodeError as exc:
            raise error(f"{what} is not UTF-8 ({exc})") from None
    if not isinstance(text, str):
        raise error(f"{what} must be JSON text (a str), got {type(text).__name__}")
    check_json_text(text, what, error=error)
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise error(f"{what} is nested too deeply: flatten it") from None
    except ValueError as exc:  # JSONDecodeError, a refused constant, an int past Python's digit limit
        raise error(f"{what} is not valid JSON: {exc}") from None
    # Escapes decode to the characters PostgreSQL refuses (\u0000, a lone \ud800): look at the result.
    encode_json(value, what, error=error)
    return value


# json.loads's own scanner, called directly: loads() wraps it in type checks, a BOM check and two
# whitespace matches, which cost as much as scanning a small body (0.46 against 1.03 us for 60 bytes).
_scan_once = json.JSONDecoder().scan_once


def loads_column(value: Any) -> Any:
    """A JSON column's value as Python: psycopg hands text (``body::text``) as a string, jsonb parsed."""
    if isinstance(value, str):
        try:
            parsed, end = _scan_once(value, 0)
        except (StopIteration, ValueError):
            return json.loads(value)  # leading whitespace, or not JSON: loads says so or decodes it
        if end == len(value):
            return parsed
        return json.loads(value)  # trailing whitespace (or more): loads' rules decide
    return json.loads(value) if isinstance(value, bytes) else value
