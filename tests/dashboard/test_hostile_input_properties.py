"""No 500s, by construction: every URL and form of the dashboard (and the admin's queue pages) meets
generated hostile input and answers 2xx/3xx, or a 4xx that shows why and changed nothing.

Hostile means the classes that once answered 500: NUL characters (query parameters, path segments, form
fields, JSON escapes), lone surrogates in JSON, non-finite numbers, Unicode digits that pass
``isdigit()``, integers past PostgreSQL's ``integer``/``bigint``, JSON nested thousands deep or with
numbers thousands of digits long, malformed names, huge and empty values; plus whatever Hypothesis makes
of arbitrary text. Each request runs as a user allowed to act (``admin``) or not (``viewer``, ``nobody``).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

import queues
from queues.models import Redrive

pytestmark = [pytest.mark.django_db, pytest.mark.property, pytest.mark.slow]

# Literal members of each class, so every run tries them; Hypothesis adds arbitrary text around them.
NUMBERS = [
    "NaN", "nan", "Infinity", "-Infinity", "1e999", "-1e999", "2147483648", "-2147483649", "4294967296",
    "9223372036854775808", "-9223372036854775809", "9" * 5000, "²", "١٢", "0x10", "1.5", "-1", "0", "1e3",
    "", " ",
]
TEXTS = ["a\x00b", "\x00", "orders\x00", "x" * 100_000, "Orders", "-lead", "has space", "ünïcode", "..", "%00",
         "<script>alert(1)</script>", "'; DROP TABLE queues_queue; --", "orders"]
DEEP = "[" * 10_000 + "]" * 10_000
JSONS = [
    '{"a": "\\u0000"}', '{"\\u0000": 1}', '"\\u0000"', '{"a": "\\ud800"}', '{"\\udfff": "x"}', '{"a": NaN}',
    '{"a": Infinity}', '{"a": 1e999}', '{"a": ' + "9" * 5000 + "}", DEEP, '{"a": ' * 5000 + "1" + "}" * 5000,
    '{"a": 1,', "", "[]", '{"tenant": "acme"}', '{"a": "x\x00"}',
]

hostile = st.one_of(
    st.sampled_from(NUMBERS + TEXTS),
    st.text(max_size=40),  # includes NUL and other control characters
    st.from_regex(r"[-0-9.eE+]{1,12}", fullmatch=True),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
hostile_json = st.one_of(st.sampled_from(JSONS), hostile)
users = st.sampled_from(["admin", "viewer", "nobody"])

# Query parameters any page reads; pages ignore the ones they do not know.
GET_PARAMS = ["sort", "name", "window", "q", "state", "after", "before", "actor", "action", "queue", "outcome",
              "to", "scope", "id", "next", "from", "tz", "order", "origin", "sig", "copy", "count", "as_of"]
PAGES = [
    "/", "/queues/", "/new-queue/", "/queues/{q}/", "/queues/{q}/purge/", "/queues/{q}/delete/",
    "/queues/{q}/publish/", "/queues/{dlq}/redrive/", "/queues/{q}/messages/", "/messages/", "/messages/bulk/",
    "/messages/{m}/", "/workers/", "/audit/", "/api/series/", "/queues/{q}/dead-letters/",
    "/queues/{dlq}/dead-letters/", "/queues/{dlq}/dead-letters/group/", "/queues/{dlq}/dead-letters/export/",
    "/schedules/", "/database/",
]
FORMS: dict[str, dict[str, str]] = {
    "/queues/{q}/settings/": {"kind": "standard", "visibility_timeout": "30", "max_receives": "5",
                              "dead_letter_queue": "", "default_delay": "0", "retention": "345600",
                              "max_message_size": "262144", "dedup_window": "300"},
    "/new-queue/": {"name": "fresh", "kind": "standard", "visibility_timeout": "30", "max_receives": "5",
                    "dead_letter_queue": "", "no_dead_letter_queue": ""},
    "/queues/{q}/publish/": {"body": "{}", "headers": "", "delay": "", "priority": "0", "group": "",
                             "dedup_id": ""},
    "/queues/{dlq}/redrive/": {"to": "", "rate": "", "limit": "", "back": ""},
    "/queues/{q}/purge/": {"confirm": ""},
    "/queues/{q}/delete/": {"confirm": ""},
    "/queues/{q}/pause/": {},
    "/queues/{q}/resume/": {},
    "/messages/bulk/": {"action": "retry", "scope": "selected", "id": "{m}", "q": "", "to": "", "next": ""},
    "/messages/{m}/reveal/": {},
    "/redrives/{r}/stop/": {"next": ""},
    "/queues/{dlq}/dead-letters/group/": {"action": "redrive", "origin": "orders", "sig": "KeyError: x",
                                          "count": "0", "as_of": ""},
    "/admin/queues/queue/confirm-action/": {"action": "pause", "name": "{q}"},
}
SEARCH_TERMS = ["id:{}", "body.a:{}", "body.{}:1", "header.a:{}", "header.{}:x", "group:{}", "queue:{}",
                "state:{}", "{}"]
ADMIN_LISTS = ["queue", "message", "auditevent", "worker", "redrive", "taskresult", "topic", "subscription"]
ADMIN_PARAMS = ["q", "o", "p", "id__exact", "queue__id__exact", "kind__exact", "paused__exact", "state__exact",
                "action__exact", "outcome__exact", "status__exact", "at__year", "at__month", "at__day", "e"]


def snapshot() -> tuple:
    """Everything a refused request must leave alone (the audit log may gain its refusal row)."""
    tables = ["queues_queue", "queues_message", "queues_counter", "queues_dedup", "queues_redrive",
              "queues_topic", "queues_subscription"]
    with connection.cursor() as cur:
        out = []
        for table in tables:
            cur.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t")
            out.append((table, *cur.fetchone()))
    return tuple(out)


@pytest.fixture
def site(make_user, make_queue) -> dict[str, Any]:
    """Queues, a message, a redrive and one logged-in client per kind of user."""
    make_queue("orders")
    make_queue("groups", kind="fifo")
    message_id = queues.send("orders", {"order_id": 42}, headers={"tenant": "acme"})
    redrive = Redrive.objects.create(source=queues.get_queue("orders.dlq"), total=0)
    clients = {}
    for kind, user in (("admin", make_user(None, username="admin", superuser=True)),
                       ("viewer", make_user("viewer")), ("nobody", make_user(None))):
        client = Client()
        client.force_login(user)
        clients[kind] = client
    ids = {"q": "orders", "dlq": "orders.dlq", "m": str(message_id), "r": str(redrive.pk)}
    return {"clients": clients, "ids": ids}


def _fill(template: str, ids: dict[str, str], segment: str | None = None) -> str:
    values = dict(ids)
    if segment is not None:
        # The hostile value replaces the queue name (or the id) in the path; "/" would only change the route.
        values.update(q=segment, dlq=segment)
    return template.format(**values)


class _Undo(Exception):
    """Raised to roll an example's changes back, so every example starts from the same site."""


