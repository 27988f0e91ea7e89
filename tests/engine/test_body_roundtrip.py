"""A body comes back as it was sent: key order always, and the very text for JSON text (``JSONText``,
``mq_send``), duplicate keys and spacing included; searches by ``body.path:value`` still find it."""

from __future__ import annotations

import json

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import queues
import queues.engine
from queues import search
from queues.models import Message

SIGNED = '{"order_id": 42, "amount": 9.50, "currency": "EUR", "note": "b", "note": "a", "items": [ {"sku":"A-1"} ]}'


@pytest.fixture
def queue(make_queue) -> str:
    return make_queue("orders")


def test_key_order_survives_every_send_path(make_queue, queue):
    fifo = make_queue("orders.fifo", kind="fifo")
    body = {"order_id": 1, "zeta": {"b": 1, "a": 2}, "alpha": [{"y": 1, "x": 2}], "mid": None}
    queues.send(queue, body)
    queues.send(queue, body, dedup_id="once")
    queues.send_batch(queue, [body, queues.Outgoing(body, headers={"h": "v"}, priority=3, delay=0)])
    queues.send(fifo, body, group="g")
    queues.subscribe("events", queue)
    queues.publish("events", body)
    got = queues.receive(queue, max_messages=10) + queues.receive(fifo)
    assert len(got) == 6
    for delivery in got:
        assert json.dumps(delivery.body) == json.dumps(body)  # same keys in the same order, all levels
        assert delivery.body_text == json.dumps(body, separators=(",", ":"))
    for info in queues.peek(queue):
        assert list(info.body) == list(body)


