"""A long-running producer in its own process, driven line by line on stdin by the reconnect tests.

Commands (one per line; each answers one JSON line on stdout):
- ``send N``: ``queues.send("p", {"n": N}, dedup_id="dN")``; answers ``"ok"`` or ``[exception class, message]``;
- ``atomic N``: the same send inside ``transaction.atomic()``;
- ``loop FIRST LAST``: send FIRST..LAST, each retried with its dedup id until it gets through (0.1 s
  apart, at most 300 tries); answers ``{"errors": [...distinct error classes], "retries": count}``.

It never calls ``close_old_connections()``: recovering from a restart is the engine's job.
"""

from __future__ import annotations

import json
import os
import sys
import time

import django


def _error(exc: BaseException) -> list[str]:
    lines = str(exc).strip().splitlines()
    return [type(exc).__name__, lines[0] if lines else ""]


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
    django.setup()
    from django.db import transaction

    import queues

    queues.ensure_queue("p")
    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "loop":
            errors: set[str] = set()
            retries = 0
            for n in range(int(args[0]), int(args[1]) + 1):
                for _ in range(300):
                    try:
                        queues.send("p", {"n": n}, dedup_id=f"d{n}")
                        break
                    except Exception as exc:
                        errors.add(type(exc).__name__)
                        retries += 1
                        time.sleep(0.1)
            print(json.dumps({"errors": sorted(errors), "retries": retries}), flush=True)
            continue
        n = int(args[0])
        try:
            if command == "atomic":
                with transaction.atomic():
                    queues.send("p", {"n": n}, dedup_id=f"d{n}")
            else:
                queues.send("p", {"n": n}, dedup_id=f"d{n}")
            print(json.dumps("ok"), flush=True)
        except Exception as exc:
            print(json.dumps(_error(exc)), flush=True)


if __name__ == "__main__":
    main()
