"""Chaos: workers killed at random, and the database server stopped mid-run. Nothing may be lost.

Handlers record every handling in ``wt_handled`` (``times`` counts repeats), so at the end each
message must have been handled at least once, the queue must be empty, and the duplicates (the
price of at-least-once delivery when a worker dies between handling and acking) are printed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import psycopg
import pytest

import queues
from mqadmin.embedded_db import ensure_server, stop_server
from tests.conftest import ROOT, wait_for
from tests.worker.conftest import WorkerProcess, worker_environment
from tests.worker.handlers import TABLE_DDL

MESSAGES = 10_000
WORKERS = 3
# A few ms per message: a run lasts long enough for a few dozen kills on a busy 2-core machine.
BODY = {"sleep": 0.001}
WORKER_ARGS = ("wt-chaos", "--concurrency", "4", "--log-interval", "2")

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def last_stats(worker: WorkerProcess) -> str:
    """The worker's last stats line (for failure messages)."""
    lines = [line for line in worker.output().splitlines() if "event=stats" in line]
    return lines[-1] if lines else f"pid {worker.pid}: no stats yet"


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print past pytest's capture: the duplicate counts are part of what these tests show."""
    with capsys.disabled():
        print(f"\n{text}")


@pytest.mark.django_db(transaction=True)
def test_random_sigkills_lose_nothing(make_queue, handled, worker_env, scratch, capsys):
    from queues.models import Worker

    make_queue("wt-chaos", visibility_timeout=5, max_receives=100)
    for start in range(0, MESSAGES, 5000):
        queues.send_batch("wt-chaos", [BODY] * min(5000, MESSAGES - start))
    logs = iter(range(1000))

    def spawn() -> WorkerProcess:
        return WorkerProcess(WORKER_ARGS, worker_env, scratch / f"chaos-{next(logs)}.log")

    alive = [spawn() for _ in range(WORKERS)]
    killed: list[WorkerProcess] = []
    rng = random.Random(7)
    started = time.monotonic()
    try:
        # Every second a random running worker dies and a fresh one takes its place, until every
        # message has been handled at least once. (Workers still booting hold nothing: killing them
        # would test nothing, and on a busy machine they would never get to work.)
        while handled.count() < MESSAGES and time.monotonic() - started < 75:
            time.sleep(1.0)
            running = [w for w in alive if "event=started" in w.output()]
            if not running:
                continue
            victim = rng.choice(running)
            alive.remove(victim)
            victim.kill()
            killed.append(victim)
            alive.append(spawn())
        kill_phase = time.monotonic() - started
        assert handled.count() == MESSAGES, (
            f"only {handled.count()} handled after {len(killed)} kills; last stats of the live workers:\n"
            + "\n".join(last_stats(w) for w in alive)
        )
        # What remains are messages handled by a killed worker but never acked: their leases run
        # out (or the dead worker's row is reaped) and the survivors handle them again.
        wait_for(lambda: queues.queue_stats("wt-chaos").depth == 0, timeout=30, interval=0.2)
        assert queues.queue_stats("wt-chaos.dlq").depth == 0
        killed_pids = [w.pid for w in killed]
        wait_for(
            lambda: not Worker.objects.filter(pid__in=killed_pids, state="live").exists(), timeout=20, interval=0.2
        )
        for worker in alive:
            worker.started().send_signal(signal.SIGTERM)
        assert [w.wait(30) for w in alive] == [0] * WORKERS
    finally:
        for worker in alive + killed:
            worker.kill()
    assert handled.count() == MESSAGES
    report(capsys, f"chaos (SIGKILL every second): {MESSAGES} messages, {len(killed)} workers killed, "
                   f"{handled.duplicates()} duplicate handlings; all handled once after {kill_phase:.1f}s, "
                   f"queue empty after {time.monotonic() - started:.1f}s")


# -- the database goes away -------------------------------------------------------------------------
def _query(url: str, sql: str) -> int:
    """One number from the private server, or -1 while it is down."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute(sql).fetchone()[0]
    except psycopg.OperationalError:
        return -1


def test_database_outage_mid_run_loses_nothing(private_server, wt_dir, scratch, capsys):
    base, url = private_server
    env = worker_environment(
        {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "mqadmin.settings",
         "PYTHONUNBUFFERED": "1"},
        wt_dir,
    )
    setup = (
        "import django; django.setup()\n"
        "import queues\n"
        "from django.db import connection\n"
        f"connection.cursor().execute({TABLE_DDL!r})\n"
        "queues.create_queue('wt-chaos', visibility_timeout=5, max_receives=100)\n"
        f"for _ in range({MESSAGES // 5000}): queues.send_batch('wt-chaos', [{BODY!r}] * 5000)\n"
    )
    subprocess.run([sys.executable, "-c", setup], env=env, cwd=ROOT, check=True, timeout=120)
    workers = [WorkerProcess(WORKER_ARGS, env, scratch / f"outage-{n}.log") for n in range(WORKERS)]
    try:
        wait_for(lambda: _query(url, "SELECT count(*) FROM wt_handled") >= MESSAGES // 4, timeout=40, interval=0.1)
        stop_server(base=base, mode="fast")
        down_at = time.monotonic()
        assert _query(url, "SELECT 1") == -1
        time.sleep(5.0)  # the outage itself
        ensure_server(base=base)
        outage = time.monotonic() - down_at
        wait_for(lambda: _query(url, "SELECT count(*) FROM wt_handled") == MESSAGES, timeout=60, interval=0.2)
        wait_for(lambda: _query(url, "SELECT count(*) FROM queues_message") == 0, timeout=30, interval=0.2)
        assert [w.proc.poll() for w in workers] == [None] * WORKERS, "every worker must survive the outage"
        # A worker whose retry backoff (up to 5 s) outlasted the drain logs its recovery later.
        wait_for(lambda: all("event=db_available" in w.output() for w in workers), timeout=20)
        wait_for(lambda: all("event=db_available where=scheduler" in w.output() for w in workers), timeout=20)
        for worker in workers:
            log = worker.output()
            assert "event=db_unavailable" in log
            # Each loop, the schedules' scheduler too, says once that the database went and once that it came
            # back, not once a second for the whole outage.
            assert log.count("event=db_unavailable where=scheduler") == 1, log
            assert log.count("event=db_available where=scheduler") == 1, log
            assert "scheduler_error" not in log, log
            worker.send_signal(signal.SIGTERM)
        assert [w.wait(30) for w in workers] == [0] * WORKERS
    finally:
        for worker in workers:
            worker.kill()
    duplicates = _query(url, "SELECT coalesce(sum(times - 1), 0) FROM wt_handled")
    report(capsys, f"chaos (PostgreSQL down {outage:.1f}s mid-run): {MESSAGES} messages, all handled, "
                   f"{duplicates} duplicate handlings")
