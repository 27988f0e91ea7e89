"""mq_demo: setup, handlers, producer, and the supervisor of its child processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

import queues
from mqadmin import demo
from queues.engine.types import Delivery
from queues.models import Queue, Subscription
from tests.browser.servers import free_port
from tests.conftest import ROOT, wait_for


@pytest.fixture
def demo_env(subprocess_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The test database, and a var/ of its own (the admin password file lives there)."""
    return {**subprocess_env, "MQADMIN_VAR_DIR": str(tmp_path / "var")}


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def login_password(out: str) -> str:
    [line] = [line for line in out.splitlines() if line.strip().startswith("Login:")]
    user, password = line.split(":", 1)[1].split(" / ")
    assert user.strip() == "admin"
    return password.strip()


def test_setup_only_creates_queues_topic_and_admin_and_is_idempotent(demo_env, tmp_path):
    first = manage(demo_env, "mq_demo", "--setup-only")
    assert first.returncode == 0, first.stderr
    assert "created 8 now" in first.stdout
    password = login_password(first.stdout)
    assert (tmp_path / "var" / "demo-admin-password").read_text().strip() == password
    assert oct((tmp_path / "var" / "demo-admin-password").stat().st_mode & 0o777) == "0o600"

    names = set(Queue.objects.values_list("name", flat=True))
    assert names == {"orders", "orders.dlq", "emails", "emails.dlq", "reports", "reports.dlq", "payments.fifo",
                     "payments.fifo.dlq"}
    assert queues.get_queue("payments.fifo").kind == "fifo"
    assert queues.get_queue("orders").dead_letter_queue.name == "orders.dlq"
    subs = {(s.topic.name, s.queue.name): s.filter for s in Subscription.objects.select_related("topic", "queue")}
    assert subs == {("order-events", "emails"): {"notify": "customer"}, ("order-events", "reports"): None}
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password(password)

    second = manage(demo_env, "mq_demo", "--setup-only")
    assert second.returncode == 0, second.stderr
    assert "already there" in second.stdout
    assert login_password(second.stdout) == password
    assert Queue.objects.count() == 8
    assert get_user_model().objects.filter(username="admin").count() == 1


def test_setup_restores_the_printed_password_and_keeps_operator_changes(demo_env):
    assert manage(demo_env, "mq_demo", "--setup-only").returncode == 0
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed-by-someone")
    admin.is_superuser = False
    admin.save()
    queues.update_queue("orders", visibility_timeout=99)
    result = manage(demo_env, "mq_demo", "--setup-only")
    admin.refresh_from_db()
    assert admin.is_superuser and admin.check_password(login_password(result.stdout))
    assert queues.get_queue("orders").visibility_timeout.total_seconds() == 99


def test_reset_purges_the_demo_queues(demo_env):
    assert manage(demo_env, "mq_demo", "--setup-only").returncode == 0
    queues.send_batch("orders", [1, 2])
    queues.send("emails.dlq", 3)
    result = manage(demo_env, "mq_demo", "--setup-only", "--reset")
    assert "Reset: purged 3 messages" in result.stdout
    assert queues.queue_stats("orders").depth == 0
    assert queues.queue_stats("emails.dlq").depth == 0


def test_handlers_work_fail_now_and_then_and_always_fail_on_poison(monkeypatch):
    def delivery(body) -> Delivery:
        from django.utils import timezone

        now = timezone.now()
        return Delivery(id=1, queue="orders", body=body, headers={}, priority=0, group=None, receive_count=1,
                        enqueued_at=now, lease_expires_at=now, receipt="1:" + "0" * 32)

    handlers = [demo.handle_order, demo.handle_email, demo.handle_report, demo.handle_payment]
    monkeypatch.setattr(demo, "FAILURE_RATE", 0.0)
    for handle in handlers:
        assert handle(delivery({"order_id": 1})) is None
        with pytest.raises(demo.PoisonMessage, match="poison message: it fails every time"):
            handle(delivery({"poison": True, "defect": "'items' is missing"}))
    monkeypatch.setattr(demo, "FAILURE_RATE", 1.0)
    for handle in handlers:
        with pytest.raises(demo.SimulatedFailure, match=r"\(simulated; attempt 1\)"):
            handle(delivery({"order_id": 1}))


def test_importing_the_demo_registers_no_handlers():
    """Other workers in the same process (and other tests) must never get the demo's handlers."""
    from queues.worker import registry

    assert not any(spec.func.__module__ == "mqadmin.demo" for spec in registry.all_handlers().values())
    assert "orders" not in registry.all_handlers()


