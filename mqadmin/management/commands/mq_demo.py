"""``mq_demo`` (``make demo``): set up demo queues and an admin, then run workers, a producer and daphne."""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, CommandParser, OutputWrapper
from django.db import connections, transaction

from mqadmin import demo
from mqadmin.embedded_db import var_dir
from queues import services
from queues.management.base import (
    MQCommand,
    non_negative_int,
    parse_duration,
    port_number,
    positive_float,
    positive_int,
    stop_on_signal,
)

ADMIN_USERNAME = "admin"
PASSWORD_FILE = "demo-admin-password"
DEMO_SETTINGS = "mqadmin.demo_settings"


def password_path() -> Path:
    """Where the demo admin's password is kept, so the login stays the same between runs."""
    return var_dir() / PASSWORD_FILE


def demo_password() -> str:
    """The demo admin's password: read from ``var/demo-admin-password``, made on first use."""
    path = password_path()
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def ensure_admin(password: str) -> bool:
    """Make ``admin`` a superuser with ``password``; return whether the user was created."""
    from django.contrib.auth import get_user_model  # deferred: the auth app must be loaded first

    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(
            username=ADMIN_USERNAME, defaults={"email": "admin@example.com"}
        )
        user.is_active = user.is_staff = user.is_superuser = True
        if created or not user.check_password(password):
            user.set_password(password)
        user.save()
    return created


