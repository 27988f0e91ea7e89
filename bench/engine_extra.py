#!/usr/bin/env python
"""Engine measurements the peer harness does not cover, each on a FRESH database (``bench_extra``):

1. Live counts read: ``queues.stats()`` / ``queues.queue_stats(name)`` with 1,000,000 messages queued,
   in one queue and spread over 20 queues (a few in flight and delayed too). Goal: <= 10 ms.
2. Live table bounded: sustained churn of 1,000,000 sends and acks (one producer sending batches of
   100, two consumers receiving 100 and acking), sampling ``pg_total_relation_size('queues_message')``
   every second. Goal: its size follows the backlog, not the number of messages that went through.

    .venv/bin/python bench/engine_extra.py                       # the project's embedded server
    .venv/bin/python bench/engine_extra.py --admin-dsn postgresql://postgres@/postgres?host=/tmp/x/sock
    .venv/bin/python bench/engine_extra.py --messages 200000 --churn 200000   # a quicker look

Prints a markdown summary and writes the raw figures as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The benchmarks name their database (DATABASE_URL), so the settings want a key: one for benchmarks only,
# inherited by the processes they start (docs/deploy.md, "The secret key").
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
PAD = "x" * 60


def _payload(i: int) -> dict:
    """The harness's ~100-byte message."""
    return {"i": i, "t": time.time(), "pad": PAD}


# -- databases ----------------------------------------------------------------------------------------
def _default_admin_dsn() -> str:
    """The project's embedded server (started if needed), database ``postgres``."""
    sys.path.insert(0, str(ROOT))
    from mqadmin.embedded_db import ensure_server

    return ensure_server().url("postgres")


def _fresh_database(admin_dsn: str, name: str) -> str:
    """DROP and CREATE ``name`` next to ``admin_dsn``'s database; migrate it; return its URL."""
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(admin_dsn)
    dsn = urllib.parse.urlunsplit(parts._replace(path="/" + name))
    env = dict(os.environ, DATABASE_URL=dsn, DJANGO_SETTINGS_MODULE="mqadmin.settings")
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(f"migrate failed:\n{done.stdout}\n{done.stderr}")
    return dsn


_dsn: str | None = None


def _django(dsn: str) -> None:
    """Point this process's Django at ``dsn`` (the database name stays ``bench_extra``, so one
    setup serves every fresh copy; the connection is dropped because the old database is gone)."""
    global _dsn
    if _dsn is None:
        sys.path.insert(0, str(ROOT))
        os.environ["DATABASE_URL"] = dsn
        os.environ["DJANGO_SETTINGS_MODULE"] = "mqadmin.settings"
        import django

        django.setup()
        _dsn = dsn
    from django.db import connection

    from queues import engine

    connection.close()
    engine.clear_cache()


def _server_facts(dsn: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in (
            "server_version", "shared_buffers", "synchronous_commit", "autovacuum", "autovacuum_naptime",
            "autovacuum_vacuum_cost_delay", "max_wal_size")}


def _ms(xs: list[float]) -> dict[str, float]:
    xs = sorted(x * 1000 for x in xs)
    return {"median": statistics.median(xs), "p95": xs[int(0.95 * (len(xs) - 1))], "max": xs[-1]}


# -- 1. live counts read ------------------------------------------------------------------------------
def _fill(names: list[str], total: int, batch: int = 1000) -> float:
    """Send ``total`` messages spread evenly over ``names``; return msg/s."""
    import queues

    per = total // len(names)
    t0 = time.perf_counter()
    for name in names:
        for start in range(0, per, batch):
            queues.send_batch(name, [_payload(i) for i in range(start, min(per, start + batch))])
    return per * len(names) / (time.perf_counter() - t0)


