#!/usr/bin/env python
"""Markdown for docs/benchmarks.md from ONE harness run: the peer table, the ratios against the
goals of the issue (met, or missed by how much), and the engine's extra measurements.

    .venv/bin/python bench/report.py bench-results/run-STAMP.jsonl --env bench-results/env-STAMP.json \
        [--extra bench-results/extra-STAMP.json]

Every ratio compares figures of the same run (same server, same minutes), medians over repetitions.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from typing import Any

RAW_FLOOR = "raw-sql 1/tx (poll 50ms)"
RAW_NOTIFY = "raw-sql 1/tx + NOTIFY"
RAW_BATCH_DRAIN = "raw-sql 100/tx"
PGQ_DEFAULT = "pgqueuer (batch_size=10, default)"
PGQ_100 = "pgqueuer (batch_size=100)"
MQ = "mqadmin"


def load(path: str) -> tuple[dict[tuple[str, str], list[float]], list[str], dict[str, str], list[dict]]:
    """Cells {(variant, metric): [values]}, variant order, variant -> system, failures."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    order: list[str] = []
    system: dict[str, str] = {}
    failed = []
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        if not r.get("ok"):
            failed.append(r)
            continue
        v = r["variant"]
        if v not in order:
            order.append(v)
        system[v] = r["system"]
        if r["workload"] == "w3":
            for k in ("p50", "p95", "p99"):
                cells[(v, "w3_" + k)].append(r[k])
        else:
            cells[(v, r["workload"])].append(r["value"])
    return cells, order, system, failed


def med(cells: dict, variant: str, metric: str) -> float | None:
    xs = cells.get((variant, metric))
    return statistics.median(xs) if xs else None


def fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    """'met' or 'missed by N%' (how far the value is from the target, relative to the target)."""
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    if ok:
        return "**met**"
    gap = (target - value) / target if higher_is_better else (value - target) / target
    return f"missed by {gap:.0%}"


