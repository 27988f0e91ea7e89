"""Every public engine function meets generated hostile arguments and returns, or raises a documented
exception having written nothing: one of ``queues.engine.errors`` (``MQError``), or the ``ValueError`` /
``LookupError`` family that module documents for bad input. Never a database error, a ``RecursionError``,
an ``OverflowError`` or a ``UnicodeEncodeError`` from deep inside a statement.

Arguments keep their declared kind (a name is a ``str``, ids are integers) but take hostile values:
NUL and lone surrogates in any text or JSON key, non-finite and huge numbers, integers past
PostgreSQL's ``integer``/``bigint``, bodies nested thousands deep, malformed names and receipts. Passing
a list where a name is expected is a programming error (``TypeError``) and out of scope here.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from hypothesis import given, settings
from hypothesis import strategies as st

import queues
from queues.engine.errors import MQError
from tests.engine.conftest import table_snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.property, pytest.mark.slow]


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


TEXT_LITERALS = ["a\x00b", "\x00", "a\ud800b", "\udfff", "", " ", "x" * 100_000, "Orders", "-lead", "has space",
                 "ünïcode", "orders\n", "orders", "orders.dlq", "²", "٣"]
texts = st.one_of(st.sampled_from(TEXT_LITERALS), st.text(max_size=20),
                  st.text(st.characters(codec=None, categories=["Cs", "Cc"]), min_size=1, max_size=4))
big_ints = st.one_of(
    st.sampled_from([0, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1]),
    st.builds(pow, st.just(10), st.just(5000)),  # built, not listed: Hypothesis cannot repr 5,000 digits
    st.integers(min_value=-(2**80), max_value=2**80),
)
numbers = st.one_of(big_ints, st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -1e308, 5e-324]))
scalars = st.one_of(numbers, texts, st.booleans(), st.none())
json_leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
bodies = st.one_of(
    st.recursive(json_leaves, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(texts, inner, max_size=3)), max_leaves=8),
    st.builds(_deep, st.sampled_from([5_000, 200, 101])),
    st.builds(lambda inner: {"a": inner}, st.builds(_deep, st.just(3_000))),
)
headers = st.one_of(st.none(), st.dictionaries(texts, texts, max_size=3))
receipts = st.one_of(texts, st.builds(lambda i, t: f"{i}:{t}", st.integers(min_value=-(2**80), max_value=2**80),
                                      st.sampled_from(["0" * 32, "x", ""])))
id_lists = st.lists(st.one_of(big_ints, scalars), max_size=3)

# name -> (function, {keyword or position: strategy}); positions are ints. Valid defaults fill the rest.
CALLS: dict[str, tuple[Callable[..., Any], dict[Any, st.SearchStrategy]]] = {
    "send": (lambda q, body, headers, delay, priority, group, dedup_id: queues.send(
        q, body, headers=headers, delay=delay, priority=priority, group=group, dedup_id=dedup_id),
        {"q": texts, "body": bodies, "headers": headers, "delay": scalars, "priority": scalars, "group": texts,
         "dedup_id": texts}),
    "send_batch": (lambda q, body, group, dedup_id: queues.send_batch(
        q, [queues.Outgoing(body=body, group=group, dedup_id=dedup_id), body]),
        {"q": texts, "body": bodies, "group": texts, "dedup_id": texts}),
    "receive": (lambda q, n, vt: queues.receive(q, max_messages=n, visibility_timeout=vt),
                {"q": texts, "n": scalars, "vt": scalars}),
    "ack": (lambda r: queues.ack(r), {"r": receipts}),
    "ack_batch": (lambda r: queues.ack_batch([r]), {"r": receipts}),
    "nack": (lambda r, delay, error: queues.nack(r, delay=delay, error=error),
             {"r": receipts, "delay": scalars, "error": texts}),
    "extend": (lambda r, vt: queues.extend(r, visibility_timeout=vt), {"r": receipts, "vt": scalars}),
    "extend_batch": (lambda r, vt: queues.extend_batch([r], visibility_timeout=vt), {"r": receipts, "vt": scalars}),
    "release_batch": (lambda r: queues.release_batch([r]), {"r": receipts}),
    "parse_receipt": (lambda r: queues.parse_receipt(r), {"r": receipts}),
    "purge": (lambda q: queues.purge(q), {"q": texts}),
    "pause": (lambda q: queues.pause(q), {"q": texts}),
    "resume": (lambda q: queues.resume(q), {"q": texts}),
    "peek": (lambda q, limit, after, ids: queues.peek(q, limit=limit, after_id=after, ids=ids),
             {"q": texts, "limit": scalars, "after": scalars, "ids": id_lists}),
    "delete_messages": (lambda q, ids: queues.delete_messages(q, ids), {"q": texts, "ids": id_lists}),
    "retry_now": (lambda q, ids: queues.retry_now(q, ids), {"q": texts, "ids": id_lists}),
    "move_messages": (lambda q, ids, to: queues.move_messages(q, ids, to=to),
                      {"q": texts, "ids": id_lists, "to": texts}),
    "redrive_batch": (lambda q, to, limit: queues.redrive_batch(q, to=to, limit=limit),
                      {"q": texts, "to": st.one_of(st.none(), texts), "limit": scalars}),
    "redrive": (lambda q, to, rate, limit, by: queues.redrive(q, to=to, rate=rate, limit=limit, requested_by=by),
                {"q": texts, "to": st.one_of(st.none(), texts), "rate": scalars, "limit": scalars, "by": texts}),
    "stop_redrive": (lambda i: queues.stop_redrive(i), {"i": scalars}),
    "reap_redrives": (lambda s: queues.reap_redrives(stale_after=s), {"s": scalars}),
    "prune": (lambda b: queues.prune(batch=b), {"b": scalars}),
    "create_queue": (lambda q, dlq, kind, vt, mr, mms, ret, delay, dedup: queues.create_queue(
        q, dead_letter_queue=dlq, kind=kind, visibility_timeout=vt, max_receives=mr, max_message_size=mms,
        retention=ret, default_delay=delay, dedup_window=dedup),
        {"q": texts, "dlq": st.one_of(st.none(), texts), "kind": texts, "vt": scalars, "mr": scalars,
         "mms": scalars, "ret": scalars, "delay": scalars, "dedup": scalars}),
    "update_queue": (lambda q, mr, paused, dlq: queues.update_queue(q, max_receives=mr, paused=paused,
                                                                    dead_letter_queue=dlq),
                     {"q": texts, "mr": scalars, "paused": scalars, "dlq": st.one_of(st.none(), texts)}),
    "ensure_queue": (lambda q: queues.ensure_queue(q), {"q": texts}),
    "get_queue": (lambda q: queues.get_queue(q), {"q": texts}),
    "delete_queue": (lambda q: queues.delete_queue(q), {"q": texts}),
    "stats": (lambda q: queues.stats([q]), {"q": texts}),
    "queue_stats": (lambda q: queues.queue_stats(q), {"q": texts}),
    "validate_name": (lambda q: queues.validate_name(q), {"q": texts}),
    "subscribe": (lambda t, q, f: queues.subscribe(t, q, filter=f), {"t": texts, "q": texts, "f": headers}),
    "unsubscribe": (lambda t, q: queues.unsubscribe(t, q), {"t": texts, "q": texts}),
    "publish": (lambda t, body, h, group, priority: queues.publish(t, body, headers=h, group=group, priority=priority),
                {"t": texts, "body": bodies, "h": headers, "group": st.one_of(st.none(), texts),
                 "priority": scalars}),
}

# Each argument is valid with this probability's complement, so a call usually fails on one thing at a
# time and the valid paths (and what lies behind the first check) are reached too.
VALID: dict[str, Any] = {
    "q": "orders", "to": "other", "t": "events", "body": {"order_id": 42}, "headers": None, "h": None, "f": None,
    "delay": None, "priority": 0, "group": None, "dedup_id": None, "n": 1, "vt": None, "error": "", "limit": 10,
    "after": None, "ids": [1], "rate": None, "by": "", "i": 1, "s": 60, "b": 100, "dlq": None, "kind": "standard",
    "mr": 5, "mms": 1024, "ret": 3600, "dedup": 60, "paused": False,
}


@pytest.fixture
def site(make_queue) -> None:
    make_queue("orders")
    make_queue("other")
    make_queue("groups", kind="fifo")
    queues.subscribe("events", "orders")
    queues.send("orders", {"order_id": 1})


class _Undo(Exception):
    """Rolls an example's changes back so every example starts from the same queues."""


