"""mqadmin in the shared peer benchmark harness (``/work/shared/bench``).

Drives the public engine API (``queues.send``, ``send_batch``, ``receive``, ``ack_batch``) inside a
Django process whose ``DATABASE_URL`` is the harness's fresh database, the way an application would.
``setup(dsn)`` runs this project's migrations against that database and creates the queue.

Drain (W2): each consumer process loops ``receive(max_messages=B)`` (a lease per message, receipt in
hand) then ``ack_batch`` of the receipts: two statements, two transactions per batch, leases kept
(unlike the raw floor, which deletes in the claiming transaction). Latency (W3): the consumer blocks
in ``receive(wait=...)``, woken by the process's LISTEN thread on the NOTIFY of each send.

Run with the harness (see ``bench/run_peers.sh``):
    BENCH_ADAPTER_mqadmin=bench/peer_adapter.py BENCH_PY_mqadmin=.venv/bin/python \
    SYSTEMS="mqadmin raw_sql pgqueuer procrastinate" ../shared/bench/run_all.sh
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common  # the harness's helpers (its folder is on sys.path when bench.py loads this file)

ROOT = Path(__file__).resolve().parent.parent
# The benchmarks name their database (DATABASE_URL), so the settings want a key: one for benchmarks only,
# inherited by the processes they start (docs/deploy.md, "The secret key").
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
QUEUE = "bench"
NAME = "mqadmin"

# W2: `take` messages per receive. `joined` acks a batch in the same transaction as the next
# receive (one commit per batch instead of two; measured slower here, so not in the default set).
# W3 takes what is there (up to 10) after each wake-up.
_W2_ONLY = ("w1_one", "w1_batch", "w3")
VARIANTS: dict[str, dict[str, Any]] = {
    "mqadmin": {"take": 100},
    "mqadmin (batch 500)": {"take": 500, "skip": _W2_ONLY},
}
if os.environ.get("BENCH_MQADMIN_JOINED") == "1":
    VARIANTS["mqadmin (ack + next receive in one tx)"] = {"take": 100, "joined": True, "skip": _W2_ONLY}

_configured_dsn: str | None = None


def _django(dsn: str) -> None:
    """Set Django up in this process against ``dsn`` (once), and drop a connection made stale by a
    fresh database (the harness DROPs and CREATEs the same database name for every measurement)."""
    global _configured_dsn
    if _configured_dsn is None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        os.environ["DATABASE_URL"] = dsn
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
        import django

        django.setup()
        _configured_dsn = dsn
    elif dsn != _configured_dsn:
        raise RuntimeError(f"this process is set up for {_configured_dsn}, not {dsn}")
    from django.db import connection

    from queues import engine

    connection.close()
    engine.clear_cache()  # the queue's id may differ in the fresh database


def _version() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except OSError:
        rev = ""
    import django
    import psycopg

    return f"mqadmin {rev or '?'} (Django {django.__version__}, psycopg {psycopg.__version__}, sync API)"


def info() -> dict:
    """Versions and semantics for the report."""
    return {
        "version": _version(),
        "wakeup": "LISTEN/NOTIFY (one listener thread per process), 1 s fallback poll",
        "ack": "receive leases (UPDATE, receipt); ack_batch DELETEs the leased rows in a later transaction",
    }


def setup(dsn: str, **opts: Any) -> None:
    """Migrate the fresh database ``dsn`` (a subprocess, as an operator would) and create the queue."""
    env = dict(os.environ, DATABASE_URL=dsn, DJANGO_SETTINGS_MODULE="mqadmin.settings")
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"migrate failed:\n{done.stdout}\n{done.stderr}")
    _django(dsn)
    import queues

    queues.create_queue(QUEUE)


def pending(dsn: str, **opts: Any) -> int:
    """Messages still in the queue, counted in the table (not from the engine's counters)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(
            "SELECT count(*) FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id WHERE q.name = %s",
            (QUEUE,),
        ).fetchone()[0]