def peer_table(cells: dict, order: list[str]) -> list[str]:
    out = ["| system / variant | W1 send 1/tx (msg/s) | W1 send 100/tx (msg/s) | W2 drain, 2 consumers (msg/s) "
           "| W3 p50 (ms) | W3 p95 (ms) | W3 p99 (ms) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for v in order:
        out.append(f"| {v} | {fmt(med(cells, v, 'w1_one'))} | {fmt(med(cells, v, 'w1_batch'))} "
                   f"| {fmt(med(cells, v, 'w2'))} | {fmt(med(cells, v, 'w3_p50'), 1)} "
                   f"| {fmt(med(cells, v, 'w3_p95'), 1)} | {fmt(med(cells, v, 'w3_p99'), 1)} |")
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def goals(cells: dict, order: list[str], system: dict[str, str], extra: dict[str, Any] | None) -> list[str]:
    mq_variants = [v for v in order if system.get(v) == MQ]
    drains = [(med(cells, v, "w2"), v) for v in mq_variants if med(cells, v, "w2") is not None]
    best_drain, best_variant = max(drains) if drains else (None, "")
    one = med(cells, MQ, "w1_one")
    batch = med(cells, MQ, "w1_batch")
    r_one = ratio(one, med(cells, RAW_FLOOR, "w1_one"))
    r_one_n = ratio(one, med(cells, RAW_NOTIFY, "w1_one"))
    r_batch = ratio(batch, med(cells, RAW_FLOOR, "w1_batch"))
    r_pgq = ratio(best_drain, med(cells, PGQ_DEFAULT, "w2"))
    r_pgq100 = ratio(best_drain, med(cells, PGQ_100, "w2"))
    p50, p99 = med(cells, MQ, "w3_p50"), med(cells, MQ, "w3_p99")

    def x(r: float | None) -> str:
        return "-" if r is None else f"{r:.2f}x"

    rows = [
        ("single send vs raw floor (1/tx)", ">= 0.9x", f"{x(r_one)} ({fmt(one)} msg/s; {x(r_one_n)} of raw + NOTIFY)",
         verdict(r_one, 0.9)),
        ("batch send (100/call) vs raw floor's batch", ">= 1.2x", f"{x(r_batch)} ({fmt(batch)} msg/s)",
         verdict(r_batch, 1.2)),
        ("drain, 2 consumers, receive + ack", ">= 50,000 msg/s", f"{fmt(best_drain)} msg/s ({best_variant})",
         verdict(best_drain, 50_000)),
        ("drain vs pgqueuer (default)", ">= 3x", f"{x(r_pgq)} ({x(r_pgq100)} of pgqueuer batch_size=100)",
         verdict(r_pgq, 3.0)),
        ("latency p50 at 200 msg/s, waiting consumer", "<= 1.5 ms", f"{fmt(p50, 2)} ms", verdict(p50, 1.5, False)),
        ("latency p99", "<= 5 ms", f"{fmt(p99, 2)} ms", verdict(p99, 5.0, False)),
    ]
    if extra:
        reads = [max(c["stats_all"]["p95"], c["stats_one"]["p95"]) for c in extra.get("counts", [])]
        worst = max(reads) if reads else None
        rows.append(("live counts read, 1,000,000 queued (p95, worst of 1 and 20 queues)", "<= 10 ms",
                     f"{fmt(worst, 2)} ms", verdict(worst, 10.0, False)))
        churn = extra.get("churn")
        if churn:
            sizes = f"max {churn['max_total_bytes'] / 2**20:.0f} MB, final {churn['final_total_bytes'] / 2**20:.0f} MB"
            rows.append(("live table through 1,000,000 sends + acks", "bounded", sizes,
                         "**met**" if churn["bounded"] else "missed (grew in the second half)"))
    out = ["| goal | target | measured | verdict |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return out


def environment(env: dict[str, Any]) -> list[str]:
    pg = env.get("postgres", {})
    pk = env.get("packages", {})
    return [
        f"- Date: {env.get('time', '?')}",
        f"- Machine: {env.get('cpu_model', '?')} x{env.get('cpus', '?')}, {env.get('mem_gib', '?')} GiB, "
        f"{env.get('platform', '?')}",
        f"- PostgreSQL {pg.get('server_version', '?')} (one server for every system, unix socket): "
        + ", ".join(f"{k}={v}" for k, v in pg.items() if k not in ("server_version", "unix_socket_directories")),
        "- Peers: " + ", ".join(f"{k} {pk[k]}" for k in ("pgqueuer", "procrastinate", "psycopg", "asyncpg") if k in pk),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="bench-results/run-*.jsonl (one run)")
    ap.add_argument("--env", help="bench-results/env-*.json of the same run")
    ap.add_argument("--extra", help="bench-results/extra-*.json from bench/engine_extra.py")
    a = ap.parse_args()
    cells, order, system, failed = load(a.run)
    reps = sorted({r for (v, m), xs in cells.items() for r in range(len(xs))})
    extra = json.load(open(a.extra)) if a.extra else None
    out: list[str] = []
    if a.env:
        out += ["### Environment", "", *environment(json.load(open(a.env))), ""]
    out += [f"### Peers (medians over {len(reps)} repetition{'' if len(reps) == 1 else 's'})", ""]
    out += peer_table(cells, order)
    out += ["", "### Goals", "", *goals(cells, order, system, extra)]
    if extra:
        import importlib.util
        import pathlib

        here = pathlib.Path(__file__).with_name("engine_extra.py")
        spec = importlib.util.spec_from_file_location("engine_extra", here)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out += ["", "### Engine extras", "", module.markdown(extra)]
    if failed:
        out += ["", "### Failures", ""] + [f"- rep {r['rep']} {r['variant']} {r['workload']}: {r['error'][:200]}"
                                           for r in failed]
    print("\n".join(out))


if __name__ == "__main__":
    main()
