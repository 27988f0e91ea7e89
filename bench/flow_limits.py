#!/usr/bin/env python
"""Claim cost with flow limits on and off, on a FRESH database.

Four standard queues, each filled with MESSAGES messages: no limit (``sql.RECEIVE_STANDARD``), a rate
limit that never throttles (1000000/s: the cost of the bucket alone), a concurrency limit that never
throttles (10000: the cost of the lease list), and both. One consumer drains each with
``receive(max_messages=BATCH)`` + ``ack_batch``, timing each receive; the queues take turns, batch by
batch, so a noisy machine hurts all alike.

    .venv/bin/python bench/flow_limits.py --admin-dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/flow_limits.py --messages 5000 --batch 1 --batch 10

Prints one markdown line per queue and batch size: median and p90 receive latency, and drain rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from benchdb import fresh_database, setup_django  # noqa: E402

QUEUES = {
    "off": {},
    "rate": {"rate_limit": "1000000/s", "rate_burst": 1000000},
    "concurrency": {"concurrency_limit": 10000},
    "rate+concurrency": {"rate_limit": "1000000/s", "rate_burst": 1000000, "concurrency_limit": 10000},
}


def _drain(messages: int, batch: int) -> dict[str, tuple[list[float], float]]:
    import queues

    for label, settings in QUEUES.items():
        name = f"bench-{label.replace('+', '-')}"
        queues.create_queue(name, dead_letter_queue=None, **settings)
        for start in range(0, messages, 1000):
            queues.send_batch(name, [{"i": i} for i in range(start, min(start + 1000, messages))])
    times: dict[str, list[float]] = {label: [] for label in QUEUES}
    busy: dict[str, float] = dict.fromkeys(QUEUES, 0.0)
    left = set(QUEUES)
    while left:
        for label in list(left):
            name = f"bench-{label.replace('+', '-')}"
            t0 = time.perf_counter()
            got = queues.receive(name, max_messages=batch)
            t1 = time.perf_counter()
            if not got:
                left.discard(label)
                continue
            queues.ack_batch([d.receipt for d in got])
            times[label].append(t1 - t0)
            busy[label] += time.perf_counter() - t0
    for label in QUEUES:
        queues.delete_queue(f"bench-{label.replace('+', '-')}")
    return {label: (times[label], messages / busy[label]) for label in QUEUES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-dsn", default=None, help="a database URL beside which bench_flow is made")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--batch", type=int, action="append", help="receive batch size (repeatable; default 1, 10)")
    args = parser.parse_args()
    dsn = fresh_database(args.admin_dsn, "bench_flow")
    setup_django(dsn)
    print("| limits | batch | receive median (ms) | receive p90 (ms) | drain (msg/s) |")
    print("|---|---|---|---|---|")
    for batch in args.batch or [1, 10]:
        for label, (times, rate) in _drain(args.messages, batch).items():
            q90 = statistics.quantiles(times, n=10)[-1]
            print(f"| {label} | {batch} | {statistics.median(times) * 1e3:.3f} | {q90 * 1e3:.3f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
