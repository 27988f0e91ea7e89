#!/usr/bin/env python
"""Cost of flow control on the hot path: sends and claims of an ordinary queue (limits off), of a queue
with a time to live, and of a bounded queue (``max_length``, under its per-queue send lock).

    DATABASE_URL=postgresql://... .venv/bin/python bench/flow_control.py [--n 3000] [--rounds 5]

Runs in one process against an existing, migrated database (it makes and deletes its own queues).
``--plain-only`` measures the ordinary queue alone, so the same script runs on code without flow
control (the before/after comparison). Prints the median over rounds of microseconds per operation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")


def _round(queues, name: str, n: int) -> dict[str, float]:
    body = {"i": 0, "pad": "x" * 60}
    out = {}
    started = time.perf_counter()
    for _ in range(n):
        queues.send(name, body)
    out["send"] = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n // 100):
        queues.send_batch(name, [body] * 100)
    out["send_batch_100_per_msg"] = (time.perf_counter() - started) / (n // 100 * 100) * 1e6
    got = 0
    started = time.perf_counter()
    while True:
        batch = queues.receive(name, max_messages=10)
        if not batch:
            break
        queues.ack_batch([d.receipt for d in batch])
        got += len(batch)
    out["receive10_ack_per_msg"] = (time.perf_counter() - started) / max(got, 1) * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--plain-only", action="store_true")
    args = parser.parse_args()
    import django

    django.setup()
    import queues

    kinds = {"plain": {}}
    if not args.plain_only:
        kinds["ttl"] = {"message_ttl": 3600}
        kinds["bounded"] = {"max_length": 10 * args.n}
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for name, settings in kinds.items():
        try:
            queues.delete_queue(f"bench-{name}")
        except queues.QueueNotFound:
            pass
        queues.create_queue(f"bench-{name}", dead_letter_queue=None, **settings)
    for _ in range(args.rounds):
        for name in kinds:  # interleaved, so drift of the machine hits every kind alike
            results[name].append(_round(queues, f"bench-{name}", args.n))
    for name in kinds:
        queues.delete_queue(f"bench-{name}")
        keys = results[name][0]
        line = ", ".join(f"{k} {statistics.median(r[k] for r in results[name]):.0f} us" for k in keys)
        print(f"{name}: {line}")


if __name__ == "__main__":
    main()
