"""The message browser: qualifiers, keyset pagination, and a peek that changes nothing."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import queues
from queues.models import Message
from queues.search import MessageFilter, SearchError, parse_search
from queues.selectors import search_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def mixed(make_queue):
    """orders: 2 ready, 1 delayed, 1 in flight, 1 dead letter; emails: 2 ready with headers; fifo: groups."""
    make_queue("orders", max_receives=1)
    make_queue("emails")
    make_queue("jobs", kind="fifo")
    dead = queues.send("orders", {"dead": True})
    [d] = queues.receive("orders")
    queues.nack(d.receipt, error="boom")
    ready = queues.send_batch("orders", [{"order": {"id": 42, "state": "paid"}}, {"order": {"id": 7}}])
    delayed = queues.send("orders", {"later": True}, delay=600)
    flying = queues.send("orders", {"flying": True}, priority=100)
    [lease] = queues.receive("orders", visibility_timeout=600)
    assert lease.id == flying
    acme = queues.send("emails", {"to": "a@example.com"}, headers={"tenant": "acme", "lang": "en"})
    globex = queues.send("emails", {"to": "b@example.com"}, headers={"tenant": "globex"})
    g1 = queues.send("jobs", {"j": 1}, group="user-1")
    g2 = queues.send("jobs", {"j": 2}, group="user-2")
    return {"dead": dead, "ready": ready, "delayed": delayed, "flying": flying, "acme": acme, "globex": globex,
            "g1": g1, "g2": g2}


def ids(text: str, **kw) -> list[int]:
    return [r.id for r in search_messages(parse_search(text, **kw), limit=1000).rows]


def test_state_qualifiers(mixed):
    assert ids("state:dead") == [mixed["dead"]]
    assert ids("state:delayed") == [mixed["delayed"]]
    assert ids("state:in_flight") == [mixed["flying"]]
    assert ids("queue:orders state:ready") == mixed["ready"]
    assert ids("queue:orders state:ready state:delayed") == [*mixed["ready"], mixed["delayed"]]
    rows = search_messages(parse_search("queue:orders"), limit=100).rows
    assert {r.id: r.state for r in rows} == {
        mixed["ready"][0]: "ready", mixed["ready"][1]: "ready", mixed["delayed"]: "delayed",
        mixed["flying"]: "in_flight"}


def test_queue_id_and_group_qualifiers(mixed):
    assert ids("queue:emails") == [mixed["acme"], mixed["globex"]]
    assert ids(f"id:{mixed['globex']}") == [mixed["globex"]]
    assert ids(str(mixed["acme"])) == [mixed["acme"]]
    assert ids("group:user-2") == [mixed["g2"]]
    assert ids("queue:jobs group:user-1 group:user-2") == [mixed["g1"], mixed["g2"]]


def test_header_qualifier_is_jsonb_containment(mixed):
    assert ids("header.tenant:acme") == [mixed["acme"]]
    assert ids("header.tenant:acme header.lang:en") == [mixed["acme"]]
    assert ids("header.tenant:acme header.lang:fr") == []
    with CaptureQueriesContext(connection) as ctx:
        ids("header.tenant:acme")
    assert any('"headers" @>' in q["sql"] for q in ctx.captured_queries)


def test_body_qualifier_follows_the_dotted_path(mixed):
    assert ids("body.order.id:42") == [mixed["ready"][0]]  # number in the body, text in the box
    assert ids("body.order.state:paid") == [mixed["ready"][0]]
    assert ids("body.order.state:unpaid") == []
    assert ids('body.to:"b@example.com"') == [mixed["globex"]]
    with CaptureQueriesContext(connection) as ctx:
        ids("body.order.id:42")
    # One containment test per alternative on the body read as jsonb (stored as json, the text as sent).
    assert any('"body")::jsonb @>' in q["sql"] for q in ctx.captured_queries)


@pytest.mark.parametrize("text, fragment", [
    ("color:red", "unknown qualifier 'color'"),
    ("state:gone", "unknown state 'gone'"),
    ("id:abc", "id must be a whole number"),
    ("queue:Bad!", "invalid queue name"),
    ("hello", "has no qualifier"),
    ("state:", "has no value"),
    ('header.a:"open', "close your quotes"),
    ("header.:x", "names no header"),
    ("body.a..b:x", "empty step"),
])
def test_bad_searches_say_what_is_wrong(text, fragment):
    with pytest.raises(SearchError, match=fragment.replace("(", r"\(")):
        parse_search(text)


def test_canonical_text_round_trips():
    f = parse_search('queue:orders state:dead header.subject:"hello world" body.a.b:1 id:5 group:g')
    assert parse_search(f.text()) == f
    assert isinstance(f, MessageFilter) and f.single_queue == "orders"


def test_unknown_queue_in_a_search_is_an_error(mixed):
    with pytest.raises(SearchError, match="no queue named 'nope'"):
        ids("queue:nope")


def test_keyset_pagination_walks_every_message_once_without_offset(make_queue):
    make_queue("big")
    sent = queues.send_batch("big", [{"i": i} for i in range(23)])
    f = parse_search("queue:big")
    seen: list[int] = []
    after = None
    pages = 0
    with CaptureQueriesContext(connection) as ctx:
        while True:
            page = search_messages(f, after=after, limit=5)
            seen += [r.id for r in page.rows]
            pages += 1
            if page.next_after is None:
                break
            after = page.next_after
    assert seen == sent and pages == 5
    assert not any("OFFSET" in q["sql"].upper() for q in ctx.captured_queries)
    # and back: the page before the last one
    back = search_messages(f, before=sent[20], limit=5)
    assert [r.id for r in back.rows] == sent[15:20]
    assert back.next_after == sent[19] and back.prev_before == sent[15]


def test_browsing_changes_no_delivery_state(mixed, client_for):
    before = {m.id: (m.receipt, m.available_at, m.receive_count) for m in Message.objects.all()}
    c = client_for("viewer")
    assert c.get(reverse("queues:messages")).status_code == 200
    assert c.get(reverse("queues:queue-messages", args=["orders"]) + "?state=in_flight").status_code == 200
    for message_id in before:
        assert c.get(reverse("queues:message-detail", args=[message_id])).status_code == 200
    after = {m.id: (m.receipt, m.available_at, m.receive_count) for m in Message.objects.all()}
    assert after == before
    # the in-flight message is still leased to its holder: a receive does not get it
    assert mixed["flying"] not in [d.id for d in queues.receive("orders", max_messages=10)]


def test_browser_page_shows_results_and_next_link(make_queue, client_for, settings):
    make_queue("big")
    sent = queues.send_batch("big", [{"i": i} for i in range(7)])
    settings.MQADMIN = {"PAGE_SIZE": 3}
    c = client_for("viewer")
    page = c.get(reverse("queues:queue-messages", args=["big"]))
    assert page.status_code == 200
    html = page.content.decode()
    assert f'value="{sent[0]}"' in html and f'value="{sent[3]}"' not in html
    assert f"after={sent[2]}" in html
    second = c.get(reverse("queues:queue-messages", args=["big"]) + f"?after={sent[2]}").content.decode()
    assert f'value="{sent[3]}"' in second and f"before={sent[3]}" in second


def test_bad_qualifier_on_the_page_is_a_400_with_the_reason(mixed, client_for):
    response = client_for("viewer").get(reverse("queues:messages") + "?q=color:red")
    assert response.status_code == 400
    assert b"unknown qualifier" in response.content and b"color" in response.content


def test_pages_of_a_queue_with_mixed_priorities_stay_in_id_order(make_queue):
    make_queue("mixed")
    sent = [queues.send("mixed", {"i": i}, priority=(0, 5, -3)[i % 3]) for i in range(17)]
    f = parse_search("queue:mixed")
    seen: list[int] = []
    after = None
    while True:
        page = search_messages(f, after=after, limit=4)
        seen += [r.id for r in page.rows]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == sent
    back = search_messages(f, before=sent[10], limit=4)
    assert [r.id for r in back.rows] == sent[6:10]
    assert [r.id for r in search_messages(parse_search("queue:mixed state:ready"), limit=100).rows] == sent
