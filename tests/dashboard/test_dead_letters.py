"""Dead letters as a view: the signature rule, groups by error, group actions, ``error:``/``died:``, retries."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.urls import reverse
from django.utils import timezone

import queues
from queues import deadletters, services
from queues.deadletters import GroupKey, attempt_timeline, signature_of
from queues.models import AuditEvent, Message
from queues.search import SearchError, parse_search
from queues.selectors import get_message, search_messages

pytestmark = pytest.mark.django_db

SKU = "KeyError: 'unknown SKU {n}'\nTraceback (most recent call last):\n  File \"h.py\", line 3, in handle"
GATEWAY = "HTTPError: 503 from the payment gateway (request {n})"


def die(queue: str, errors: list[str]) -> list[int]:
    """Send one message per error to ``queue`` and dead-letter each with that error (through the engine)."""
    ids = queues.send_batch(queue, [{"n": i} for i in range(len(errors))])
    deliveries = queues.receive(queue, max_messages=len(errors))
    assert len(deliveries) == len(errors)
    by_id = dict(zip(ids, errors, strict=True))
    for d in deliveries:
        assert queues.nack(d.receipt, error=by_id[d.id], dead_letter=True)
    return ids


@pytest.fixture
def poisoned(make_queue):
    """orders and payments share orders.dlq: orders has 3 × unknown SKU and 2 × 503, payments 1 × unknown SKU."""
    make_queue("orders.dlq")
    make_queue("orders", dead_letter_queue="orders.dlq", max_receives=3)
    make_queue("payments", dead_letter_queue="orders.dlq")
    sku = die("orders", [SKU.format(n=n) for n in (12, 345, 6789)])
    gateway = die("orders", [GATEWAY.format(n=n) for n in (1, 2)])
    other = die("payments", [SKU.format(n=77)])
    return {"sku": sku, "gateway": gateway, "other": other}


SKU_SIG = "KeyError: 'unknown SKU #'"
GATEWAY_SIG = "HTTPError: # from the payment gateway (request #)"


def test_the_signature_is_the_first_line_with_ids_and_numbers_folded():
    assert signature_of(SKU.format(n=42)) == SKU_SIG
    assert signature_of("PermissionError: tenant 3f2a1b4c-0d9e-4f00-a1b2-c3d4e5f60718 is suspended") == (
        "PermissionError: tenant <uuid> is suspended"
    )
    assert signature_of("RuntimeError: <Lock object at 0x7f3a2b1c>") == "RuntimeError: <Lock object at <hex>>"
    assert signature_of("") == ""
    assert len(signature_of("ValueError: " + "x" * 500)) == deadletters.SIGNATURE_CHARS


def test_a_message_that_dies_gets_its_signature_and_one_that_retries_does_not(make_queue):
    make_queue("jobs.dlq")
    make_queue("jobs", dead_letter_queue="jobs.dlq", max_receives=5)
    queues.send("jobs", {"a": 1})
    [d] = queues.receive("jobs")
    queues.nack(d.receipt, error="ValueError: bad 7")
    retrying = Message.objects.get(id=d.id)
    assert retrying.dead_at is None and retrying.error_signature is None
    queues.retry_now("jobs", [d.id])
    [d] = queues.receive("jobs")
    queues.nack(d.receipt, error="ValueError: bad 8", dead_letter=True)
    assert Message.objects.get(id=d.id).error_signature == "ValueError: bad #"


def test_groups_of_a_dead_letter_queue_and_of_a_source_queue(poisoned):
    from queues.models import Queue

    dlq = deadletters.get_view(Queue.objects.get(name="orders.dlq"))
    assert [(g.key.origin, g.key.signature, g.count) for g in dlq.groups] == [
        ("orders", SKU_SIG, 3),
        ("orders", GATEWAY_SIG, 2),
        ("payments", SKU_SIG, 1),
    ]
    assert dlq.total == 6 and dlq.groups[0].error_class == "KeyError"
    assert dlq.groups[1].example.startswith("HTTPError: 503 from the payment gateway")
    assert [r.id for r in dlq.rows] == sorted(
        [*poisoned["sku"], *poisoned["gateway"], *poisoned["other"]],
        key=lambda i: Message.objects.get(id=i).dead_at,
        reverse=True,
    )

    orders = deadletters.get_view(Queue.objects.get(name="orders"))
    assert orders.dead_letter_queue.name == "orders.dlq" and orders.origin == "orders"
    assert [(g.key.signature, g.count) for g in orders.groups] == [(SKU_SIG, 3), (GATEWAY_SIG, 2)]
    chosen = deadletters.get_view(Queue.objects.get(name="orders"), selected=GroupKey("orders.dlq", "orders", SKU_SIG))
    assert sorted(r.id for r in chosen.rows) == poisoned["sku"]
    assert {r.error_class for r in chosen.rows} == {"KeyError"} and chosen.rows[0].receive_count == 1


def test_the_group_counts_are_served_by_the_dead_letter_index(poisoned):
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_bitmapscan = off")
        cur.execute(
            "EXPLAIN SELECT origin_queue_id, error_signature, count(*), max(dead_at) FROM queues_message "
            "WHERE queue_id = (SELECT id FROM queues_queue WHERE name = 'orders.dlq') AND dead_at IS NOT NULL "
            "GROUP BY origin_queue_id, error_signature"
        )
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert "Index Only Scan using queues_msg_dead_sig" in plan, plan


def test_redrive_a_group_moves_exactly_that_group_and_is_audited(poisoned, users):
    key = GroupKey("orders.dlq", "orders", SKU_SIG)
    as_of = timezone.now()
    moved = services.redrive_dead_letter_group(
        actor=users["operator"], key=key, as_of=as_of, count=3, remote_addr="10.1.1.1"
    )
    assert moved == 3
    back = Message.objects.filter(id__in=poisoned["sku"])
    assert {m.queue.name for m in back} == {"orders"} and {m.dead_at for m in back} == {None}
    assert {m.receive_count for m in back} == {0}
    still = Message.objects.filter(queue__name="orders.dlq", dead_at__isnull=False)
    assert sorted(still.values_list("id", flat=True)) == sorted(poisoned["gateway"] + poisoned["other"])
    event = AuditEvent.objects.filter(action="move_messages", outcome="ok").get()
    assert event.count == 3 and event.queue_name == "orders.dlq" and sorted(event.message_ids) == poisoned["sku"]
    assert event.detail["dead_letter_group"]["signature"] == SKU_SIG and event.detail["to"] == "orders"


def test_a_group_action_leaves_deaths_after_the_confirmation_alone(poisoned, users):
    key = GroupKey("orders.dlq", "orders", SKU_SIG)
    as_of = timezone.now()
    [late] = die("orders", [SKU.format(n=999)])
    assert deadletters.count_group(key) == 4
    n = services.delete_dead_letter_group(actor=users["purger"], key=key, as_of=as_of, count=3, confirm="3")
    assert n == 3
    assert list(
        Message.objects.filter(error_signature=SKU_SIG, dead_at__isnull=False, origin_queue__name="orders").values_list(
            "id", flat=True
        )
    ) == [late]


def test_group_actions_check_permission_and_the_typed_count(poisoned, users):
    key = GroupKey("orders.dlq", "orders", SKU_SIG)
    with pytest.raises(PermissionDenied):
        services.redrive_dead_letter_group(actor=users["viewer"], key=key, as_of=timezone.now(), count=3)
    with pytest.raises(PermissionDenied):
        services.delete_dead_letter_group(actor=users["operator"], key=key, as_of=timezone.now(), count=3, confirm="3")
    with pytest.raises(services.ActionFailed, match="type the number of messages, 3"):
        services.delete_dead_letter_group(actor=users["purger"], key=key, as_of=timezone.now(), count=3, confirm="2")
    assert deadletters.count_group(key) == 3
    assert AuditEvent.objects.filter(outcome="denied").count() == 2
    assert AuditEvent.objects.filter(outcome="error", action="delete_messages").count() == 1


def test_a_dead_letter_queue_page_shows_groups_instead_of_publish_and_worker_advice(poisoned, client_for):
    page = client_for("admin").get(reverse("queues:queue-detail", args=["orders.dlq"])).content.decode()
    assert "Dead letters by error" in page and "KeyError: &#x27;unknown SKU #&#x27;" in page
    assert reverse("queues:queue-publish", args=["orders.dlq"]) not in page
    assert "mq_worker orders.dlq" not in page
    source = client_for("viewer").get(reverse("queues:queue-detail", args=["orders"])).content.decode()
    assert "5 dead letters by error" in source and reverse("queues:dead-letters", args=["orders"]) in source


def test_dead_letter_page_selects_a_group_by_its_key(poisoned, client_for):
    c = client_for("viewer")
    url = reverse("queues:dead-letters", args=["orders.dlq"])
    page = c.get(url).content.decode()
    assert "<strong>3</strong> ×" in page and "payments" in page
    chosen = c.get(url + "?" + urlencode({"origin": "orders", "sig": GATEWAY_SIG})).content.decode()
    assert all(f">{i}</a>" in chosen for i in poisoned["gateway"])
    assert not any(f">{i}</a>" in chosen for i in poisoned["sku"])
    assert c.get(url + "?" + urlencode({"origin": "nope", "sig": "x"})).status_code == 404
    assert c.get(url + "?" + urlencode({"sig": "x" * 201})).status_code == 400


def test_redrive_this_group_through_the_pages(poisoned, client_for):
    c = client_for("operator")
    url = reverse("queues:dead-letter-group", args=["orders"])
    params = {"action": "redrive", "origin": "orders", "sig": SKU_SIG}
    confirm = c.get(url, params)
    assert confirm.status_code == 200 and "Redrive 3 dead letters" in confirm.content.decode()
    as_of = confirm.context["as_of"]
    response = c.post(url, {**params, "count": "3", "as_of": as_of})
    assert response.status_code == 302, response.content[:500]
    assert Message.objects.filter(id__in=poisoned["sku"], queue__name="orders").count() == 3
    assert c.post(url, {**params, "count": "3", "as_of": "yesterday"}).status_code == 400
    assert client_for("viewer").post(url, {**params, "count": "3", "as_of": as_of}).status_code == 403


def test_export_a_group_as_json_lines(poisoned, client_for, settings):
    url = reverse("queues:dead-letter-export", args=["orders.dlq"])
    response = client_for("viewer").get(url, {"origin": "orders", "sig": SKU_SIG})
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert sorted(x["id"] for x in lines) == poisoned["sku"]
    assert lines[0]["body"] == {"n": 0} and lines[0]["last_error"].startswith("KeyError")
    settings.MQADMIN = {**getattr(settings, "MQADMIN", {}), "HIDE_BODIES": True}
    hidden = client_for("viewer").get(url, {"origin": "orders", "sig": SKU_SIG})
    first = json.loads(b"".join(hidden.streaming_content).decode().splitlines()[0])
    assert "body" not in first and first["body_hidden"] is True


def test_error_and_died_qualifiers(poisoned):
    def found(text: str) -> list[int]:
        return sorted(r.id for r in search_messages(parse_search(text), limit=100).rows)

    assert found('error:"unknown sku"') == sorted(poisoned["sku"] + poisoned["other"])
    assert found("error:503 queue:orders.dlq") == poisoned["gateway"]
    everything = sorted(poisoned["sku"] + poisoned["gateway"] + poisoned["other"])
    assert found("died:1h") == everything
    assert found("died:..1h") == []
    today = timezone.now().date().isoformat()
    assert found(f"died:{today}") == everything
    text = parse_search("died:1h error:boom").text()
    assert parse_search(text) == parse_search(text)  # absolute times: the same filter when read again
    for bad, fragment in (
        ("died:soon", "cannot read 'soon'"),
        ("died:..", "empty range"),
        ("died:1h..2h", "ends before it starts"),
    ):
        with pytest.raises(SearchError, match=fragment):
            parse_search(bad)


def test_a_message_backing_off_says_retrying_with_attempt_and_next_time(make_queue, client_for):
    make_queue("jobs.dlq")
    make_queue("jobs", dead_letter_queue="jobs.dlq", max_receives=6)
    queues.send("jobs", {"x": 1})
    for attempt in range(1, 6):
        [d] = queues.receive("jobs")
        queues.nack(d.receipt, error="ValueError: flaky", delay=12 if attempt == 5 else 0)
    [row] = search_messages(parse_search("queue:jobs")).rows
    assert row.state == "delayed"
    assert row.state_note.startswith("retrying (attempt 5 of 6, next in 1") and row.state_note.endswith(" s)")
    detail = get_message(d.id)
    assert detail.state_note.startswith("retrying (attempt 5 of 6")
    page = client_for("viewer").get(reverse("queues:message-detail", args=[d.id])).content.decode()
    assert "retrying (attempt 5 of 6, next in" in page
    assert page.count("ValueError: flaky") == 2  # the last error once, the timeline's folded line once
    assert "× 5" in page


def test_the_timeline_folds_identical_errors_and_keeps_each_text_once():
    history = [
        {"at": f"2026-12-03T10:00:0{i}+00:00", "event": "nacked", "receive_count": i + 1, "error": "E: one\ntrace"}
        for i in range(3)
    ]
    history += [
        {"at": "2026-12-03T10:00:05+00:00", "event": "nacked", "receive_count": 4, "error": "F: two"},
        {"at": "2026-12-03T10:00:06+00:00", "event": "dead-lettered", "reason": "received 5 times"},
    ]
    timeline, errors = attempt_timeline(history, "F: two")
    assert [(t.event, t.count, t.error_line) for t in timeline] == [
        ("dead-lettered", 1, ""),
        ("nacked", 1, "F: two"),
        ("nacked", 3, "E: one"),
    ]
    assert timeline[2].receives == "1–3"
    assert [(e.number, e.count, e.text) for e in errors] == [(1, 3, "E: one\ntrace"), (2, 1, "F: two")]
