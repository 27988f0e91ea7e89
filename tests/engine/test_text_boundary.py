"""What reaches PostgreSQL text or json is checked at the engine's boundary: a producer's NUL, lone
surrogate, non-finite number or over-long value is refused with the documented exception (nothing
written); a consumer's error text is made safe so it is always recorded."""

from __future__ import annotations

import pytest

import queues
from queues.engine import text
from tests.engine.conftest import table_snapshot

NUL, SURROGATE = "\x00", "\ud800"


@pytest.fixture
def queue(make_queue) -> str:
    return make_queue("orders")


@pytest.fixture
def fifo(make_queue) -> str:
    return make_queue("orders.fifo", kind="fifo")


@pytest.fixture
def unchanged():
    """Fail the test if the message, dedup or counter tables changed."""
    before = table_snapshot()
    yield
    assert table_snapshot() == before, "a refused call wrote something"


BAD_BODIES = [
    pytest.param({"note": f"a{NUL}b"}, "NUL", id="nul-in-value"),
    pytest.param({f"k{NUL}": 1}, "NUL", id="nul-in-key"),
    pytest.param([["deep", {"x": NUL}]], "NUL", id="nul-nested"),
    pytest.param(f"{NUL}", "NUL", id="nul-string-body"),
    pytest.param({"note": SURROGATE}, "surrogate", id="surrogate-in-value"),
    pytest.param({SURROGATE: 1}, "surrogate", id="surrogate-in-key"),
    pytest.param({"n": float("nan")}, "JSON", id="nan"),
    pytest.param({"n": float("inf")}, "JSON", id="infinity"),
    pytest.param([-float("inf")], "JSON", id="minus-infinity"),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_BODIES)
def test_send_refuses_bodies_postgresql_cannot_store(queue, unchanged, body, fragment):
    for call in (
        lambda: queues.send(queue, body),
        lambda: queues.send(queue, body, dedup_id="d-1"),
        lambda: queues.send_batch(queue, [{"ok": 1}, body]),
        lambda: queues.send_batch(queue, [queues.Outgoing(body={"ok": 1}, dedup_id="d-2"), queues.Outgoing(body)]),
    ):
        with pytest.raises(queues.InvalidMessage, match=fragment):
            call()


def test_send_refuses_deep_nesting(queue, unchanged):
    body: list = []
    for _ in range(5000):
        body = [body]
    with pytest.raises(queues.InvalidMessage, match="nested too deeply"):
        queues.send(queue, body)


def test_an_escaped_backslash_before_u0000_is_not_a_nul(queue):
    # The JSON text holds "\\u0000" (a backslash, then the letters u0000): a legal string.
    message_id = queues.send(queue, {"path": "C:\\u0000"})
    [delivery] = queues.receive(queue)
    assert (delivery.id, delivery.body) == (message_id, {"path": "C:\\u0000"})


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"tenant": f"ac{NUL}me"}, "NUL"),
        ({f"ten{NUL}ant": "acme"}, "NUL"),
        ({"tenant": SURROGATE}, "surrogate"),
        ({SURROGATE: "acme"}, "surrogate"),
    ],
)
def test_send_refuses_headers_postgresql_cannot_store(queue, unchanged, headers, fragment):
    with pytest.raises(queues.InvalidMessage, match=fragment):
        queues.send(queue, {"ok": 1}, headers=headers)
    with pytest.raises(queues.InvalidMessage, match=fragment):
        queues.send_batch(queue, [queues.Outgoing({"ok": 1}, headers=headers, dedup_id="x")])


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("group", f"g{NUL}", "NUL"),
        ("group", SURROGATE, "surrogate"),
        ("group", "g" * 129, "1 to 128"),
        ("group", "", "1 to 128"),
        ("dedup_id", f"d{NUL}", "NUL"),
        ("dedup_id", f"d{SURROGATE}", "surrogate"),
        ("dedup_id", "d" * 129, "1 to 128"),
    ],
)
def test_send_refuses_keys_postgresql_cannot_store(fifo, unchanged, field, value, fragment):
    with pytest.raises(queues.InvalidMessage, match=fragment):
        queues.send(fifo, {"ok": 1}, **{field: value})