def enqueue_one(dsn: str, n: int, **opts: Any) -> float:
    """``queues.send`` n times, each in its own (autocommit) transaction."""
    _django(dsn)
    import queues

    queues.send(QUEUE, {"warm": True})  # connection + queue config cache, outside the timing
    queues.purge(QUEUE)
    t0 = time.perf_counter()
    for i in range(n):
        queues.send(QUEUE, common.make_payload(i))
    return time.perf_counter() - t0


def _send_batches(n: int, batch: int) -> None:
    import queues

    for start in range(0, n, batch):
        queues.send_batch(QUEUE, [common.make_payload(i) for i in range(start, min(n, start + batch))])


def enqueue_batch(dsn: str, n: int, batch: int, **opts: Any) -> float:
    """``queues.send_batch`` of ``batch`` messages per call (one statement, one transaction)."""
    _django(dsn)
    import queues

    queues.send(QUEUE, {"warm": True})
    queues.purge(QUEUE)
    t0 = time.perf_counter()
    _send_batches(n, batch)
    return time.perf_counter() - t0


def _drain_consumer(idx: int, args: dict, wait_go) -> dict:
    _django(args["dsn"])
    from django.db import transaction

    import queues

    queues.queue_stats(QUEUE)  # connect and cache the queue's config before the start signal
    take, count, held = args["take"], 0, []
    wait_go()
    for _ in range(args["n"] + 1):  # bounded: at most n non-empty receives + the final empty one
        if args["joined"]:
            with transaction.atomic():
                result = queues.ack_batch([d.receipt for d in held])
                got = queues.receive(QUEUE, max_messages=take)
            held = got
        else:
            got = queues.receive(QUEUE, max_messages=take)
            result = queues.ack_batch([d.receipt for d in got])
        if result.stale:
            raise RuntimeError(f"{len(result.stale)} receipts went stale during the drain")
        count += len(got)  # handled here (the handler does nothing), acked by the next round
        if not got:
            break
    return {"t_end": time.time(), "count": count}


def drain(dsn: str, n: int, consumers: int, take: int = 100, joined: bool = False, **opts: Any) -> float:
    """Pre-send n (untimed), then time ``consumers`` processes receiving and acking in batches."""
    _django(dsn)
    _send_batches(n, 1000)
    from django.db import connection

    connection.close()
    common.settle(dsn)
    args = {"dsn": dsn, "take": take, "joined": joined, "n": n}
    elapsed, results = common.run_consumers(_drain_consumer, consumers, args, timeout=600)
    common.check_drain(results, n)
    return elapsed


def _latency_consumer(idx: int, args: dict, wait_go) -> dict:
    _django(args["dsn"])
    import queues
    from queues.engine.notify import get_listener

    queues.queue_stats(QUEUE)
    if not get_listener().wait_connected(30):
        raise RuntimeError("the LISTEN connection did not come up")
    n, lat = args["n"], []
    deadline = time.time() + args["timeout"]
    wait_go()
    while len(lat) < n and time.time() < deadline:
        got = queues.receive(QUEUE, max_messages=10, wait=1.0)
        now = time.time()
        lat.extend(now - d.body["t"] for d in got)
        if got:
            queues.ack_batch([d.receipt for d in got])
    return {"t_end": time.time(), "count": len(lat), "lat": lat}


def latency(dsn: str, n: int, rate: float, **opts: Any) -> dict:
    """One consumer waits in ``receive(wait=...)``; this process sends n messages at ``rate``/s."""
    _django(dsn)
    import queues

    args = {"dsn": dsn, "n": n, "timeout": n / rate + 25}
    queues.queue_stats(QUEUE)  # connect and cache the queue's config before the first timed send

    def producer() -> float:
        return common.paced_send(lambda i: queues.send(QUEUE, common.make_payload(i)), n, rate)

    return common.run_latency(_latency_consumer, producer, args, n, rate)