def test_demo_settings_give_the_demo_workers_its_handlers(subprocess_env):
    code = (
        "import django, json; django.setup()\n"
        "from queues.worker import registry\n"
        "registry.autodiscover()\n"
        "specs = registry.all_handlers()\n"
        "print(json.dumps({q: [s.name, s.backoff, s.timeout] for q, s in specs.items()}))\n"
    )
    env = {**subprocess_env, "DJANGO_SETTINGS_MODULE": "mqadmin.demo_settings"}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    specs = json.loads(result.stdout.strip().splitlines()[-1])
    assert specs["orders"] == ["mqadmin.demo.handle_order", 0.5, 10]
    assert specs["payments.fifo"] == ["mqadmin.demo.handle_payment", 0.5, 10]
    assert specs["reports"][0] == "mqadmin.demo.handle_report"
    assert specs["emails"][0] == "mqadmin.demo.handle_email"

    # Without the demo's settings a worker never sees the demo's handlers.
    plain = subprocess.run([sys.executable, "-c", code], env=subprocess_env, cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert not any(v[0].startswith("mqadmin.demo.") for v in json.loads(plain.stdout.splitlines()[-1]).values())


def test_producer_sends_a_realistic_mix(db):
    demo.setup_queues()
    said: list[str] = []
    sent = demo.run_producer(rate=200, duration=2.0, first_poison_after=0.3, poison_every=0.6,
                             first_burst_after=0.5, burst_every=(60, 60), report_every=1.0, say=said.append, seed=7)
    stats = {s.queue: s for s in queues.stats()}
    for queue in demo.DEMO_QUEUES:
        assert sent[queue] > 0, queue
        assert stats[queue].sent_total == sent[queue], queue
    orders = queues.peek("orders", limit=1000)
    assert any(m.priority == 50 and m.headers.get("tier") == "express" for m in orders)
    assert any(m.body.get("poison") for m in orders)
    assert len(orders) >= 300  # the burst
    emails = queues.peek("emails", limit=1000)
    assert any(m.state == "delayed" for m in emails)
    assert any(m.body.get("poison") for m in emails)
    payments = queues.peek("payments.fifo", limit=1000)
    for account in {m.group for m in payments}:
        seqs = [m.body["seq"] for m in payments if m.group == account]
        assert seqs == list(range(1, len(seqs) + 1)), account
    reports = queues.peek("reports", limit=1000)
    assert any("event" in m.body for m in reports)  # copies published through the topic
    assert any(line.startswith("burst: ") for line in said)
    assert any(line.startswith("sent ") and "messages in the last" in line for line in said)


def test_producer_survives_a_deleted_queue(db):
    demo.setup_queues()
    queues.delete_queue("reports")
    said: list[str] = []
    sent = demo.run_producer(rate=300, duration=0.8, report_every=0, say=said.append, seed=1)
    assert sent["orders"] > 0
    assert sent["reports"] == 0
    assert sum("queue 'reports' is gone" in line for line in said) == 1


def test_busy_port_fails_before_anything_is_set_up(demo_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = manage(demo_env, "mq_demo", "--workers", "0", "--port", str(port))
    assert result.returncode == 1
    assert f"CommandError: cannot serve on 127.0.0.1:{port} (Address already in use)" in result.stderr
    assert f"pass --port {port + 1}" in result.stderr
    assert not Queue.objects.exists()


@pytest.mark.slow
def test_demo_serves_the_dashboard_and_stops_cleanly_on_ctrl_c(demo_env, spawn_manage):
    port = free_port()
    running = spawn_manage("mq_demo", "--workers", "0", "--port", str(port), "--rate", "50", env=demo_env)
    running.wait_for_output("Dashboard: ", timeout=120)
    password = login_password(running.stdout.split("is running")[1])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=30) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/admin/css/base.css", timeout=30) as response:
        assert response.status == 200  # daphne serves static files in the demo
    wait_for(lambda: queues.queue_stats("orders").sent_total > 0, timeout=30)
    running.signal(signal.SIGINT)
    assert running.finish(timeout=60) == 0
    assert "Traceback" not in running.stdout + running.stderr
    assert "producer | producer stopped after sending" in running.stdout
    assert running.stdout.rstrip().endswith("run `make demo` again to carry on.")
    assert get_user_model().objects.get(username="admin").check_password(password)
    with pytest.raises(OSError):  # daphne is gone
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.slow
def test_demo_stops_everything_when_a_child_dies(demo_env, spawn_manage):
    running = spawn_manage("mq_demo", "--workers", "0", "--no-web", env=demo_env)
    running.wait_for_output("producer | producing about")
    [producer_pid] = _children(running.proc.pid)
    os.kill(producer_pid, signal.SIGKILL)
    assert running.finish(timeout=60) == 1
    assert "producer was killed by SIGKILL; stopping the demo" in running.stdout
    assert running.stderr.strip().endswith(
        "CommandError: producer was killed by SIGKILL (its output is above); the rest of the demo was stopped")


@pytest.mark.slow
def test_demo_with_a_duration_stops_by_itself(demo_env):
    started = time.monotonic()
    result = manage(demo_env, "mq_demo", "--workers", "0", "--no-web", "--duration", "3", "--rate", "30")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 3
    assert "Stopping the demo" in result.stdout
    assert result.stdout.rstrip().endswith("run `make demo` again to carry on.")


@pytest.mark.slow
def test_full_demo_processes_messages_and_dead_letters_poison(demo_env):
    result = manage(demo_env, "mq_demo", "--no-web", "--duration", "25", "--rate", "30", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    stats = {s.queue: s for s in queues.stats()}
    assert stats["orders"].acked_total > 0
    assert stats["payments.fifo"].acked_total > 0
    assert stats["orders.dlq"].depth >= 1  # the poison order sent 3 s in
    assert all(m.body.get("poison") for m in queues.peek("orders.dlq"))


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]
