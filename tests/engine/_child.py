"""A consumer in its own OS process (own interpreter, own connection), driven by the engine tests.

Usage: ``python _child.py drain QUEUE BATCH`` waits for "go" on stdin, then receives and acks until
the queue has nothing ready, and prints a JSON list of [id, receive_count] pairs it acked.
``python _child.py hold QUEUE SECONDS`` receives one message with a lease of SECONDS, prints its id
and exits at once without acking (a worker that dies).
"""

from __future__ import annotations

import json
import os
import sys

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
    django.setup()
    import queues

    mode, queue = sys.argv[1], sys.argv[2]
    print("ready", flush=True)
    if mode == "drain":
        batch = int(sys.argv[3])
        sys.stdin.readline()
        got: list[list[int]] = []
        while True:
            deliveries = queues.receive(queue, max_messages=batch, visibility_timeout=600)
            if not deliveries:
                break
            result = queues.ack_batch([d.receipt for d in deliveries])
            if result.stale:
                raise SystemExit(f"stale receipts while leases should hold: {result.stale}")
            got.extend([d.id, d.receive_count] for d in deliveries)
        print(json.dumps(got), flush=True)
    elif mode == "hold":
        [delivery] = queues.receive(queue, visibility_timeout=float(sys.argv[3]))
        print(json.dumps(delivery.id), flush=True)
        os._exit(0)  # no ack, no cleanup: the lease is all that is left behind
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
