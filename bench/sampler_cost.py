#!/usr/bin/env python
"""The live layer's cost, on a FRESH database ``bench_sampler``:

1. One sampler tick (``queues.stats()`` + storing the 1 s samples + reading live workers) with
   1,000,000 messages over 20 queues, 1,000 of them in flight and 1,000 delayed. Goal: <= 20 ms.
   Also the minute's downsampling + pruning.
2. Dashboards cost the database nothing: a real daphne (which runs the elected sampler) with 1, then
   100 websocket clients for a window each; every client must get every sample, and the database's
   committed transactions per second (``pg_stat_database.xact_commit`` of ``bench_sampler``) must not
   change with the number of clients.

    .venv/bin/python bench/sampler_cost.py                     # the project's embedded server
    .venv/bin/python bench/sampler_cost.py --messages 100000 --window 15    # a quicker look
    .venv/bin/python bench/sampler_cost.py --admin-dsn postgresql://postgres@127.0.0.1:5432/postgres

Prints a markdown summary; ``--out FILE`` writes the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The benchmarks name their database (DATABASE_URL), so the settings want a key: one for benchmarks only,
# inherited by the processes they start (docs/deploy.md, "The secret key").
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
DB = "bench_sampler"


def _ms(xs: list[float]) -> dict[str, float]:
    xs = sorted(x * 1000 for x in xs)
    return {"median": round(statistics.median(xs), 2), "p95": round(xs[int(0.95 * (len(xs) - 1))], 2),
            "max": round(xs[-1], 2)}


def _admin_dsn() -> str:
    sys.path.insert(0, str(ROOT))
    from mqadmin.embedded_db import ensure_server

    return ensure_server().url("postgres")


def _fresh_database(admin_dsn: str) -> str:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    dsn = urllib.parse.urlunsplit(urllib.parse.urlsplit(admin_dsn)._replace(path="/" + DB))
    env = dict(os.environ, DATABASE_URL=dsn, DJANGO_SETTINGS_MODULE="mqadmin.settings")
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(f"migrate failed:\n{done.stdout}\n{done.stderr}")
    return dsn


def _django(dsn: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = dsn
    os.environ["DJANGO_SETTINGS_MODULE"] = "mqadmin.settings"
    import django

    django.setup()


# -- 1. one tick ---------------------------------------------------------------------------------------
def fill(messages: int, n_queues: int) -> dict[str, Any]:
    """``messages`` over ``n_queues`` queues, then 1,000 in flight and 1,000 delayed."""
    import queues

    names = [f"bench-{k:02d}" for k in range(n_queues)]
    for name in names:
        queues.create_queue(name)
    per, batch = messages // n_queues, 1000
    t0 = time.perf_counter()
    for name in names:
        for start in range(0, per, batch):
            queues.send_batch(name, [{"i": i, "pad": "x" * 60} for i in range(start, min(per, start + batch))])
    took = time.perf_counter() - t0
    queues.receive(names[0], max_messages=1000, visibility_timeout=7200)
    queues.send_batch(names[-1], [queues.Outgoing(body={"later": i}, delay=7200) for i in range(1000)])
    return {"queues": n_queues, "messages": sum(s.depth for s in queues.stats()), "fill_seconds": round(took, 1)}


def measure_tick(ticks: int) -> dict[str, Any]:
    """Time ``ticks`` ticks, and their two statements apart; then one maintenance pass."""
    from django.db import connection

    from queues import engine
    from queues.metrics.election import Election
    from queues.metrics.sampler import Sampler

    # Elected as in a web process: the leader's session settings (e.g. asynchronous commit) apply.
    election = Election(name="bench")
    if not election.try_lead():
        raise SystemExit("another sampler leads on bench_sampler: stop it first")
    sampler = Sampler()
    sampler.tick()  # warm: connection, plans; the first tick also maintains
    whole, stats_part = [], []
    for _ in range(ticks):
        t0 = time.perf_counter()
        sampler.tick()
        whole.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.stats()
        stats_part.append(time.perf_counter() - t0)
        time.sleep(0.02)
    t0 = time.perf_counter()
    sampler.maintain(timezone_now(connection))
    maintain = time.perf_counter() - t0
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM queues_sample")
        samples = cur.fetchone()[0]
    election.resign()
    return {"tick": _ms(whole), "stats_only": _ms(stats_part), "maintain_ms": round(maintain * 1000, 2),
            "sample_rows": samples}


def timezone_now(connection: Any) -> Any:
    with connection.cursor() as cur:
        cur.execute("SELECT statement_timestamp()")
        return cur.fetchone()[0]


# -- 2. many dashboards ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _viewer_cookie() -> str:
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.user_permissions.set(Permission.objects.filter(codename="view_dashboard"))
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def _xact_commit(dsn: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit, tup_inserted FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]), int(row[1])


async def _clients(url: str, cookie: str, n: int, window: float, dsn: str) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    host = url.split("//", 1)[1].split("/", 1)[0]
    conns = [await connect(url, origin=f"http://{host}", additional_headers={"Cookie": cookie}, proxy=None,
                           compression=None, max_queue=None) for _ in range(n)]
    counts = [0] * n
    ats: list[set[float]] = [set() for _ in range(n)]

    async def read(i: int, ws: Any) -> None:
        async for text in ws:
            msg = json.loads(text)
            if msg.get("type") == "sample":
                counts[i] += 1
                ats[i].add(msg["at"])

    # Let the greetings ("latest sample" on connect) pass, then count whole ticks only.
    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(conns)]
    # PostgreSQL publishes an idle backend's counters up to 10 s late: wait until the connects'
    # session lookups are published, so that the window counts only what each second costs.
    await asyncio.sleep(12.0)
    for s in ats:
        s.clear()
    # The window starts after the connects (their one-off session lookups are not per-tick costs).
    x0, i0 = await asyncio.to_thread(_xact_commit, dsn)
    t0 = time.monotonic()
    await asyncio.sleep(window)
    x1, i1 = await asyncio.to_thread(_xact_commit, dsn)
    elapsed = time.monotonic() - t0
    for r in readers:
        r.cancel()
    for ws in conns:
        await ws.close()
    ticks = len(set().union(*ats))
    got = [len(s) for s in ats]
    return {
        "clients": n, "seconds": round(elapsed, 1), "ticks_seen": ticks,
        "every_client_every_tick": all(g == ticks for g in got), "min_per_client": min(got),
        "xact_commit_per_s": round((x1 - x0) / elapsed, 2), "rows_inserted_per_s": round((i1 - i0) / elapsed, 1),
    }


def measure_clients(dsn: str, windows: list[int], window: float) -> list[dict[str, Any]]:
    """For each client count: transactions/s and rows inserted/s of the database, samples per client."""
    cookie = _viewer_cookie()
    port = _free_port()
    log = tempfile.NamedTemporaryFile(prefix="bench-daphne-", suffix=".log", delete=False)
    env = dict(os.environ, DATABASE_URL=dsn, DJANGO_SETTINGS_MODULE="mqadmin.settings", PYTHONUNBUFFERED="1")
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                             "mqadmin.asgi:application"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    out = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"daphne did not start; see {log.name}")
                time.sleep(0.2)
        url = f"ws://127.0.0.1:{port}/ws/dashboard/"
        time.sleep(3)  # the sampler elects itself and settles
        for n in windows:
            out.append(asyncio.run(_clients(url, cookie, n, window, dsn)))
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-dsn", help="A database URL on the server to use (default: the embedded one).")
    parser.add_argument("--messages", type=int, default=1_000_000, help="Messages queued. Default: 1,000,000.")
    parser.add_argument("--queues", type=int, default=20, help="Queues they are spread over. Default: 20.")
    parser.add_argument("--ticks", type=int, default=200, help="Ticks timed. Default: 200.")
    parser.add_argument("--clients", default="1,100", help="Client counts to compare. Default: 1,100.")
    parser.add_argument("--window", type=float, default=30.0, help="Seconds per client count. Default: 30.")
    parser.add_argument("--out", help="Write the raw figures as JSON here.")
    args = parser.parse_args()

    dsn = _fresh_database(args.admin_dsn or _admin_dsn())
    _django(dsn)
    result: dict[str, Any] = {"fill": fill(args.messages, args.queues)}
    result["tick"] = measure_tick(args.ticks)
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE queues_message")
    result["tick_after_vacuum"] = measure_tick(args.ticks)
    connection.close()
    result["clients"] = measure_clients(dsn, [int(x) for x in args.clients.split(",")], args.window)

    f, t, v = result["fill"], result["tick"], result["tick_after_vacuum"]
    print(f"## Sampler cost ({f['messages']:,} messages over {f['queues']} queues)\n")
    print("| what | median ms | p95 ms | max ms |\n|---|---|---|---|")
    for label, m in (("tick (stats + store + workers)", t["tick"]), ("  of which queues.stats()", t["stats_only"]),
                     ("tick after VACUUM ANALYZE", v["tick"]), ("  of which queues.stats()", v["stats_only"])):
        print(f"| {label} | {m['median']} | {m['p95']} | {m['max']} |")
    print(f"\nMinute maintenance (downsample + prune): {t['maintain_ms']} ms.\n")
    print("| clients | seconds | ticks | every client every tick | DB commits/s | rows inserted/s |")
    print("|---|---|---|---|---|---|")
    for c in result["clients"]:
        print(f"| {c['clients']} | {c['seconds']} | {c['ticks_seen']} | {c['every_client_every_tick']} "
              f"(min {c['min_per_client']}) | {c['xact_commit_per_s']} | {c['rows_inserted_per_s']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