def test_json_text_comes_back_as_the_text_sent(queue):
    single = queues.send(queue, queues.JSONText(SIGNED))
    batch = queues.send_batch(queue, [queues.JSONText(SIGNED), queues.Outgoing(queues.JSONText(SIGNED), dedup_id="d")])
    got = {d.id: d for d in queues.receive(queue, max_messages=10)}
    assert set(got) == {single, *batch}
    for delivery in got.values():
        assert delivery.body_text == SIGNED  # a signature over these bytes still verifies
        assert list(delivery.body) == ["order_id", "amount", "currency", "note", "items"]
        assert delivery.body["note"] == "a"  # the parsed value: the last duplicate wins, as in json.loads
    assert {info.body_text for info in queues.peek(queue)} == {SIGNED}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"a": NaN}', "NaN is not a JSON number"),
        ("[Infinity]", "Infinity is not a JSON number"),
        ("1e999", "non-finite"),
        ('{"a": "\\u0000"}', "NUL"),
        ('"\\ud800"', "surrogate"),
        ('{"a": 1', "not valid JSON"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_json_text_is_checked_before_it_is_stored(queue, text, fragment):
    with pytest.raises(queues.InvalidMessage, match=fragment):
        queues.send(queue, queues.JSONText(text))
    assert queues.queue_stats(queue).depth == 0


def test_mq_send_stores_the_body_text_as_given(queue, run_manage, tmp_path):
    result = run_manage("mq_send", queue, "--body", SIGNED)
    assert result.returncode == 0, result.stderr
    lines = tmp_path / "orders.jsonl"
    lines.write_text('{"b": 1, "a": 2}\n{"a":1,"a":2}\n', encoding="utf-8")
    result = run_manage("mq_send", queue, "--file", str(lines))
    assert result.returncode == 0, result.stderr
    texts = [d.body_text for d in queues.receive(queue, max_messages=10)]
    assert texts == [SIGNED, '{"b": 1, "a": 2}', '{"a":1,"a":2}']


def test_searches_by_body_path_still_match(queue):
    queues.send(queue, queues.JSONText('{"order": {"id": 42, "state": "paid"}, "to": "b@example.com"}'))
    other = queues.send(queue, {"order": {"id": 7, "state": "unpaid"}})

    def ids(term: str) -> list[int]:
        return sorted(search.message_queryset(search.parse_search(term)).values_list("id", flat=True))

    [first] = ids("body.order.id:42")
    assert ids("body.order.state:unpaid") == [other]
    assert ids('body.to:"b@example.com"') == [first]
    assert Message.objects.filter(body__order__id=7).count() == 1  # key lookups keep working too


def test_body_search_prefilter_never_hides_a_match(queue):
    # The search first looks for the key and value text; bodies written with escapes must still match.
    plain = queues.send(queue, {"order": {"state": "paid"}})
    escaped = queues.send(queue, queues.JSONText('{"or\\u0064er": {"state": "\\u0070aid"}}'))
    slashed = queues.send(queue, queues.JSONText('{"order": {"state": "paid", "url": "a\\/b"}}'))
    quoted = queues.send(queue, {"order": {"state": 'say "paid"'}})
    queues.send(queue, {"order": {"state": "unpaid"}, "note": "paid"})  # the text is there, the value is not

    def ids(term: str) -> list[int]:
        return sorted(search.message_queryset(search.parse_search(term)).values_list("id", flat=True))

    assert ids("body.order.state:paid") == [plain, escaped, slashed]
    assert ids('body.order.state:"say \\"paid\\""') == [quoted]


def _body_column() -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'queues_message'::regclass AND attname = 'body'")
        return cur.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_existing_rows_migrate_to_the_text_column():
    executor = MigrationExecutor(connection)
    graph = executor.loader.graph
    latest = graph.leaf_nodes("queues")
    [change] = [key for key in graph.nodes if key[0] == "queues" and key[1].endswith("_message_body_json")]
    before = [parent.key for parent in graph.node_map[change].parents if parent.key[0] == "queues"]
    executor.migrate(before)
    try:
        assert _body_column() == "jsonb"
        with connection.cursor() as cur:
            cur.execute("INSERT INTO queues_queue (name, kind, visibility_timeout, max_receives, default_delay, "
                        "retention, max_message_size, dedup_window, paused, created_at, updated_at) VALUES "
                        "('old', 'standard', '30s', 5, '0s', '4 days', 262144, '5 min', false, now(), now()) "
                        "RETURNING id")
            queue_id = cur.fetchone()[0]
            cur.execute("INSERT INTO queues_message (queue_id, body, headers, priority, enqueued_at, available_at, "
                        "receive_count, last_error, history) VALUES "
                        "(%s, '{\"order_id\": 1, \"a\": [1, 2]}', '{}', 0, now(), now(), 0, '', '[]')", [queue_id])
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
        assert _body_column() == "json"
        queues.engine.clear_cache()
        [delivery] = queues.receive("old")
        # Rows sent before keep jsonb's rendering: their original order was already gone.
        assert delivery.body == {"a": [1, 2], "order_id": 1}
        assert delivery.body_text == '{"a": [1, 2], "order_id": 1}'
    finally:
        MigrationExecutor(connection).migrate(latest)


# -- a bare body in send_batch is an Outgoing with every default (delivery._prepare_body) ------------------
_texts = st.one_of(st.text(max_size=8), st.sampled_from(["ünï", "a\x00b", "a\ud800b", "\udfff", "x" * 300]))
_bodies = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_texts, inner, max_size=3)),
    max_leaves=6,
)


def _outcome(queue: str, item: object) -> tuple:
    """What sending ``item`` alone did: the stored message's fields, or the exception's class and text."""
    try:
        with transaction.atomic():
            (message_id,) = queues.send_batch(queue, [item])
    except Exception as exc:  # compared, not swallowed: both paths must fail alike
        return (type(exc), str(exc))
    (info,) = queues.peek(queue, ids=[message_id])
    return (info.body_text, info.headers, info.priority, info.group, info.dedup_id, info.state)


@pytest.mark.property
@pytest.mark.parametrize("kind", ["standard", "fifo"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_a_bare_body_is_sent_and_refused_exactly_as_its_outgoing(db, kind, body):
    queue = f"bare-{kind}"
    queues.ensure_queue(queue, kind=kind, max_message_size=256)  # small: some bodies are too large
    assert _outcome(queue, body) == _outcome(queue, queues.Outgoing(body=body))
