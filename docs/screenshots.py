"""Screenshots of the dashboard for the README and docs/dashboard.md, at 1400 px and at 400 px.

    .venv/bin/python docs/screenshots.py            # a private embedded PostgreSQL, thrown away after
    .venv/bin/python docs/screenshots.py --database-url postgresql://postgres@127.0.0.1:5432/screens

It migrates an empty database, makes demo traffic (queues with retries and dead letters, a fifo queue,
a queue that nobody consumes), starts a real ``mq_worker`` and daphne, lets the sampler collect
some history, then saves PNGs of the overview, a dead-letter queue's page and a queue's page into
``docs/img/`` with Playwright and Debian's Chromium (``MQADMIN_CHROMIUM`` overrides its path).

With ``--database-url`` the database must exist and be empty (it is migrated, never dropped).
This module also holds the demo handlers the worker runs (``docs.screenshots.handle_*``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
CHROMIUM = os.environ.get("MQADMIN_CHROMIUM", "/usr/bin/chromium")
USER, PASSWORD = "demo", "demo-password-for-screenshots"
WARMUP_SECONDS = 40.0
"""How long traffic runs before the first screenshot, so charts and rates have something to show."""

HANDLERS = {
    "orders": "docs.screenshots.handle_order",
    "payments": "docs.screenshots.handle_payment",
    "emails.fifo": "docs.screenshots.handle_email",
}


# -- the demo handlers (run inside mq_worker) --------------------------------------------------------
def handle_order(message: Any) -> None:
    """Orders: a few unknown SKUs fail every time and end up dead-lettered."""
    time.sleep(random.uniform(0.02, 0.15))
    if message.body.get("sku", "").startswith("UNKNOWN"):
        raise KeyError(f"unknown SKU {message.body['sku']}")


def handle_payment(message: Any) -> None:
    """Payments: the gateway answers 503 now and then; retries mostly get through."""
    time.sleep(random.uniform(0.05, 0.3))
    if random.random() < 0.25:
        raise ConnectionError("503 Service Unavailable from the payment gateway")


def handle_email(message: Any) -> None:
    """Emails: always fine."""
    time.sleep(random.uniform(0.01, 0.05))


# -- setup -----------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check: Callable[[], object], deadline: float) -> object:
    """Poll ``check`` until it is truthy; fail naming ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise SystemExit(f"screenshots: {what} did not happen within {deadline:g}s")
        time.sleep(0.2)