@pytest.mark.parametrize("name", ["orders\n", f"orders{NUL}", f"orders{SURROGATE}", "o" * 81, "orders\x00.dlq"])
def test_names_postgresql_cannot_store_are_invalid_names(queue, unchanged, name):
    for call in (
        lambda: queues.send(name, {"ok": 1}),
        lambda: queues.create_queue(name),
        lambda: queues.receive(name),
        lambda: queues.purge(name),
        lambda: queues.stats([name]),
        lambda: queues.publish(name, {"ok": 1}),
        lambda: queues.subscribe(name, queue),
        lambda: queues.unsubscribe(name, queue),
        lambda: queues.unsubscribe("events", name),
    ):
        with pytest.raises(queues.InvalidQueueName):
            call()


def test_subscription_filter_with_a_nul_is_refused(queue, unchanged):
    with pytest.raises(queues.InvalidMessage, match="NUL"):
        queues.subscribe("events", queue, filter={"kind": f"a{NUL}"})


def test_publish_refuses_a_nul_body(queue):
    queues.subscribe("events", queue)
    before = table_snapshot()
    with pytest.raises(queues.InvalidMessage, match="NUL"):
        queues.publish("events", {"x": NUL})
    assert table_snapshot() == before


def test_nack_records_an_error_with_nul_and_surrogates(queue):
    queues.send(queue, {"ok": 1})
    [delivery] = queues.receive(queue)
    queues.nack(delivery.receipt, error=f"boom{NUL}and{SURROGATE}end")
    [info] = queues.peek(queue)
    assert info.last_error == "boom\ufffdand\ufffdend"
    assert info.history[-1]["error"] == "boom\ufffdand\ufffdend"


def test_the_text_check_names_the_problem():
    assert text.text_problem("fine") is None
    assert "NUL" in text.text_problem(f"a{NUL}")
    assert "surrogate" in text.text_problem(SURROGATE)
    assert text.safe_text(f"a{NUL}{SURROGATE}b") == "a\ufffd\ufffdb"
    with pytest.raises(queues.InvalidMessage, match="at most 5"):
        text.check_text("toolong", "thing", max_length=5)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda q: queues.create_queue("big", max_receives=2**31), id="max_receives-past-int"),
        pytest.param(lambda q: queues.update_queue(q, max_receives=2**31), id="update-max_receives-past-int"),
        pytest.param(lambda q: queues.delete_messages(q, [2**63]), id="id-past-bigint"),
        pytest.param(lambda q: queues.move_messages(q, [-1], to=q + ".dlq"), id="negative-id"),
        pytest.param(lambda q: queues.peek(q, after_id=2**63), id="after-past-bigint"),
        pytest.param(lambda q: queues.redrive_batch(q + ".dlq", limit=2**31), id="redrive-limit-past-int"),
        pytest.param(lambda q: queues.redrive(q + ".dlq", limit=2**31), id="redrive-limit-column"),
        pytest.param(lambda q: queues.redrive(q + ".dlq", rate=float("inf")), id="redrive-rate-infinite"),
        pytest.param(lambda q: queues.receive(q, wait=float("inf")), id="wait-infinite"),
        pytest.param(lambda q: queues.stop_redrive(2**63), id="redrive-id-past-bigint"),
        pytest.param(lambda q: queues.prune(batch=2**31), id="prune-batch-past-int"),
    ],
)
def test_numbers_past_their_column_are_refused_by_name(queue, call):
    queues.send(queue, {"ok": 1})
    before = table_snapshot()
    with pytest.raises(ValueError) as info:
        call(queue)
    assert "must be" in str(info.value)
    assert table_snapshot() == before
    assert queues.get_queue(queue).max_receives == 5
