#!/usr/bin/env python
"""Fifo claim cost: the current engine against a baseline revision's SQL, on a FRESH database.

Fills a fifo queue (GROUPS groups x PER messages), then one consumer drains it with
``receive(max_messages=BATCH)`` + ``ack_batch``, timing each call. The baseline's ``queues/engine/sql.py``
is read from git (``--baseline``, default the commit before fifo group rows) and swapped in for its
runs; runs of the two alternate, so a noisy machine hurts both alike.

    .venv/bin/python bench/fifo_claim.py                        # the project's embedded server
    .venv/bin/python bench/fifo_claim.py --baseline 0d481d5 --repeat 5

Prints one markdown line per case: drain rate and median receive / ack latency of each side.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from engine_extra import _default_admin_dsn, _django, _fresh_database  # noqa: E402

CASES = [(1, 1000, 1), (100, 20, 1), (100, 20, 10), (2000, 2, 10)]  # groups, per group, batch


def _baseline_sql(rev: str):
    text = subprocess.run(["git", "show", f"{rev}:queues/engine/sql.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_sql.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("baseline_sql", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(queue_n: int, groups: int, per: int, batch: int) -> tuple[float, float, float]:
    import queues

    name = f"fifo-bench-{queue_n}"
    queues.create_queue(name, kind="fifo", dead_letter_queue=None)
    queues.send_batch(name, [queues.Outgoing(body={"i": i}, group=f"g{i % groups}") for i in range(groups * per)])
    receive_s, ack_s, n = [], [], 0
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        got = queues.receive(name, max_messages=batch)
        t1 = time.perf_counter()
        if not got:
            break
        queues.ack_batch([d.receipt for d in got])
        receive_s.append(t1 - t0)
        ack_s.append(time.perf_counter() - t1)
        n += len(got)
    elapsed = time.perf_counter() - started
    assert n == groups * per, (n, groups * per)
    queues.delete_queue(name)
    return n / elapsed, statistics.median(receive_s) * 1e3, statistics.median(ack_s) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-dsn", default=None)
    parser.add_argument("--baseline", default="0d481d5", help="git revision whose engine SQL is the baseline")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    dsn = _fresh_database(args.admin_dsn or _default_admin_dsn(), "bench_fifo")
    _django(dsn)
    from queues.engine import delivery

    current, baseline = delivery.sql, _baseline_sql(args.baseline)
    runs = iter(range(1_000_000))
    print(f"| groups x per | batch | {args.baseline}: msg/s, receive ms, ack ms | now: msg/s, receive ms, ack ms |")
    print("|---|---|---|---|")
    for groups, per, batch in CASES:
        results: dict[str, list[tuple[float, float, float]]] = {"base": [], "now": []}
        for _ in range(args.repeat):
            for side, module in (("base", baseline), ("now", current)):
                delivery.sql = module
                results[side].append(_run(next(runs), groups, per, batch))
        delivery.sql = current
        cells = []
        for side in ("base", "now"):
            rate, rec, ack = (statistics.median(x[i] for x in results[side]) for i in range(3))
            cells.append(f"{rate:.0f}, {rec:.2f}, {ack:.2f}")
        print(f"| {groups} x {per} | {batch} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
