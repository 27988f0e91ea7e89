"""Section 4: who sees what and who may do what, enforced on the server for every page and action."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

import queues
from queues.models import AuditEvent, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_queue, make_worker):
    """A queue with ready, delayed and dead messages, a worker, and one message id to point at."""
    name = make_queue("orders", max_receives=1)
    ids = queues.send_batch(name, [{"n": i} for i in range(3)])
    queues.send(name, {"later": True}, delay=600)
    [d] = queues.receive(name)
    queues.nack(d.receipt, error="boom")  # max_receives=1: straight to orders.dlq
    make_worker([name])
    return {"queue": name, "id": ids[1], "dead_id": d.id}


def page_urls(w: dict) -> list[str]:
    q, mid = w["queue"], w["id"]
    return [
        reverse("queues:overview"),
        reverse("queues:queue-list"),
        reverse("queues:queue-detail", args=[q]),
        reverse("queues:messages"),
        reverse("queues:queue-messages", args=[q]),
        reverse("queues:message-detail", args=[mid]),
        reverse("queues:workers"),
        reverse("queues:audit"),
    ]


def action_posts(w: dict) -> list[tuple[str, dict]]:
    """Every action endpoint with a well-formed body, so only the permission decides."""
    q, mid = w["queue"], w["id"]
    return [
        (reverse("queues:queue-pause", args=[q]), {}),
        (reverse("queues:queue-resume", args=[q]), {}),
        (reverse("queues:queue-settings", args=[q]), {
            "kind": "standard", "visibility_timeout": "30", "max_receives": "1", "dead_letter_queue": "orders.dlq",
            "default_delay": "0", "retention": "345600", "max_message_size": "262144", "dedup_window": "300"}),
        (reverse("queues:queue-purge", args=[q]), {"confirm": q}),
        (reverse("queues:queue-delete", args=[q]), {"confirm": q}),
        (reverse("queues:queue-publish", args=[q]), {"body": '{"a": 1}', "priority": "0"}),
        (reverse("queues:queue-redrive", args=[f"{q}.dlq"]), {"to": q}),
        (reverse("queues:queue-create"), {"name": "fresh", "kind": "standard", "visibility_timeout": "30",
                                          "max_receives": "5"}),
        (reverse("queues:message-bulk"), {"action": "delete", "scope": "selected", "id": [str(mid)]}),
        (reverse("queues:message-bulk"), {"action": "retry", "scope": "matching", "q": f"queue:{q}"}),
        (reverse("queues:message-bulk"), {"action": "move", "scope": "selected", "id": [str(mid)],
                                          "to": f"{q}.dlq"}),
    ]


def test_every_page_renders_for_a_viewer(world, client_for):
    c = client_for("viewer")
    for url in page_urls(world):
        response = c.get(url)
        assert response.status_code == 200, url


def test_staff_without_permissions_get_403_on_every_page(world, client_for):
    c = client_for("staff")
    for url in page_urls(world):
        response = c.get(url)
        assert response.status_code == 403, url
        assert b"queues.view_dashboard" in response.content


def test_anonymous_users_are_sent_to_the_login_page(world, client_for):
    c = client_for("anonymous")
    for url in page_urls(world):
        response = c.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next=")


def test_login_page_renders_in_the_dashboard_look_and_logs_in(users, client):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b"dashboard.css" in page.content and b"csrfmiddlewaretoken" in page.content
    response = client.post(reverse("login"), {"username": "viewer", "password": "pw-viewer"})
    assert response.status_code == 302 and response["Location"] == reverse("queues:overview")
    assert client.get(reverse("queues:overview")).status_code == 200
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("queues:overview")).status_code == 302


def test_viewer_gets_403_on_every_action_and_each_attempt_is_audited(world, client_for):
    c = client_for("viewer")
    before = Message.objects.count()
    posts = action_posts(world)
    for url, data in posts:
        response = c.post(url, data)
        assert response.status_code == 403, url
    assert Message.objects.count() == before
    assert not queues.get_queue(world["queue"]).paused
    denied = AuditEvent.objects.filter(actor_name="viewer", outcome="denied")
    assert denied.count() == len(posts)


def test_staff_without_permissions_get_403_on_actions(world, client_for):
    c = client_for("staff")
    for url, data in action_posts(world):
        assert c.post(url, data).status_code == 403, url


def test_anonymous_action_posts_redirect_to_login(world, client_for):
    c = client_for("anonymous")
    for url, data in action_posts(world):
        response = c.post(url, data)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url


def test_confirm_pages_are_403_for_a_viewer(world, client_for):
    c = client_for("viewer")
    q, mid = world["queue"], world["id"]
    for url in [
        reverse("queues:queue-purge", args=[q]), reverse("queues:queue-delete", args=[q]),
        reverse("queues:queue-publish", args=[q]), reverse("queues:queue-redrive", args=[f"{q}.dlq"]),
        reverse("queues:queue-create"),
        reverse("queues:message-bulk") + f"?action=delete&scope=selected&id={mid}",
    ]:
        assert c.get(url).status_code == 403, url


def test_read_only_mode_denies_every_action_even_to_superusers(world, client_for):
    c = client_for("admin")
    with override_settings(MQADMIN={"READ_ONLY": True}):
        page = c.get(reverse("queues:queue-detail", args=[world["queue"]]))
        assert page.status_code == 200
        assert b"Read-only mode" in page.content
        assert reverse("queues:queue-pause", args=[world["queue"]]).encode() not in page.content
        for url, data in action_posts(world):
            response = c.post(url, data)
            assert response.status_code == 403, url
            assert b"read-only" in response.content
    assert AuditEvent.objects.filter(actor_name="admin", outcome="denied").count() == len(action_posts(world))


def test_the_ui_offers_only_what_the_user_may_do(world, client_for):
    q = world["queue"]
    url = reverse("queues:queue-detail", args=[q])
    pause = reverse("queues:queue-pause", args=[q]).encode()
    purge = reverse("queues:queue-purge", args=[q]).encode()
    publish = reverse("queues:queue-publish", args=[q]).encode()
    save = b"Save settings"
    seen = {role: client_for(role).get(url).content for role in ("viewer", "operator", "purger", "publisher", "admin")}
    assert not any(x in seen["viewer"] for x in (pause, purge, publish, save))
    assert pause in seen["operator"] and save in seen["operator"] and purge not in seen["operator"]
    assert purge in seen["purger"] and publish not in seen["purger"]
    assert publish in seen["publisher"] and pause not in seen["publisher"]
    assert all(x in seen["admin"] for x in (pause, purge, publish, save))
    browser = client_for("viewer").get(reverse("queues:messages")).content
    assert b'name="action"' not in browser  # no bulk bar for a viewer


def test_role_groups_can_be_made_twice(db):
    from queues.permissions import ROLE_GROUPS, ensure_role_groups

    first = ensure_role_groups()
    second = ensure_role_groups()
    assert {g.pk for g in first.values()} == {g.pk for g in second.values()}
    assert second["mq operators"].permissions.count() == len(ROLE_GROUPS["mq operators"])