def measure_counts(admin_dsn: str, db: str, messages: int, n_queues: int, reads: int) -> dict[str, Any]:
    """``messages`` queued over ``n_queues`` queues, plus 1,000 in flight and 1,000 delayed; time reads."""
    dsn = _fresh_database(admin_dsn, db)
    _django(dsn)
    from django.db import connection

    import queues

    names = [f"extra-{k:02d}" for k in range(n_queues)]
    for name in names:
        queues.create_queue(name)
    fill_rate = _fill(names, messages)
    queues.receive(names[0], max_messages=1000, visibility_timeout=3600)  # in flight
    queues.send_batch(names[-1], [queues.Outgoing(body=_payload(i), delay=3600) for i in range(1000)])  # delayed
    depth = sum(s.depth for s in queues.stats())
    with connection.cursor() as cur:
        cur.execute("SELECT pg_total_relation_size('queues_message')")
        table_bytes = cur.fetchone()[0]

    def timed(fn) -> list[float]:
        fn()  # warm: connection, prepared plans
        out = []
        for _ in range(reads):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out

    result = {
        "queues": n_queues, "messages": depth, "fill_msg_per_s": fill_rate, "table_bytes": table_bytes,
        "stats_all": _ms(timed(queues.stats)),
        "stats_one": _ms(timed(lambda: queues.queue_stats(names[0]))),
    }
    # The same after the autovacuum that a steady state would have had (all-visible pages).
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE queues_message")
    result["stats_all_vacuumed"] = _ms(timed(queues.stats))
    check = {s.queue: s for s in queues.stats()}
    result["counts_exact"] = (
        sum(check[n].depth for n in names) == depth and check[names[0]].in_flight == 1000
        and check[names[-1]].delayed == 1000
    )
    return result


# -- 2. bounded live table ------------------------------------------------------------------------------
def _producer(dsn: str, queue: str, total: int, cap: int, sent, done) -> None:
    _django(dsn)
    import queues

    batch, k = 100, 0
    while k < total:
        if k % 5000 == 0:
            # Keep the backlog near `cap`: the point is churn through a live table, not a growing one.
            while queues.queue_stats(queue).depth > cap:
                time.sleep(0.005)
        n = min(batch, total - k)
        queues.send_batch(queue, [_payload(k + i) for i in range(n)])
        k += n
        with sent.get_lock():
            sent.value = k
    done.set()


def _consumer(dsn: str, queue: str, acked, producer_done) -> None:
    _django(dsn)
    import queues

    while True:
        got = queues.receive(queue, max_messages=100)
        if not got:
            if producer_done.is_set() and queues.queue_stats(queue).depth == 0:
                return
            time.sleep(0.002)
            continue
        result = queues.ack_batch([d.receipt for d in got])
        with acked.get_lock():
            acked.value += len(result.acked)


def measure_churn(admin_dsn: str, db: str, total: int, cap: int, consumers: int = 2) -> dict[str, Any]:
    """``total`` messages through one queue (producer + consumers); the table's size every second."""
    import psycopg

    dsn = _fresh_database(admin_dsn, db)
    _django(dsn)
    import queues

    queues.create_queue("churn")
    from django.db import connection

    connection.close()
    ctx = mp.get_context("spawn")
    sent, acked, done = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Event()
    procs = [ctx.Process(target=_producer, args=(dsn, "churn", total, cap, sent, done), daemon=True)]
    procs += [ctx.Process(target=_consumer, args=(dsn, "churn", acked, done), daemon=True) for _ in range(consumers)]
    samples: list[dict[str, Any]] = []
    sql = """SELECT pg_total_relation_size('queues_message'), pg_relation_size('queues_message'),
                    n_live_tup, n_dead_tup, autovacuum_count
             FROM pg_stat_user_tables WHERE relname = 'queues_message'"""
    t0 = time.time()
    for p in procs:
        p.start()
    deadline = t0 + max(600.0, total / 500)
    with psycopg.connect(dsn, autocommit=True) as conn:
        while any(p.is_alive() for p in procs[1:]) and time.time() < deadline:
            total_b, heap_b, live, dead, vacuums = conn.execute(sql).fetchone()
            samples.append({"t": round(time.time() - t0, 2), "sent": sent.value, "acked": acked.value,
                            "total_bytes": total_b, "heap_bytes": heap_b, "live": live, "dead": dead,
                            "autovacuums": vacuums})
            time.sleep(1.0)
        elapsed = time.time() - t0
        final = conn.execute(sql).fetchone()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.terminate()
    if acked.value < total:
        raise SystemExit(f"churn did not finish: {acked.value} of {total} acked in {elapsed:.0f}s")
    half = [s["total_bytes"] for s in samples if s["acked"] <= total / 2] or [0]
    rest = [s["total_bytes"] for s in samples if s["acked"] > total / 2] or [0]
    return {
        "messages": total, "backlog_cap": cap, "consumers": consumers, "seconds": elapsed,
        "msg_per_s": total / elapsed, "max_total_bytes": max(s["total_bytes"] for s in samples),
        "max_first_half": max(half), "max_second_half": max(rest), "final_total_bytes": final[0],
        "final_heap_bytes": final[1], "autovacuums": final[4],
        "bounded": max(rest) <= 1.25 * max(half), "samples": samples,
    }


