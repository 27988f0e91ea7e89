"""Deep backlog: what one receive(100) + ack_batch costs with 1,000 vs 1,000,000 messages queued.

    .venv/bin/python bench/deep_backlog.py                                  # 1,000 vs 1,000,000
    .venv/bin/python bench/deep_backlog.py --large 100000 --iterations 300  # a quicker look
    .venv/bin/python bench/deep_backlog.py --admin-dsn postgresql://postgres@127.0.0.1:5432/postgres

Two parts, each on a FRESH database ``bench_deep`` (next to ``--admin-dsn``'s, default the embedded
server):

1. standard queues: one with SMALL messages queued (measured alone), then one with LARGE queued;
   the small one is measured again in blocks alternating with the large one (same minutes, same noise);
2. fifo queues with GROUPS groups (default 10,000): SMALL_FIFO messages (default one per group) against
   LARGE (spread evenly over the same groups), measured the same way.

After loading, the queue tables get ``VACUUM ANALYZE`` (the steady state autovacuum reaches). Each
measured step is one ``receive(max_messages=100)`` + ``ack_batch`` of what it got, timed together;
after it, 100 messages (same groups for fifo) are sent back untimed, so the depth stays put. Reports
median and p95 ms per step and large / small (goal: <= 1.2x). JSON to ``--out``.
Django and the app are imported inside functions: they can only be imported after ``django.setup()``,
which runs once the database is known.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from bench.benchdb import fresh_database  # noqa: E402 (needs ROOT on the path)

# The benchmarks name their database (DATABASE_URL), so the settings want a key: one for benchmarks only.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
DB_NAME = "bench_deep"
BATCH = 100
PAD = "x" * 60  # about 100-byte bodies, like the peer harness


def fresh_database_here(admin_dsn: str | None) -> str:
    """DROP and CREATE ``bench_deep``, migrate it, point this process's Django at it; return its URL."""
    if "django" in sys.modules:
        from django.db import connection

        connection.close()  # the database it points at is about to be dropped
    dsn = fresh_database(admin_dsn, DB_NAME)
    if "django" not in sys.modules:
        os.environ["DATABASE_URL"] = dsn
        os.environ["DJANGO_SETTINGS_MODULE"] = "mqadmin.settings"
        import django

        django.setup()
    from queues import engine

    engine.clear_cache()  # the same queue names get new ids in the new database
    return dsn


def vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE queues_message, queues_counter, queues_group")


def load(name: str, kind: str, count: int, groups: int) -> float:
    """A queue with ``count`` ready messages (fifo: spread evenly over ``groups``); returns seconds taken."""
    import queues

    queues.create_queue(name, kind=kind, visibility_timeout=60, max_receives=0, dead_letter_queue=None)
    started = time.monotonic()
    for lo in range(0, count, 5000):
        n = min(5000, count - lo)
        if kind == "fifo":
            queues.send_batch(name, [queues.Outgoing(body={"i": i, "pad": PAD}, group=f"g{i % groups}")
                                     for i in range(lo, lo + n)])
        else:
            queues.send_batch(name, [{"i": i, "pad": PAD} for i in range(lo, lo + n)])
    return time.monotonic() - started


def steps(name: str, kind: str, count: int) -> list[float]:
    """``count`` timed receive(100) + ack_batch steps, each followed by an untimed refill of what it took."""
    import queues

    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        got = queues.receive(name, max_messages=BATCH)
        queues.ack_batch([d.receipt for d in got])
        out.append(time.perf_counter() - t0)
        if len(got) < BATCH:
            raise SystemExit(f"{name}: a receive got {len(got)} < {BATCH}: the backlog is too small to measure")
        if kind == "fifo":
            queues.send_batch(name, [queues.Outgoing(body={"i": 0, "pad": PAD}, group=d.group) for d in got])
        else:
            queues.send_batch(name, [{"i": 0, "pad": PAD}] * len(got))
    return out


def figures(xs: list[float]) -> dict:
    ms = sorted(x * 1e3 for x in xs)
    return {"steps": len(ms), "median_ms": round(statistics.median(ms), 3),
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 3), "max_ms": round(ms[-1], 3)}


