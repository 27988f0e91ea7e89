"""Bad input gets a clear message and a 400/403/404, never a 500."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

import queues
from queues.models import AuditEvent, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders(make_queue) -> str:
    return make_queue("orders")


def test_publish_invalid_json_body_is_a_400_with_the_parse_error(orders, client_for):
    response = client_for("publisher").post(reverse("queues:queue-publish", args=[orders]),
                                            {"body": '{"a": 1,', "priority": "0"})
    assert response.status_code == 400
    assert b"The body is not valid JSON" in response.content and b"line 1" in response.content
    assert not Message.objects.exists()


def test_publish_headers_must_be_an_object_of_strings(orders, client_for):
    response = client_for("publisher").post(reverse("queues:queue-publish", args=[orders]),
                                            {"body": "{}", "headers": '{"n": 1}', "priority": "0"})
    assert response.status_code == 400 and b"headers must be a json object of strings" in response.content.lower()


def test_publish_oversize_body_is_a_400_naming_the_limit(orders, client_for):
    queues.update_queue(orders, max_message_size=1024)
    body = json.dumps({"blob": "x" * 5000})
    response = client_for("publisher").post(reverse("queues:queue-publish", args=[orders]),
                                            {"body": body, "priority": "0"})
    assert response.status_code == 400
    assert b"exceeds queue" in response.content and b"1024" in response.content
    assert AuditEvent.objects.get(action="publish_message").outcome == "error"


def test_a_request_larger_than_django_accepts_is_a_400(orders, client_for):
    body = json.dumps({"blob": "x" * 3_000_000})  # over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)
    response = client_for("publisher").post(reverse("queues:queue-publish", args=[orders]),
                                            {"body": body, "priority": "0"})
    assert response.status_code == 400
    assert not Message.objects.exists()


def test_publish_out_of_range_priority_is_a_form_error(orders, client_for):
    response = client_for("publisher").post(reverse("queues:queue-publish", args=[orders]),
                                            {"body": "{}", "priority": "1000"})
    assert response.status_code == 400 and b"less than or equal to 100" in response.content


def test_a_published_message_lands_and_the_page_goes_to_it(orders, client_for):
    response = client_for("publisher").post(reverse("queues:queue-publish", args=[orders]), {
        "body": '{"a": [1, 2]}', "headers": '{"tenant": "acme"}', "priority": "7", "delay": "", "group": "",
        "dedup_id": "d-1"})
    assert response.status_code == 302
    message = Message.objects.get()
    assert response["Location"] == reverse("queues:message-detail", args=[message.id])
    assert (message.body, message.headers, message.priority, message.dedup_id) == (
        {"a": [1, 2]}, {"tenant": "acme"}, 7, "d-1")


@pytest.mark.parametrize("url", [
    reverse("queues:queue-detail", args=["nope"]),
    reverse("queues:queue-messages", args=["nope"]),
    reverse("queues:message-detail", args=[999999]),
])
def test_unknown_queue_or_message_pages_are_404_with_a_message(url, orders, client_for):
    response = client_for("viewer").get(url)
    assert response.status_code == 404
    assert b"nope" in response.content or b"999999" in response.content


@pytest.mark.parametrize("path", ["pause", "resume", "purge", "delete", "publish", "redrive", "settings"])
def test_actions_on_an_unknown_queue_are_404(path, orders, client_for):
    response = client_for("admin").post(f"/queues/nope/{path}/", {"confirm": "nope", "body": "{}",
                                                                  "priority": "0"})
    assert response.status_code == 404, path


def test_redrive_stop_of_an_unknown_redrive_is_404(orders, client_for):
    assert client_for("admin").post(reverse("queues:redrive-stop", args=[424242])).status_code == 404


def test_bad_filter_qualifier_is_a_400_with_a_message(orders, client_for):
    response = client_for("viewer").get(reverse("queues:queue-messages", args=[orders]) + "?q=tenant:acme")
    assert response.status_code == 400
    assert b"unknown qualifier &#x27;tenant&#x27;" in response.content
    assert b"header.KEY:VALUE" in response.content


@pytest.mark.parametrize("query", ["?after=abc", "?before=-3", "?state=sleeping"])
def test_bad_browser_parameters_are_400(query, orders, client_for):
    assert client_for("viewer").get(reverse("queues:messages") + query).status_code == 400


def test_missing_csrf_token_is_a_403(orders, client_for):
    c = client_for("admin", csrf=True)
    response = c.post(reverse("queues:queue-pause", args=[orders]))
    assert response.status_code == 403
    assert b"CSRF" in response.content
    assert not queues.get_queue(orders).paused
    # and with the token from the page it works
    page = c.get(reverse("queues:queue-detail", args=[orders]))
    token = page.context["csrf_token"]
    assert c.post(reverse("queues:queue-pause", args=[orders]), {"csrfmiddlewaretoken": token}).status_code == 302
    assert queues.get_queue(orders).paused


def test_every_post_form_carries_a_csrf_token(orders, client_for):
    queues.send(orders, {"n": 1})
    c = client_for("admin")
    for url in [reverse("queues:queue-detail", args=[orders]), reverse("queues:queue-publish", args=[orders]),
                reverse("queues:queue-purge", args=[orders]), reverse("queues:queue-create")]:
        html = c.get(url).content.decode()
        assert html.count('method="post"') == html.count('name="csrfmiddlewaretoken"'), url


def test_purge_with_the_wrong_name_is_a_400_and_deletes_nothing(orders, client_for):
    queues.send(orders, {"n": 1})
    response = client_for("purger").post(reverse("queues:queue-purge", args=[orders]), {"confirm": "order"})
    assert response.status_code == 400 and b"Type the queue&#x27;s name" in response.content
    assert queues.queue_stats(orders).depth == 1


def test_purge_confirm_page_then_purge(orders, client_for):
    queues.send_batch(orders, [{"n": i} for i in range(4)])
    c = client_for("purger")
    page = c.get(reverse("queues:queue-purge", args=[orders]))
    assert page.status_code == 200 and b"Purge 4 messages" in page.content
    response = c.post(reverse("queues:queue-purge", args=[orders]), {"confirm": orders})
    assert response.status_code == 302 and queues.queue_stats(orders).depth == 0


def test_invalid_settings_are_a_400_with_field_errors(orders, client_for):
    response = client_for("operator").post(reverse("queues:queue-settings", args=[orders]), {
        "kind": "standard", "visibility_timeout": "-5", "max_receives": "x", "dead_letter_queue": "",
        "default_delay": "0", "retention": "345600", "max_message_size": "262144", "dedup_window": "300"})
    assert response.status_code == 400
    assert b"Use a duration from 0.1s to 12h, got &#x27;-5&#x27;" in response.content
    assert b"Enter a whole number" in response.content
    assert queues.get_queue(orders).visibility_timeout.total_seconds() == 30


def test_settings_form_saves(orders, client_for):
    response = client_for("operator").post(reverse("queues:queue-settings", args=[orders]), {
        "kind": "fifo", "visibility_timeout": "45", "max_receives": "0", "dead_letter_queue": "",
        "default_delay": "2", "retention": "345600", "max_message_size": "1024", "dedup_window": "60"})
    assert response.status_code == 302
    q = queues.get_queue(orders)
    assert (q.kind, q.visibility_timeout.total_seconds(), q.max_receives, q.dead_letter_queue) == (
        "fifo", 45, 0, None)


def test_create_queue_with_a_bad_name_is_a_400(client_for):
    response = client_for("operator").post(reverse("queues:queue-create"), {
        "name": "Bad Name", "kind": "standard", "visibility_timeout": "30", "max_receives": "5"})
    assert response.status_code == 400 and b"invalid queue name" in response.content.lower()


def test_create_existing_queue_is_a_400(orders, client_for):
    response = client_for("operator").post(reverse("queues:queue-create"), {
        "name": orders, "kind": "standard", "visibility_timeout": "30", "max_receives": "5"})
    assert response.status_code == 400 and b"exists already" in response.content


@pytest.mark.parametrize("data, fragment", [
    ({"action": "explode", "scope": "selected", "id": "1"}, b"unknown bulk action"),
    ({"action": "delete", "scope": "selected"}, b"select at least one message"),
    ({"action": "delete", "scope": "selected", "id": "x1"}, b"whole numbers"),
    ({"action": "delete", "scope": "everything"}, b"unknown scope"),
    ({"action": "delete", "scope": "matching", "q": "size:big"}, b"unknown qualifier"),
    ({"action": "move", "scope": "selected", "id": "1"}, b"choose the queue to move"),
    ({"action": "move", "scope": "selected", "id": "1", "to": "nowhere"}, b"does not exist"),
])
def test_bad_bulk_requests_are_400(data, fragment, orders, client_for):
    response = client_for("admin").post(reverse("queues:message-bulk"), data)
    assert response.status_code == 400
    assert fragment in response.content.lower()


def test_bulk_confirm_shows_the_count_then_acts(orders, client_for, make_queue):
    make_queue("other")
    queues.send_batch(orders, [{"n": i} for i in range(5)])
    queues.send_batch(orders, [{"tag": "x"}] * 3)
    c = client_for("admin")
    q = f"queue:{orders} body.tag:x"
    page = c.get(reverse("queues:message-bulk"), {"action": "move", "scope": "matching", "q": q, "to": "other"})
    assert page.status_code == 200 and b"Move 3 messages?" in page.content
    assert queues.queue_stats("other").depth == 0  # the GET changed nothing
    max_id = re.search(rb'name="max_id" value="(\d+)"', page.content).group(1).decode()
    response = c.post(reverse("queues:message-bulk"), {"action": "move", "scope": "matching", "q": q, "to": "other",
                                                      "count": "3", "max_id": max_id, "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == reverse("queues:messages")
    assert queues.queue_stats("other").depth == 3 and queues.queue_stats(orders).depth == 5


def test_nothing_answers_500_to_garbage(orders, client_for):
    c = client_for("admin")
    c.raise_request_exception = False
    for method, url, data in [
        ("get", reverse("queues:queue-list") + "?sort=-", {}),
        ("get", reverse("queues:audit") + "?before=zz", {}),
        ("post", reverse("queues:queue-redrive", args=[orders]), {"rate": "fast", "limit": "-1"}),
        ("post", reverse("queues:queue-create"), {}),
        ("post", reverse("queues:queue-publish", args=[orders]), {}),
        ("get", reverse("queues:message-bulk"), {}),
        ("post", reverse("queues:redrive-stop", args=[1]), {}),
    ]:
        response = getattr(c, method)(url, data)
        assert 400 <= response.status_code < 500, (url, response.status_code)