def _libc_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the demo dies without stopping us (kill -9)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One process of the demo, its output copied to ours with its name in front."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.argv = argv
        # Its own session: a Ctrl-C at the terminal reaches only the demo, which then stops each
        # child with exactly one SIGTERM (a second signal would make a worker stop hard).
        self.process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, errors="replace", start_new_session=True, preexec_fn=_die_with_parent,
        )
        self.thread: threading.Thread | None = None

    def pump(self, out: OutputWrapper, lock: threading.Lock) -> None:
        """Copy the child's output line by line, prefixed, in a background thread."""

        def run() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                with lock:
                    out.write(f"{self.name:<9}| {line.rstrip()}")
                    out.flush()

        self.thread = threading.Thread(target=run, name=f"demo-{self.name}", daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def how_it_ended(self) -> str:
        """``exited with code 1`` or ``was killed by SIGKILL``."""
        code = self.process.returncode
        if code is not None and code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                pass
        return f"exited with code {code}"


class Command(MQCommand):
    help = (
        "Run the demo (`make demo`): migrate, create demo queues (orders, emails, reports, payments.fifo, "
        "each with a .dlq) and the order-events topic, make the admin superuser (password kept in "
        "var/demo-admin-password, printed at every start), then run workers, a producer of realistic "
        "traffic (bursts, delays, priorities, fifo groups, a few poison messages) and the dashboard with "
        "daphne. Ctrl-C stops everything cleanly. The demo's processes use mqadmin.demo_settings, which "
        "adds the demo handlers of mqadmin/demo.py; other workers never load them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--setup-only", action="store_true",
                          help="Only migrate and create the demo queues, topic and admin user; start nothing.")
        mode.add_argument("--producer-only", action="store_true",
                          help="Only run the demo producer in the foreground until Ctrl-C (the demo runs one "
                               "itself; use this to add load to a running demo).")
        parser.add_argument("--workers", type=non_negative_int, default=2, metavar="N",
                            help="Worker processes to start (0 for none). Default: 2.")
        parser.add_argument("--concurrency", type=positive_int, default=4, metavar="N",
                            help="Messages each worker handles at once. Default: 4.")
        parser.add_argument("--rate", type=positive_float, default=20.0, metavar="R",
                            help="The producer's average messages per second, before bursts. Default: 20.")
        parser.add_argument("--no-producer", action="store_true", help="Do not start the producer.")
        parser.add_argument("--no-web", action="store_true", help="Do not start daphne (no dashboard).")
        parser.add_argument("--host", default="127.0.0.1", help="Address daphne binds. Default: 127.0.0.1.")
        parser.add_argument("--port", type=port_number, default=8000,
                            help="Port daphne binds, 1-65535. Default: 8000.")
        parser.add_argument("--reset", action="store_true",
                            help="Purge the demo queues and their dead-letter queues before starting.")
        parser.add_argument("--duration", type=parse_duration, metavar="DURATION",
                            help="Stop by itself after this long (60, 5m), as if Ctrl-C was pressed.")
        parser.add_argument("--grace", type=parse_duration, default=20.0, metavar="DURATION",
                            help="On stop, how long children may take to finish before they are killed. "
                                 "Default: 20s.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["producer_only"]:
            self._produce(options)
            return
        if not options["setup_only"]:
            self._check_can_start(options)  # before setup, so a busy port fails fast
        self._setup(options)
        if options["setup_only"]:
            return
        self._run(options)

    # -- setup --------------------------------------------------------------------------------------
    def _setup(self, options: dict[str, Any]) -> None:
        if getattr(settings, "EMBEDDED_DATABASE", False):
            self.stdout.write("Database: embedded PostgreSQL (var/pgdata); psql: python manage.py mq_db psql")
        else:
            self.stdout.write("Database: DATABASE_URL")
        call_command("migrate", interactive=False, verbosity=0)
        created = demo.setup_queues()
        self.stdout.write(
            f"Queues: {', '.join(demo.DEMO_QUEUES)} (each with a .dlq); topic {demo.TOPIC} feeds emails and reports"
            + (f"; created {len(created)} now." if created else "; already there.")
        )
        if options["reset"]:
            total = 0
            for name in demo.all_queue_names():
                total += services.purge_queue(actor=self.actor, queue=name, confirm=name)
            self.stdout.write(f"Reset: purged {total} messages from the demo queues.")
        password = demo_password()
        created_admin = ensure_admin(password)
        self.stdout.write(
            f"Admin user {ADMIN_USERNAME!r} {'created' if created_admin else 'ready'}; "
            f"password in {password_path()}"
        )
        self._login_banner(options, password, running=False)

    def _login_banner(self, options: dict[str, Any], password: str, *, running: bool) -> None:
        url = f"http://{options['host']}:{options['port']}/"
        lines = [""]
        if running:
            lines.append("mqadmin demo is running. Press Ctrl-C to stop.")
            lines.append(f"  Dashboard: {url}")
            lines.append(f"  Admin:     {url}admin/")
        lines.append(f"  Login:     {ADMIN_USERNAME} / {password}")
        lines.append("")
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    # -- producer (a child of the demo, or alone) ---------------------------------------------------
    def _produce(self, options: dict[str, Any]) -> None:
        demo.setup_queues()

        def say(text: str) -> None:
            self.stdout.write(text)
            self.stdout.flush()

        say(f"producing about {options['rate']:g} messages/s to {', '.join(demo.DEMO_QUEUES)} "
            f"and topic {demo.TOPIC}")
        with stop_on_signal() as stopped:
            sent = demo.run_producer(rate=options["rate"], stopped=stopped, duration=options["duration"], say=say)
        say(f"producer stopped after sending {sum(sent.values())} messages")

    # -- the processes ------------------------------------------------------------------------------
    def _check_can_start(self, options: dict[str, Any]) -> None:
        if not options["no_web"]:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((options["host"], options["port"]))
                except (TypeError, ValueError) as exc:  # a host name with a NUL or a lone surrogate
                    raise CommandError(f"cannot serve on {options['host']!r}: {exc}; pass --host 127.0.0.1 "
                                       "or another address of this machine") from None
                except OSError as exc:
                    raise CommandError(
                        f"cannot serve on {options['host']}:{options['port']} ({exc.strerror}): is another demo "
                        f"running? Stop it, or pass --port {options['port'] + 1}"
                    ) from None

    def _children(self, options: dict[str, Any]) -> list[Child]:
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        env = dict(os.environ, DJANGO_SETTINGS_MODULE=DEMO_SETTINGS, PYTHONUNBUFFERED="1")
        specs: list[tuple[str, list[str]]] = []
        if not options["no_web"]:
            log = var_dir() / "log" / "demo-access.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            specs.append(("web", [sys.executable, "-m", "daphne", "-b", options["host"], "-p", str(options["port"]),
                                  "--access-log", str(log), "mqadmin.asgi:application"]))
        for n in range(1, options["workers"] + 1):
            specs.append((f"worker-{n}", [sys.executable, manage, "mq_worker", *demo.DEMO_QUEUES,
                                          "--concurrency", str(options["concurrency"])]))
        if not options["no_producer"]:
            specs.append(("producer", [sys.executable, manage, "mq_demo", "--producer-only",
                                       "--rate", str(options["rate"])]))
        children: list[Child] = []
        try:
            for name, argv in specs:
                children.append(Child(name, argv, env, Path(settings.BASE_DIR)))
        except OSError as exc:
            self._stop(children, grace=5.0)
            raise CommandError(f"could not start {name}: {exc}") from None
        return children

    def _run(self, options: dict[str, Any]) -> None:
        # Children open their own connections; ours would only idle (or be broken by a fork).
        connections.close_all()
        signals: list[int] = []

        def on_signal(signum: int, frame: Any) -> None:
            signals.append(signum)

        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, on_signal) for sig in handled}
        lock = threading.Lock()
        children: list[Child] = []
        failed: Child | None = None
        try:
            children = self._children(options)
            for child in children:
                child.pump(self.stdout, lock)
            names = ", ".join(c.name for c in children) or "nothing"
            with lock:
                self.stdout.write(f"Started {names}.")
            web = next((c for c in children if c.name == "web"), None)
            if web is not None and self._wait_for_web(web, options, signals):
                with lock:
                    self._login_banner(options, demo_password(), running=True)
            deadline = None if options["duration"] is None else time.monotonic() + options["duration"]
            while not signals:
                failed = next((c for c in children if not c.alive()), None)
                if failed is not None or (deadline is not None and time.monotonic() >= deadline):
                    break
                time.sleep(0.2)
            with lock:
                self.stdout.write(
                    f"\n{failed.name} {failed.how_it_ended()}; stopping the demo..."
                    if failed else "\nStopping the demo (children get SIGTERM and finish what they hold)..."
                )
            self._stop(children, grace=options["grace"], signals=signals)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for child in children:
                if child.alive():
                    child.process.kill()
                if child.thread is not None:
                    child.thread.join(timeout=2)
        if failed is not None:
            raise CommandError(
                f"{failed.name} {failed.how_it_ended()} (its output is above); the rest of the demo was stopped"
            )
        self.stdout.write("Demo stopped. The messages stay in PostgreSQL; run `make demo` again to carry on.")

    def _wait_for_web(self, web: Child, options: dict[str, Any], signals: list[int]) -> bool:
        host = "127.0.0.1" if options["host"] in ("0.0.0.0", "") else options["host"]
        deadline = time.monotonic() + 60
        while not signals and web.alive() and time.monotonic() < deadline:
            try:
                with socket.create_connection((host, options["port"]), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.2)
        return False

    def _stop(self, children: list[Child], *, grace: float, signals: list[int] | None = None) -> None:
        """SIGTERM every child, wait up to ``grace`` seconds (less if a second Ctrl-C comes), then SIGKILL."""
        already = len(signals) if signals is not None else 0
        for child in children:
            if child.alive():
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(c.alive() for c in children) and time.monotonic() < deadline:
            if signals is not None and len(signals) > max(already, 1):
                break  # asked again: stop now
            time.sleep(0.1)
        for child in children:
            if child.alive():
                child.process.kill()
                child.process.wait()
                self.stdout.write(f"{child.name} did not stop within {grace:g} s and was killed.")