# -- report -----------------------------------------------------------------------------------------------
def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def markdown(res: dict[str, Any]) -> str:
    """The summary table for docs/benchmarks.md."""
    lines = [f"Server: {', '.join(f'{k}={v}' for k, v in res['server'].items())}", "",
             "| live counts read | messages | queues | stats() median / p95 (ms) | after VACUUM (ms) "
             "| queue_stats(one) median / p95 (ms) | goal <= 10 ms |", "|---|---:|---:|---:|---:|---:|---|"]
    for c in res["counts"]:
        a, v, o = c["stats_all"], c["stats_all_vacuumed"], c["stats_one"]
        ok = "met" if max(a["p95"], o["p95"]) <= 10 else "missed"
        lines.append(f"| {c['queues']} queue(s) | {c['messages']:,} | {c['queues']} "
                     f"| {a['median']:.2f} / {a['p95']:.2f} | {v['median']:.2f} / {v['p95']:.2f} "
                     f"| {o['median']:.2f} / {o['p95']:.2f} | {ok} |")
    ch = res.get("churn")
    if ch:
        lines += ["", "| churn | messages | backlog cap | msg/s | max size, 1st half | max size, 2nd half "
                      "| final size | autovacuums | bounded |", "|---|---:|---:|---:|---:|---:|---:|---:|---|",
                  f"| send 100/batch, {ch['consumers']} consumers receive 100 + ack | {ch['messages']:,} "
                  f"| {ch['backlog_cap']:,} | {ch['msg_per_s']:,.0f} | {_mb(ch['max_first_half'])} "
                  f"| {_mb(ch['max_second_half'])} | {_mb(ch['final_total_bytes'])} | {ch['autovacuums']} "
                  f"| {'yes' if ch['bounded'] else 'NO'} |"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--admin-dsn", help="a server's maintenance database (default: the embedded server)")
    ap.add_argument("--db", default="bench_extra", help="database to (re)create for each measurement")
    ap.add_argument("--messages", type=int, default=1_000_000, help="messages queued for the counts read")
    ap.add_argument("--queues", type=int, default=20, help="queues for the spread-out counts read")
    ap.add_argument("--reads", type=int, default=100, help="timed reads per measurement")
    ap.add_argument("--churn", type=int, default=1_000_000, help="messages sent and acked in the churn test")
    ap.add_argument("--backlog", type=int, default=10_000, help="backlog the churn producer keeps at most")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: counts, churn")
    ap.add_argument("--out", help="write the raw results here as JSON")
    args = ap.parse_args()

    admin = args.admin_dsn or _default_admin_dsn()
    skip = set(filter(None, args.skip.split(",")))
    res: dict[str, Any] = {"server": _server_facts(admin), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "counts": []}
    if "counts" not in skip:
        for n_queues in (1, args.queues):
            r = measure_counts(admin, args.db, args.messages, n_queues, args.reads)
            res["counts"].append(r)
            print(f"counts, {n_queues} queue(s): stats() {r['stats_all']}, queue_stats {r['stats_one']}", flush=True)
    if "churn" not in skip:
        res["churn"] = measure_churn(admin, args.db, args.churn, args.backlog)
        c = res["churn"]
        print(f"churn: {c['msg_per_s']:.0f} msg/s, max {_mb(c['max_total_bytes'])}, "
              f"final {_mb(c['final_total_bytes'])}", flush=True)
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    print()
    print(markdown(res))


if __name__ == "__main__":
    main()
