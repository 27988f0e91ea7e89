"""The Database page: the holder of a held snapshot, the warning with its fix, and ending the session
(confirmed, permission-checked, CSRF-protected, audited)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from queues.models import AuditEvent
from tests.conftest import wait_for
from tests.observability.conftest import parse, value

APP = "held-snapshot-test"


class Held:
    """A session on its own connection, idle in a repeatable-read transaction that took a snapshot."""

    def __init__(self, url: str, *, user: str | None = None, application: str = APP) -> None:
        kwargs = {"user": user} if user else {}
        self.conn = psycopg.connect(url, application_name=application, **kwargs)
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        self.conn.execute("SELECT 1")
        self.pid = self.conn.info.backend_pid

    def alive(self) -> bool:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [self.pid])
            return cur.fetchone()[0] == 1

    def close(self) -> None:
        try:
            self.conn.close()
        except psycopg.Error:
            pass


@pytest.fixture
def hold_snapshot(database_url: str) -> Iterator[Callable[..., Held]]:
    """Factory: open a held snapshot (closed at teardown if still open)."""
    opened: list[Held] = []

    def make(**kwargs: str) -> Held:
        held = Held(database_url, **kwargs)
        opened.append(held)
        return held

    yield make
    for held in opened:
        held.close()


def _backend_start(pid: int) -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT backend_start FROM pg_stat_activity WHERE pid = %s", [pid])
        return cur.fetchone()[0].isoformat()


def test_page_shows_the_holder_of_a_held_snapshot_and_warns(hold_snapshot, client_for, settings) -> None:
    settings.MQADMIN = {"DB_SNAPSHOT_WARN_AFTER": 0.2}
    held = hold_snapshot()
    viewer = client_for("viewer")

    def page() -> str:
        response = viewer.get(reverse("queues:database"))
        assert response.status_code == 200
        return response.content.decode()

    html = wait_for(lambda: (lambda h: h if "data-db-warning" in h else None)(page()), timeout=10)
    row = re.search(rf'<tr data-pid="{held.pid}".*?</tr>', html, re.S)
    assert row, f"pid {held.pid} not listed"
    assert APP in row.group(0)
    assert "idle in transaction" in row.group(0)
    warning = re.search(r"data-db-warning>(.*?)</div>", html, re.S).group(1)
    assert f"pid {held.pid} ({APP})" in warning
    assert "idle_in_transaction_session_timeout" in warning  # the fix, in words
    assert 'data-table="queues_message"' in html
    # A viewer sees the holder, not the button that ends it.
    assert reverse("queues:database-session-end", args=[held.pid]) not in html


def test_no_warning_without_a_long_snapshot(client_for, transactional_db, settings) -> None:
    settings.MQADMIN = {"DB_SNAPSHOT_WARN_AFTER": 300}
    html = client_for("viewer").get(reverse("queues:database")).content.decode()
    assert "data-db-warning" not in html


def test_overview_card_and_nav_link(hold_snapshot, client_for) -> None:
    held = hold_snapshot()
    html = client_for("viewer").get(reverse("queues:overview")).content.decode()
    card = re.search(r"<a [^>]*data-db-card.*?</a>", html, re.S).group(0)
    assert f"pid {held.pid}" in card
    assert f'href="{reverse("queues:database")}"' in html


def test_purger_ends_the_holding_session_and_it_is_audited(hold_snapshot, client_for, users) -> None:
    held = hold_snapshot()
    purger = client_for("purger", csrf=True)
    url = reverse("queues:database-session-end", args=[held.pid])
    page = purger.get(reverse("queues:database")).content.decode()
    assert url in page
    confirm = purger.get(url)
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert APP in html
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    start = re.search(r'name="backend_start" value="([^"]+)"', html).group(1)
    assert held.alive()  # the GET changed nothing
    response = purger.post(url, {"csrfmiddlewaretoken": token, "backend_start": start, "mode": "terminate"})
    assert response.status_code == 302, response.content
    wait_for(lambda: not held.alive(), timeout=10)
    event = AuditEvent.objects.get(action="cancel_backend")
    assert event.outcome == "ok"
    assert event.actor == users["purger"]
    assert event.detail["pid"] == held.pid and event.detail["mode"] == "terminate"
    assert event.detail["application"] == APP


def test_viewer_and_operator_may_not_end_a_session(hold_snapshot, client_for) -> None:
    held = hold_snapshot()
    url = reverse("queues:database-session-end", args=[held.pid])
    for role in ("viewer", "operator"):
        client = client_for(role)
        assert client.get(url).status_code == 403
        response = client.post(url, {"backend_start": _backend_start(held.pid), "mode": "terminate"})
        assert response.status_code == 403
    assert held.alive()
    denied = AuditEvent.objects.filter(action="cancel_backend", outcome="denied")
    assert denied.count() == 2
    assert all("purge_queues" in e.error for e in denied)


def test_anonymous_is_sent_to_login(hold_snapshot) -> None:
    held = hold_snapshot()
    response = Client().post(reverse("queues:database-session-end", args=[held.pid]), {"mode": "terminate"})
    assert response.status_code == 302 and "login" in response["Location"]
    assert held.alive()


def test_end_session_needs_csrf(hold_snapshot, client_for) -> None:
    held = hold_snapshot()
    response = client_for("purger", csrf=True).post(reverse("queues:database-session-end", args=[held.pid]),
                                                    {"mode": "terminate"})
    assert response.status_code == 403
    assert held.alive()


def test_cancel_mode_leaves_an_idle_session_alive(hold_snapshot, client_for) -> None:
    held = hold_snapshot()
    url = reverse("queues:database-session-end", args=[held.pid])
    response = client_for("purger").post(url, {"mode": "cancel", "backend_start": _backend_start(held.pid)})
    assert response.status_code == 302
    assert held.alive()  # an idle transaction has no query to cancel
    assert AuditEvent.objects.get(action="cancel_backend").detail["mode"] == "cancel"


@pytest.mark.parametrize(("form", "message"), [
    ({"mode": "kill"}, "mode must be"),
    ({"mode": "terminate", "backend_start": "yesterday"}, "backend_start must be"),
    ({"mode": "terminate", "backend_start": "2001-01-01T00:00:00+00:00"}, "now a different session"),
])
def test_bad_input_refused_audited_and_nothing_done(hold_snapshot, client_for, form, message) -> None:
    held = hold_snapshot()
    response = client_for("purger").post(reverse("queues:database-session-end", args=[held.pid]), form)
    assert response.status_code == 400
    assert message in response.content.decode().lower()
    assert held.alive()
    event = AuditEvent.objects.get(action="cancel_backend")
    assert event.outcome == "error" and message in event.error


def test_unknown_pid_refused(client_for, transactional_db) -> None:
    url = reverse("queues:database-session-end", args=[999_999])
    purger = client_for("purger")
    assert purger.get(url).status_code == 404
    response = purger.post(url, {"mode": "terminate"})
    assert response.status_code == 404
    assert AuditEvent.objects.get(action="cancel_backend").error.startswith("no session with pid 999999")


def test_superuser_session_mqadmin_does_not_own_is_refused(hold_snapshot, client_for) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'mq_test_dba'")
        if cur.fetchone() is None:
            cur.execute("CREATE ROLE mq_test_dba SUPERUSER LOGIN")
    held = hold_snapshot(user="mq_test_dba")
    purger = client_for("purger")
    html = purger.get(reverse("queues:database")).content.decode()
    row = re.search(rf'<tr data-pid="{held.pid}".*?</tr>', html, re.S).group(0)
    assert "DBA only" in row
    response = purger.post(reverse("queues:database-session-end", args=[held.pid]),
                           {"mode": "terminate", "backend_start": _backend_start(held.pid)})
    assert response.status_code == 400
    assert "superuser role &#x27;mq_test_dba&#x27;" in response.content.decode()
    assert held.alive()
    assert AuditEvent.objects.get(action="cancel_backend").outcome == "error"


def test_read_only_mode_refuses_ending_sessions(hold_snapshot, client_for, settings) -> None:
    settings.MQADMIN = {"READ_ONLY": True}
    held = hold_snapshot()
    response = client_for("purger").post(reverse("queues:database-session-end", args=[held.pid]),
                                         {"mode": "terminate"})
    assert response.status_code == 403
    assert held.alive()


def test_same_figures_in_metrics_and_mq_stats(hold_snapshot, client_for, settings) -> None:
    settings.MQADMIN = {"DB_SNAPSHOT_WARN_AFTER": 0.2}
    held = hold_snapshot()
    samples = parse(client_for("viewer").get(reverse("queues:metrics")).content.decode())
    assert value(samples, "mqadmin_db_oldest_snapshot_age_seconds") >= 0
    assert value(samples, "mqadmin_db_table_dead_tuples", table="queues_message") is not None
    assert value(samples, "mqadmin_db_table_size_bytes", table="queues_counter") > 0

    def stats() -> str | None:
        out = io.StringIO()
        call_command("mq_stats", "--database", stdout=out)
        text = out.getvalue()
        return text if "WARNING" in text else None

    text = wait_for(stats, timeout=10)
    assert "queues_message" in text
    assert re.search(rf"^\s*{held.pid}\s+\S+\s+{APP}\s+idle in transaction", text, re.M), text
    assert f"pid {held.pid} ({APP})" in text


def test_session_text_is_escaped(database_url, client_for) -> None:
    held = Held(database_url, application="<b>app</b>")
    try:
        held.conn.execute("SELECT '<script>alert(1)</script>'")
        html = client_for("viewer").get(reverse("queues:database")).content.decode()
        assert f'data-pid="{held.pid}"' in html
        assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
        assert "<b>app</b>" not in html and "&lt;b&gt;app&lt;/b&gt;" in html
    finally:
        held.close()
