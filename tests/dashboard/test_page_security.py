"""What every dashboard page promises a browser: never cached, a strict CSP it can keep; and bulk
"Selected…" actions that take the 10,000 ids the docs promise."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

import queues
from queues.engine.validation import MAX_BATCH
from queues.forms import MAX_SELECTED
from tests.conftest import ROOT

TEMPLATE_DIRS = [ROOT / "queues" / "templates", ROOT / "templates"]


@pytest.fixture
def world(make_queue):
    name = make_queue("orders")
    [mid] = queues.send_batch(name, [{"card": "4111 1111 1111 1111"}])
    return {"queue": name, "message": mid}


def _content_pages(world) -> list[tuple[str, str, dict]]:
    q, mid = world["queue"], world["message"]
    return [
        ("get", reverse("queues:overview"), {}),
        ("get", reverse("queues:queue-list"), {}),
        ("get", reverse("queues:queue-detail", args=[q]), {}),
        ("get", reverse("queues:messages"), {}),
        ("get", reverse("queues:queue-messages", args=[q]), {}),
        ("get", reverse("queues:message-detail", args=[mid]), {}),
        ("post", reverse("queues:message-reveal", args=[mid]), {}),
        ("get", reverse("queues:message-bulk"), {"action": "delete", "scope": "selected", "ids": str(mid)}),
        ("post", reverse("queues:message-bulk"), {"action": "delete", "scope": "selected", "ids": str(mid),
                                                  "preview": "1"}),
        ("get", reverse("queues:workers"), {}),
        ("get", reverse("queues:audit"), {}),
        ("get", reverse("queues:queue-detail", args=[q]) + "?window=7", {}),  # an error page
    ]


def test_every_dashboard_page_is_kept_out_of_caches(client_for, world):
    c = client_for("admin")
    for method, url, data in _content_pages(world):
        response = getattr(c, method)(url, data)
        assert response.status_code in (200, 400), (url, response.status_code)
        assert "no-store" in response["Cache-Control"], url


def test_pages_carry_a_strict_content_security_policy(client_for, world):
    response = client_for("admin").get(reverse("queues:queue-detail", args=[world["queue"]]))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "an inline <style>"),
    (re.compile(r"\sstyle\s*=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an event-handler attribute"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def test_no_template_needs_inline_script_or_style():
    """The CSP forbids inline script and style: a template relying on one would break silently."""
    found = []
    for folder in TEMPLATE_DIRS:
        for path in folder.rglob("*.html"):
            text = path.read_text()
            found += [f"{path.relative_to(ROOT)}: {what}" for pattern, what in INLINE if pattern.search(text)]
    assert not found, found


# -- "Selected…" bulk actions -----------------------------------------------------------------------
def _send(queue: str, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        ids += queues.send_batch(queue, [{"n": i} for i in range(min(MAX_BATCH, n - len(ids)))])
    return ids


def _depth(queue: str) -> int:
    return queues.stats(queue)[0].depth


def _hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


@pytest.mark.slow
def test_selected_action_takes_ten_thousand_ids_from_preview_to_done(client_for, make_queue):
    queue = make_queue("big")
    ids = _send(queue, MAX_SELECTED)
    c = client_for("admin")
    preview = c.post(reverse("queues:message-bulk"), {
        "action": "delete", "scope": "selected", "preview": "1", "ids": ",".join(map(str, ids)),
    })
    assert preview.status_code == 200
    html = preview.content.decode()
    assert "Delete 10,000 messages" in html
    assert _depth(queue) == MAX_SELECTED  # a preview changes nothing
    # Confirm exactly as the page's form does (minus the move target), through Django's real limits.
    form = _hidden_fields(html)
    done = c.post(reverse("queues:message-bulk"), form)
    assert done.status_code == 302, done.content[:500]
    assert _depth(queue) == 0


def test_more_than_the_limit_is_refused_with_a_reason_and_nothing_changes(client_for, make_queue):
    queue = make_queue("big")
    [mid] = queues.send_batch(queue, [{"n": 1}])
    too_many = ",".join([str(mid)] * (MAX_SELECTED + 1))
    response = client_for("admin").post(reverse("queues:message-bulk"),
                                        {"action": "delete", "scope": "selected", "ids": too_many})
    assert response.status_code == 400
    assert b"most 10,000 selected messages" in response.content
    assert _depth(queue) == 1


def test_a_field_per_id_past_djangos_field_limit_gets_a_reason_not_a_bare_400(client_for, make_queue, settings):
    queue = make_queue("big")
    [mid] = queues.send_batch(queue, [{"n": 1}])
    fields = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    query = "action=delete&scope=selected&" + "&".join(f"id={mid}" for _ in range(fields))
    response = client_for("admin").get(reverse("queues:message-bulk") + "?" + query)
    assert response.status_code == 400
    assert b"comma-separated" in response.content


@pytest.mark.parametrize("bad", ["1,²", "1,-2", "1,99999999999999999999", "1,x"])
def test_malformed_ids_are_refused_by_name(client_for, make_queue, bad):
    response = client_for("admin").get(reverse("queues:message-bulk"),
                                       {"action": "delete", "scope": "selected", "ids": bad})
    assert response.status_code == 400
    assert b"essage ids must be whole numbers" in response.content


def test_checkbox_ids_still_work_for_clients_without_script(client_for, make_queue):
    queue = make_queue("small")
    ids = queues.send_batch(queue, [{"n": 1}, {"n": 2}])
    response = client_for("admin").post(reverse("queues:message-bulk"),
                                        {"action": "delete", "scope": "selected", "id": [str(i) for i in ids]})
    assert response.status_code == 302
    assert _depth(queue) == 0