def environment(database_url: str) -> dict[str, str]:
    """The environment of every child process (and of this one, for the ORM)."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="mqadmin.settings",
        PYTHONPATH=str(ROOT),
        DJANGO_DEBUG="1",
        DJANGO_SERVE_STATIC="1",
        PYTHONUNBUFFERED="1",
        DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY") or "screenshots-" + "x" * 50,
        MQADMIN_SETTINGS=json.dumps({"HANDLERS": HANDLERS, "HEARTBEAT_INTERVAL": 1.0}),
    )
    return env


def seed() -> dict[str, Any]:
    """Queues, a backlog, dead letters with two kinds of error; returns the names to photograph."""
    from django.contrib.auth.models import User

    import queues  # deferred: Django is set up by main() first

    User.objects.create_superuser(USER, f"{USER}@example.com", PASSWORD)
    queues.create_queue("orders", max_receives=3)
    queues.create_queue("payments", max_receives=4)
    queues.create_queue("emails.fifo", kind="fifo")
    queues.create_queue("reports")
    queues.send_batch("reports", [{"report": i, "month": "2026-11"} for i in range(1500)])
    # Dead letters now, without waiting for backoffs: poison messages received and failed max_receives times.
    poison = [{"order": 9000 + i, "sku": f"UNKNOWN-{i % 3}"} for i in range(45)]
    gateway = [{"payment": 7000 + i, "amount": 12.5} for i in range(12)]
    queues.send_batch("orders", poison)
    queues.send_batch("payments", gateway)
    for queue, error, rounds in (
        ("orders", "KeyError: 'unknown SKU UNKNOWN-1'\n  File \"shop/orders.py\", line 42, in handle", 3),
        ("payments", "ConnectionError: 503 Service Unavailable from the payment gateway", 4),
    ):
        for _ in range(rounds + 1):
            for d in queues.receive(queue, max_messages=100):
                queues.nack(d.receipt, error=error)
    return {"dlq": "orders.dlq", "queue": "orders"}


class Traffic(threading.Thread):
    """Sends orders, payments and emails at a few per second until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        from django.db import connections

        import queues  # deferred: Django is set up by main() first

        n = 0
        while not self.stopping.wait(0.2):
            n += 1
            queues.send("orders", {"order": n, "sku": "UNKNOWN-7" if n % 40 == 0 else f"SKU-{n % 17}"})
            if n % 2 == 0:
                queues.send("payments", {"payment": n, "amount": round(random.uniform(5, 90), 2)})
            queues.send("emails.fifo", {"to": f"user{n % 9}@example.com"}, group=f"user{n % 9}")
            if n % 50 == 0:
                connections.close_all()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A child process writing to ``log``."""
    with open(log, "wb") as out:  # the child keeps its own copy of the file descriptor
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def photograph(base_url: str, targets: dict[str, str], out: Path) -> list[Path]:
    """Log in and save each page at 1400 and 400 px; returns the files written."""
    from playwright.sync_api import sync_playwright  # deferred: only the screenshot step needs it

    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        page = context.new_page()
        page.goto(f"{base_url}/accounts/login/")
        page.fill("#id_username", USER)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        for width in (1400, 400):
            page.set_viewport_size({"width": width, "height": 1000 if width > 800 else 860})
            for name, path in targets.items():
                page.goto(f"{base_url}{path}")
                # Poll for content, with a deadline: the socket says "live", the charts are drawn.
                try:
                    page.wait_for_selector('#live-status[data-state="live"]', timeout=20_000)
                    page.wait_for_function(
                        "() => [...document.querySelectorAll('.chart:not(.sparkline)')].every("
                        "c => c.querySelector('canvas') || c.querySelector('.chart-empty'))",
                        timeout=20_000,
                    )
                except Exception as exc:  # a missing chart still makes a useful picture; say so
                    print(f"screenshots: {name} at {width}px without all its live parts: {exc}", file=sys.stderr)
                page.wait_for_timeout(1500)  # one more sample lands, so numbers and charts agree
                target = out / f"{name}-{width}.png"
                page.screenshot(path=str(target), full_page=width < 800)
                written.append(target)
        browser.close()
    return written


def main() -> int:
    """Build the demo, run it for a while, take the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="an existing, empty database (default: a private embedded one)")
    parser.add_argument("--warmup", type=float, default=WARMUP_SECONDS, help="seconds of traffic before the shots")
    parser.add_argument("--out", type=Path, default=IMG, help="where the PNGs go (default: docs/img)")
    options = parser.parse_args()
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"screenshots: no Chromium at {CHROMIUM}: apt-get install chromium, or set MQADMIN_CHROMIUM")

    scratch = Path(tempfile.mkdtemp(prefix="mq-screens-"))
    server_base = None
    procs: list[subprocess.Popen] = []
    traffic: Traffic | None = None
    try:
        url = options.database_url
        if not url:
            sys.path.insert(0, str(ROOT))
            from mqadmin.embedded_db import ensure_server  # deferred: only without --database-url

            server_base = scratch / "pg"
            url = ensure_server(base=server_base).url()
        env = environment(url)
        os.environ.update(env)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
        sys.path.insert(0, str(ROOT))
        import django  # deferred: the environment above must be in place first

        django.setup()
        targets = seed()
        worker_args = [
            sys.executable,
            "manage.py",
            "mq_worker",
            "orders",
            "payments",
            "emails.fifo",
            "--concurrency",
            "6",
        ]
        procs.append(start(worker_args, env, scratch / "worker.log"))
        port = free_port()
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mqadmin.asgi:application"]
        procs.append(start(daphne, env, scratch / "daphne.log"))

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_until("daphne listening", listening, 60)
        traffic = Traffic()
        traffic.start()
        print(f"screenshots: traffic for {options.warmup:g}s on http://127.0.0.1:{port}/ …", file=sys.stderr)
        time.sleep(options.warmup)
        options.out.mkdir(parents=True, exist_ok=True)
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"  # Playwright's loop runs on this thread beside the ORM thread
        pages = {
            "overview": "/",
            "dead-letters": f"/queues/{targets['dlq']}/dead-letters/",
            "queue": f"/queues/{targets['queue']}/",
        }
        for path in photograph(f"http://127.0.0.1:{port}", pages, options.out):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        return 0
    except BaseException:
        for log in sorted(scratch.glob("*.log")):  # what the worker and daphne said, before it is removed
            print(f"--- {log.name} (last lines)\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        if traffic is not None:
            traffic.stopping.set()
            traffic.join(5)
        for proc in reversed(procs):
            stop(proc)
        if server_base is not None:
            from mqadmin.embedded_db import stop_server  # deferred: imported above on this path only

            try:
                from django.db import connections  # deferred: Django may not be set up

                connections.close_all()
            except Exception:
                pass
            stop_server(base=server_base, mode="immediate")
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
