"""A redrive started in its own OS process, for the test that two starts at once leave one running.

Usage: ``python _redrive_child.py DLQ LOCK_KEY``. Prints "ready" once Django is set up, then waits
for the advisory lock LOCK_KEY (held by the test: the barrier), then calls ``queues.redrive(DLQ)``
at a slow rate and prints one JSON line: ``{"refused": message, "redrive_id": id}`` or
``{"ran": id, "state": state}``.
"""

from __future__ import annotations

import json
import os
import sys

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
    django.setup()
    # deferred: the project's modules need django.setup() first
    from django.db import connection

    import queues

    dlq, key = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    with connection.cursor() as cur:
        # Shared: every child passes together the moment the test lets go of its exclusive hold.
        cur.execute("SELECT pg_advisory_lock_shared(%s)", [key])
    try:
        job = queues.redrive(dlq, rate=0.5, requested_by=f"child {os.getpid()}")
    except queues.RedriveRunning as exc:
        print(json.dumps({"refused": str(exc), "redrive_id": exc.redrive_id}), flush=True)
    else:
        print(json.dumps({"ran": job.pk, "state": job.state}), flush=True)


if __name__ == "__main__":
    main()