# Examples are cheap here and spread over 37 functions: six times the profile's count (360 in make test).
@settings(max_examples=settings.default.max_examples * 6)
@given(name=st.sampled_from(sorted(CALLS)), data=st.data())
def test_every_engine_function_returns_or_raises_a_documented_error(site, name, data):
    function, params = CALLS[name]
    args = {}
    for key, strategy in params.items():
        hostile = data.draw(st.booleans(), label=f"{key} hostile")
        args[key] = data.draw(strategy, label=key) if hostile or key not in VALID else VALID[key]
    if name == "receive" and args["q"] == "groups":
        args["q"] = "orders"
    try:
        with transaction.atomic():
            before = table_snapshot()
            try:
                function(**args)
            except (MQError, ValueError, LookupError) as exc:
                if isinstance(exc, UnicodeError) and not isinstance(exc, MQError):
                    raise  # a lone surrogate reached the driver: not a documented refusal
                assert isinstance(exc, ValueError | LookupError), f"{type(exc).__name__} is not a ValueError"
                assert str(exc), f"{name} raised {type(exc).__name__} without a message"
                assert table_snapshot() == before, f"{name}({_short(args)}) refused but wrote something"
            raise _Undo
    except _Undo:
        pass


def _short(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in args.items())


def _show(value: Any) -> str:
    """A short, always printable picture of an argument (deep lists and 5,000-digit ints included)."""
    if isinstance(value, int) and abs(value) > 10**30:
        return f"<{value.bit_length()}-bit int>"
    try:
        if isinstance(value, list | dict):
            return reprlib.Repr(maxlevel=3, maxstring=40, maxother=40, maxlong=40).repr(value)
        return repr(value)[:120]
    except ValueError:  # an int past repr's 4,300 digits, nested somewhere
        return "<unprintable>"