def _request(client: Client, method: str, url: str, data: dict[str, str], what: str) -> None:
    """Send one request inside a savepoint: check the answer, then undo whatever it changed."""
    try:
        with transaction.atomic():
            before = snapshot()
            _check(getattr(client, method)(url, data), before, what)
            raise _Undo
    except _Undo:
        pass


def _check(response: Any, before: tuple, what: str) -> None:
    status = response.status_code
    assert status < 500, f"{what} answered {status}"
    if 400 <= status < 500:
        assert snapshot() == before, f"{what} was refused ({status}) but changed the database"
        if status == 405:  # a wrong method, not bad input: the Allow header is the answer
            assert response.has_header("Allow"), f"{what}: a 405 must say which methods are allowed"
            return
        assert response.content.strip(), f"{what} was refused ({status}) without saying why"
        if status == 400 and response["Content-Type"].startswith("text/html") and "/admin/" not in what:
            assert b'role="alert"' in response.content, f"{what}: a 400 page must show the reason"


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


@given(user=users, page=st.sampled_from(PAGES), params=st.dictionaries(st.sampled_from(GET_PARAMS), hostile,
                                                                      max_size=3))
def test_every_page_refuses_hostile_query_parameters_clearly(site, user, page, params):
    url = _fill(page, site["ids"])
    _request(site["clients"][user], "get", url, params, f"GET {url} {params!r:.200}")


@given(user=users, page=st.sampled_from([p for p in PAGES + list(FORMS) if "{" in p]), segment=hostile,
       method=st.sampled_from(["get", "post"]))
def test_every_path_segment_is_checked_before_it_reaches_sql(site, user, page, segment, method):
    if not segment.strip("/") or "/" in segment:
        segment = segment.replace("/", "_") or "_"
    url = _fill(page, site["ids"] | {"m": _segment(segment), "r": _segment(segment)}, _segment(segment))
    _request(site["clients"][user], method, url, {}, f"{method.upper()} {url:.200}")


@given(user=users, form=st.sampled_from(list(FORMS)), data=st.data())
def test_every_form_field_refuses_hostile_values_clearly(site, user, form, data):
    placeholders = {"{" + key + "}": value for key, value in site["ids"].items()}
    fields = {name: placeholders.get(value, value) for name, value in FORMS[form].items()}
    for name in data.draw(st.lists(st.sampled_from(list(fields) or ["x"]), max_size=3, unique=True)):
        fields[name] = data.draw(hostile_json if name in ("body", "headers") else hostile)
    url = _fill(form, site["ids"])
    _request(site["clients"][user], "post", url, fields, f"POST {url} {fields!r:.300}")


@given(user=users, body=hostile_json, headers=hostile_json)
def test_publish_refuses_hostile_json_clearly(site, user, body, headers):
    url = _fill("/queues/{q}/publish/", site["ids"])
    _request(site["clients"][user], "post", url, {"body": body, "headers": headers, "priority": "0"},
             f"POST {url} body={body!r:.100} headers={headers!r:.100}")


@given(user=users, where=st.sampled_from(["/messages/", "/queues/{q}/messages/", "/messages/bulk/"]),
       term=st.sampled_from(SEARCH_TERMS), value=st.one_of(hostile, st.sampled_from(JSONS)),
       method=st.sampled_from(["get", "post"]))
def test_every_search_qualifier_refuses_hostile_values_clearly(site, user, where, term, value, method):
    url = _fill(where, site["ids"])
    params = {"q": term.format(value)}
    if "bulk" in where:
        params.update(action="retry", scope="matching")
    elif method == "post":
        method = "get"  # the browser is a page: GET only
    _request(site["clients"][user], method, url, params, f"{method.upper()} {url} {params!r:.200}")


@given(user=users, model=st.sampled_from(ADMIN_LISTS),
       params=st.dictionaries(st.sampled_from(ADMIN_PARAMS), hostile, min_size=1, max_size=2))
def test_admin_lists_refuse_hostile_lookups_clearly(site, user, model, params):
    url = f"/admin/queues/{model}/"
    _request(site["clients"][user], "get", url, params, f"GET {url} {params!r:.200}")
