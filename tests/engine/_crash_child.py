"""The consumer of the server-crash test, in its own process against the test's private server.

``python _crash_child.py work on|off``: with ``MQADMIN["ASYNC_COMMIT_LEASES"]`` on or off, send 200
messages to queue ``c`` (one batch), receive and ack 100 of them, send 10 more one by one, then receive
30 and ack 20 of those in 4 acks of 5, noting the WAL insert position before that receive and before
and after each of these last acks. Prints ``"sent"`` after the sends and waits for a line before the
last receive; at the end prints one JSON line and waits for the server to die (its parent crashes it).

``python _crash_child.py drain``: after the crash, receive (and ack) whatever queue ``c`` still holds
until it has been empty for 3 s after the last lease could have run out; prints the deliveries.
"""

from __future__ import annotations

import json
import os
import sys
import time

import django


def _lsn() -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_current_wal_insert_lsn()::text")
        return cur.fetchone()[0]


def work(async_commit: bool) -> dict:
    from django.conf import settings

    import queues

    settings.MQADMIN = {**getattr(settings, "MQADMIN", {}), "ASYNC_COMMIT_LEASES": async_commit}
    queues.ensure_queue("c")
    sent = queues.send_batch("c", [{"n": n} for n in range(200)])
    deliveries: dict[int, int] = {}

    def take(count: int) -> list:
        got = queues.receive("c", max_messages=count, visibility_timeout=3)
        for d in got:
            deliveries[d.id] = deliveries.get(d.id, 0) + 1
        return got

    acked_early: list[int] = []
    for _ in range(5):
        batch = take(20)
        assert not queues.ack_batch([d.receipt for d in batch]).stale
        acked_early += [d.id for d in batch]
    sent_late = [queues.send("c", {"n": 200 + n}) for n in range(10)]
    print(json.dumps("sent"), flush=True)
    sys.stdin.readline()  # the parent has stopped the WAL writer meanwhile
    leased_at = _lsn()
    leased = take(30)
    acks = []
    for i in range(4):
        part = leased[i * 5:(i + 1) * 5]
        before = _lsn()
        assert not queues.ack_batch([d.receipt for d in part]).stale
        acks.append({"ids": [d.id for d in part], "before": before, "after": _lsn()})
    return {"sent": sent, "sent_late": sent_late, "acked_early": acked_early, "acks": acks,
            "leased": [d.id for d in leased], "leased_at": leased_at, "deliveries": deliveries}


def drain() -> dict:
    import queues

    deliveries: dict[int, list[int]] = {}
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 6.0:  # leases of 3 s taken before the crash, then 3 s empty
        got = queues.receive("c", max_messages=100, wait=0.5)
        if got:
            quiet_since = time.monotonic()
            for d in got:
                deliveries.setdefault(d.id, []).append(d.receive_count)
            assert not queues.ack_batch([d.receipt for d in got]).stale
    return {"deliveries": deliveries}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
    django.setup()
    if sys.argv[1] == "work":
        print(json.dumps(work(sys.argv[2] == "on")), flush=True)
        sys.stdin.read()  # until the parent has crashed the server and closes our stdin
    else:
        print(json.dumps(drain()), flush=True)


if __name__ == "__main__":
    main()