def part(kind: str, small: int, large: int, groups: int, iterations: int, block: int) -> list[dict]:
    """One kind: small alone, then large and small alternating in blocks."""
    rows = []
    small_q, large_q = f"deep-{kind}-small", f"deep-{kind}-large"
    secs = load(small_q, kind, small, groups)
    vacuum()
    steps(small_q, kind, 20)  # warm: plans prepared, caches hot
    rows.append({"kind": kind, "case": "small, alone", "queued": small, "groups": groups if kind == "fifo" else None,
                 "load_s": round(secs, 1), **figures(steps(small_q, kind, iterations))})
    print(json.dumps(rows[-1]), flush=True)
    secs = load(large_q, kind, large, groups)
    vacuum()
    steps(large_q, kind, 20)
    timed: dict[str, list[float]] = {small_q: [], large_q: []}
    for _ in range(0, iterations, block):
        for q in (large_q, small_q):
            timed[q] += steps(q, kind, block)
    rows.append({"kind": kind, "case": "large", "queued": large, "groups": groups if kind == "fifo" else None,
                 "load_s": round(secs, 1), **figures(timed[large_q])})
    rows.append({"kind": kind, "case": "small, alternating with large", "queued": small,
                 "groups": groups if kind == "fifo" else None, "load_s": None, **figures(timed[small_q])})
    base = rows[0]
    for r in rows[1:]:
        r["median_vs_small_alone"] = round(r["median_ms"] / base["median_ms"], 2)
        r["p95_vs_small_alone"] = round(r["p95_ms"] / base["p95_ms"], 2)
    rows[1]["median_vs_small_alternating"] = round(rows[1]["median_ms"] / rows[2]["median_ms"], 2)
    rows[1]["p95_vs_small_alternating"] = round(rows[1]["p95_ms"] / rows[2]["p95_ms"], 2)
    for r in rows[1:]:
        print(json.dumps(r), flush=True)
    return rows


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"{meta['date']}, {meta['machine']} ({meta['cores']} cores, load {meta['load_before']:.2f} before, "
        f"{meta['load_after']:.2f} after), PostgreSQL {meta['postgres']}, commit {meta['commit']}; "
        f"`{meta['command']}`",
        "",
        "| queue | case | queued | groups | steps | median ms | p95 ms | large / small alone (median, p95) "
        "| large / small alternating (median, p95) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        alone = (f"{r['median_vs_small_alone']}x, {r['p95_vs_small_alone']}x"
                 if r["case"] == "large" else "")
        alt = (f"{r['median_vs_small_alternating']}x, {r['p95_vs_small_alternating']}x"
               if r["case"] == "large" else "")
        lines.append(f"| {r['kind']} | {r['case']} | {r['queued']:,} | {r['groups'] or '-'} | {r['steps']} | "
                     f"{r['median_ms']:.2f} | {r['p95_ms']:.2f} | {alone} | {alt} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-dsn", help="A database on the server to use (bench_deep is created beside it); "
                                            "default: the embedded server.")
    parser.add_argument("--small", type=int, default=1000, help="Standard queue, shallow (default 1,000).")
    parser.add_argument("--large", type=int, default=1_000_000, help="Deep, both kinds (default 1,000,000).")
    parser.add_argument("--groups", type=int, default=10_000, help="Fifo groups (default 10,000).")
    parser.add_argument("--small-fifo", type=int, help="Fifo queue, shallow (default: one per group).")
    parser.add_argument("--iterations", type=int, default=500, help="Measured steps per case (default 500).")
    parser.add_argument("--block", type=int, default=50, help="Steps per block when alternating (default 50).")
    parser.add_argument("--skip", choices=["standard", "fifo"], help="Leave out one part.")
    parser.add_argument("--out", type=Path, default=Path("bench-results/deep_backlog.json"))
    opts = parser.parse_args()

    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": platform.node() or "unknown",
            "cores": os.cpu_count(), "python": platform.python_version(), "load_before": os.getloadavg()[0],
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True).stdout.strip(),
            "command": " ".join(["bench/deep_backlog.py", *sys.argv[1:]])}
    rows: list[dict] = []
    if opts.skip != "standard":
        fresh_database_here(opts.admin_dsn)
        rows += part("standard", opts.small, opts.large, 0, opts.iterations, opts.block)
    if opts.skip != "fifo":
        fresh_database_here(opts.admin_dsn)
        rows += part("fifo", opts.small_fifo or opts.groups, opts.large, opts.groups, opts.iterations, opts.block)
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        meta["postgres"] = cur.fetchone()[0].split()[0]
    meta["load_after"] = os.getloadavg()[0]
    result = {"meta": meta, "rows": rows}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=1))
    print()
    print(markdown(result))


if __name__ == "__main__":
    main()
