#!/usr/bin/env python
"""What tracing costs a send when OpenTelemetry is not configured (queues/tracing.py).

Alternates rounds of ``queues.send`` (the traced wrapper, no tracer provider set: the normal case
without the ``otel`` extra or without an SDK) and of the bare function under it, one message per call
and transaction, on the project's database, and prints the median time per send of each and the
difference. Then the same with an SDK tracer provider and a no-op exporter, for the cost of tracing on.

    .venv/bin/python bench/tracing_overhead.py --rounds 10 --sends 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")

import django

django.setup()

import queues  # noqa: E402
from queues import engine  # noqa: E402


def _per_send(func, queue: str, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        func(queue, {"i": i})
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sends", type=int, default=1000)
    args = parser.parse_args()
    queue = "bench-tracing"
    try:
        queues.create_queue(queue)
    except queues.QueueExists:
        pass
    traced, bare = engine.send, engine.send.__wrapped__
    _per_send(traced, queue, 200)  # warm up: prepared statements, caches
    rows: dict[str, list[float]] = {"traced wrapper, tracing off": [], "bare send": []}
    for _ in range(args.rounds):
        rows["traced wrapper, tracing off"].append(_per_send(traced, queue, args.sends))
        rows["bare send"].append(_per_send(bare, queue, args.sends))
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())  # spans made and dropped: the cost of tracing on
    rows["tracing on (SDK, no exporter)"] = [_per_send(traced, queue, args.sends) for _ in range(args.rounds)]
    queues.purge(queue)
    print(f"| send, 1 per call ({args.rounds} rounds of {args.sends}) | median µs per send |")
    print("|---|---:|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values):.1f} |")
    off = statistics.median(rows["traced wrapper, tracing off"]) - statistics.median(rows["bare send"])
    print(f"\nwrapper cost with tracing off: {off:+.1f} µs per send")


if __name__ == "__main__":
    main()
