"""A queue's settings changed in the dashboard reach a running worker within 2 s (a NOTIFY from a
trigger on the queue table, see queues/engine/notify.py), not at its next minute-long refresh."""

from __future__ import annotations

import time
from pathlib import Path

from django.contrib.auth.models import User
from django.db import connection

import queues
from queues import services
from tests.conftest import wait_for


def lease_left(message_id: int) -> float:
    """Seconds until the lease of the in-flight message ``message_id`` runs out (0 when not in flight)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT greatest(extract(epoch FROM leased_until - now()), 0) FROM queues_message "
            "WHERE id = %s AND leased_until IS NOT NULL",
            [message_id],
        )
        row = cur.fetchone()
    return float(row[0]) if row else 0.0


def claimed_lease(wt_dir: Path) -> float:
    """Send a message that holds its handler; once a worker runs it, the seconds left on its lease."""
    message = queues.send("wt-record", {"gate": True})
    wait_for(lambda: (wt_dir / f"started-{message}").exists(), timeout=10, interval=0.01)
    return lease_left(message)


def test_a_visibility_timeout_changed_in_the_dashboard_reaches_a_running_worker(
    make_queue, handled, start_worker, wt_dir
):
    make_queue("wt-record", visibility_timeout=30)
    admin = User.objects.create_superuser("admin", password="pw-admin")
    worker = start_worker("wt-record", "--poll-interval", "60")
    assert 20 < claimed_lease(wt_dir) <= 30

    services.update_queue_settings(actor=admin, queue="wt-record", settings={"visibility_timeout": 600})
    changed_at = time.monotonic()
    worker.wait_for_log("event=queue_settings queue=wt-record visibility_timeout=600 was=30", timeout=5)
    assert time.monotonic() - changed_at < 2.0
    assert 590 < claimed_lease(wt_dir) <= 600  # the next claim leases for the new length
