"""Worker throughput, load balancing and overhead: ``mq_worker`` processes against one PostgreSQL.

    .venv/bin/python bench/worker_bench.py [--quick] [--json results.jsonl]

What it measures (each on a fresh backlog in its own database, ``bench_worker`` on the embedded
server unless ``DATABASE_URL`` is set):

1. Throughput and per-worker share with 1, 2 and 4 worker processes, on a no-op handler and on a
   handler that sleeps 10 ms. The queue is paused while the backlog is loaded and the workers start;
   the clock runs from resume (plus a NOTIFY) until the queue is empty. Shares come from each
   worker's heartbeat row (``processed``) after a graceful stop.
2. The engine's own rate with 2 processes looping ``receive(max_messages=B)`` + ``ack_batch`` (no
   handler, no threads), to compare with 2 workers on the no-op handler: the worker's overhead. The
   workers get ``--prefetch 2*B``: a worker claims when half its prefetch is free and acks in batches
   of half of it, so both sides run statements of B messages. Every run starts from a vacuumed table.

The handlers live in this module (``bench.worker_bench.noop`` / ``sleep10``); the workers find them
through ``MQADMIN_SETTINGS``. Importing this module does nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from bench.benchdb import setup_django  # noqa: E402 (needs ROOT on the path)

# The benchmarks name their database (DATABASE_URL), so the settings want a key: one for benchmarks only,
# inherited by the processes they start (docs/deploy.md, "The secret key").
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
DB_NAME = "bench_worker"


# -- the handlers the workers run -------------------------------------------------------------------
def noop(message: Any) -> None:
    """Does nothing: the worker's own cost per message."""


def sleep10(message: Any) -> None:
    """Sleeps 10 ms, like a handler waiting on a remote call."""
    time.sleep(0.01)


HANDLERS = {"bench-noop": "bench.worker_bench.noop", "bench-sleep": "bench.worker_bench.sleep10"}


# -- setup ------------------------------------------------------------------------------------------
def database_url() -> str:
    """The bench database (created and migrated on first use)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    sys.path.insert(0, str(ROOT))
    import psycopg

    from mqadmin.embedded_db import ensure_server

    server = ensure_server()
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return server.url(DB_NAME)


def child_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="mqadmin.settings", PYTHONUNBUFFERED="1",
        MQADMIN_SETTINGS=json.dumps({"HANDLERS": HANDLERS, "HEARTBEAT_INTERVAL": 0.5}), MQADMIN_LOG_LEVEL="WARNING",
    )
    return env


def notify(queue: str) -> None:
    from django.db import connection

    import queues

    with connection.cursor() as cur:
        cur.execute("SELECT pg_notify('mqadmin', %s::text)", [str(queues.get_queue(queue).id)])


def load(queue: str, count: int) -> None:
    """A paused queue with ``count`` ready messages."""
    import queues

    queues.ensure_queue(queue, visibility_timeout=60, max_receives=0)
    queues.purge(queue)
    queues.pause(queue)
    vacuum()
    for start in range(0, count, 10_000):
        queues.send_batch(queue, [{"n": i} for i in range(start, min(start + 10_000, count))])
    # Every run starts from the same table: no dead rows of the run before (which made the engine loop
    # swing from 14.6k to 37.0k msg/s within minutes), hint bits set, statistics fresh.
    vacuum()


def vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("VACUUM (ANALYZE) queues_message, queues_counter")


def wait_empty(queue: str, timeout: float = 600) -> float:
    import queues

    deadline = time.monotonic() + timeout
    while queues.queue_stats(queue).depth > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"{queue} did not drain within {timeout}s")
        time.sleep(0.01)
    return time.monotonic()


# -- runs -------------------------------------------------------------------------------------------
def children_cpu() -> float:
    """CPU seconds used by finished child processes so far (less noisy than wall time on a busy box)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_workers(url: str, queue: str, count: int, processes: int, concurrency: int, prefetch: int | None) -> dict:
    """``processes`` workers drain ``count`` messages; returns throughput and shares."""
    import queues
    from queues.models import Worker

    load(queue, count)
    cpu_before = children_cpu()
    args = [sys.executable, str(ROOT / "manage.py"), "mq_worker", queue, "--concurrency", str(concurrency),
            "--log-interval", "0", "--prune-interval", "0", "--poll-interval", "0.5"]
    if prefetch:
        args += ["--prefetch", str(prefetch)]
    procs = [subprocess.Popen(args, env=child_env(url), cwd=ROOT) for _ in range(processes)]
    pids = [p.pid for p in procs]
    try:
        deadline = time.monotonic() + 120
        while Worker.objects.filter(pid__in=pids, state="live").count() < processes:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit("workers did not start")
            time.sleep(0.05)
        time.sleep(1.0)  # let every worker reach its idle wait: the start line is the same for all
        started = time.monotonic()
        queues.resume(queue)
        notify(queue)
        finished = wait_empty(queue)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    cpu = children_cpu() - cpu_before
    rows = {w.pid: w.processed for w in Worker.objects.filter(pid__in=pids)}
    processed = [rows.get(pid, 0) for pid in pids]
    mean = statistics.mean(processed)
    return {
        "kind": "workers", "queue": queue, "processes": processes, "concurrency": concurrency,
        "prefetch": prefetch, "messages": count, "seconds": round(finished - started, 3),
        "rate": round(count / (finished - started), 1), "processed": processed,
        "max_share_deviation": round(max(abs(p - mean) / mean for p in processed), 3) if mean else None,
        "client_cpu_seconds": round(cpu, 2),
    }


def run_engine(url: str, queue: str, count: int, processes: int, batch: int) -> dict:
    """``processes`` plain engine loops (receive + ack_batch) drain ``count`` messages."""
    import queues

    load(queue, count)
    queues.resume(queue)
    cpu_before = children_cpu()
    args = [sys.executable, str(Path(__file__).resolve()), "--engine-child", queue, str(batch)]
    procs = [subprocess.Popen(args, env=child_env(url), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(processes)]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise SystemExit("engine child failed to start")
        started = time.monotonic()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        finished = wait_empty(queue)
        done = [int(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return {
        "kind": "engine", "queue": queue, "processes": processes, "batch": batch, "messages": count,
        "seconds": round(finished - started, 3), "rate": round(count / (finished - started), 1), "processed": done,
        "client_cpu_seconds": round(children_cpu() - cpu_before, 2),
    }


def engine_child(queue: str, batch: int) -> None:
    """Runs in a child: wait for "go", then receive + ack_batch until the queue has nothing ready."""
    setup_django(os.environ["DATABASE_URL"])
    import queues

    print("ready", flush=True)
    sys.stdin.readline()
    done = 0
    while True:
        got = queues.receive(queue, max_messages=batch)
        if not got:
            break
        queues.ack_batch([d.receipt for d in got])
        done += len(got)
    print(done, flush=True)


# -- report -----------------------------------------------------------------------------------------
def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['machine']} ({meta['cores']} cores, shared with other work: noisy). "
        f"PostgreSQL {meta['postgres']}, Python {meta['python']}.",
        "",
        "| handler | workers | concurrency | prefetch | messages | seconds | msg/s | per-worker processed "
        "| max deviation from mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["kind"] != "workers":
            continue
        lines.append(
            f"| {r['queue'].removeprefix('bench-')} | {r['processes']} | {r['concurrency']} | "
            f"{r['prefetch'] or 'default'} | {r['messages']} | {r['seconds']} | {r['rate']:,.0f} | "
            f"{' / '.join(map(str, r['processed']))} | {r['max_share_deviation']:.0%} |"
        )
    engine = [r for r in results if r["kind"] == "engine"]
    if engine:
        lines += ["", "| engine loop (receive + ack_batch) | processes | batch | messages | seconds | msg/s |",
                  "|---|---|---|---|---|---|"]
        for r in engine:
            lines.append(f"| no handler | {r['processes']} | {r['batch']} | {r['messages']} | {r['seconds']} | "
                         f"{r['rate']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine-child", nargs=2, metavar=("QUEUE", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="Smaller backlogs (a smoke run).")
    parser.add_argument("--noop-messages", type=int, default=30_000)
    parser.add_argument("--sleep-messages", type=int, default=6_000)
    parser.add_argument("--batch", type=int, default=100,
                        help="Engine loop batch; no-op workers use --prefetch 2*BATCH: a worker claims when half its "
                             "prefetch is free and acks in batches of half of it, so its statements are of BATCH too.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each configuration (all are reported).")
    parser.add_argument("--prefetch", type=int, help="No-op workers' --prefetch (default: 2 * --batch).")
    parser.add_argument("--noop-only", action="store_true",
                        help="Only the no-op runs: 1, 2 and 4 workers and the engine loop (the overhead goal).")
    parser.add_argument("--json", type=Path, help="Append every result as a JSON line to this file.")
    opts = parser.parse_args()
    if opts.engine_child:
        engine_child(opts.engine_child[0], int(opts.engine_child[1]))
        return
    noop_n = 3000 if opts.quick else opts.noop_messages
    sleep_n = 600 if opts.quick else opts.sleep_messages

    url = database_url()
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=child_env(url), cwd=ROOT,
                   check=True)
    setup_django(url)
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": platform.node() or "unknown",
        "cores": os.cpu_count(), "postgres": version.split()[0], "python": platform.python_version(),
        "load_before": os.getloadavg()[0],
    }
    results: list[dict] = []

    def keep(result: dict) -> None:
        result["load1"] = round(os.getloadavg()[0], 2)
        results.append(result)
        print(json.dumps(result), flush=True)
        if opts.json:
            with open(opts.json, "a") as out:
                out.write(json.dumps({**result, **meta}) + "\n")

    noop_prefetch = opts.prefetch or 2 * opts.batch
    for _ in range(opts.repeat):
        for processes in (1, 2, 4):
            keep(run_workers(url, "bench-noop", noop_n, processes, concurrency=4, prefetch=noop_prefetch))
        keep(run_engine(url, "bench-noop", noop_n, 2, opts.batch))
        for processes in () if opts.noop_only else (1, 2, 4):
            keep(run_workers(url, "bench-sleep", sleep_n, processes, concurrency=4, prefetch=None))
    print()
    print(markdown(results, meta))
    # The overhead: in each repeat, 2 no-op workers against the 2-process engine loop run just before it.
    ratios = []
    for i, r in enumerate(results):
        if r["kind"] == "engine":
            workers2 = [w for w in results[:i] if w["kind"] == "workers" and w["queue"] == "bench-noop"
                        and w["processes"] == 2][-1]
            ratios.append(workers2["rate"] / r["rate"])
    if ratios:
        print(f"\nworker overhead: 2 no-op workers drain at {statistics.median(ratios):.0%} (median; runs: "
              f"{', '.join(f'{x:.0%}' for x in ratios)}) of the 2-process engine loop's rate")

if __name__ == "__main__":
    main()
