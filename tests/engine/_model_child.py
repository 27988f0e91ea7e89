"""One process of the concurrent model test: random operations on a standard and a fifo queue.

Usage: ``python _model_child.py STD FIFO INDEX SEED OPS``. Waits for "go" on stdin, then runs OPS
random operations and prints one JSON object: what it sent (after commit), every delivery it got and
how each ended. The parent checks the global invariants over all processes' logs.

Sends run in a transaction that sometimes stays open for a moment after the send, so producers'
commits land out of id order; dedup ids come from a small pool shared by all processes.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
    django.setup()
    from django.db import transaction

    import queues

    std, fifo, index, seed, ops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    rng = random.Random(seed)
    seq: dict[str, int] = {}
    sent: list[dict] = []  # {"id", "queue", "group", "seq"}: sends without a dedup id
    dedup_seen: list[list] = []  # [queue, dedup id, id returned]
    deliveries: list[dict] = []
    print("ready", flush=True)
    sys.stdin.readline()

    def body_for(queue: str, group: str | None) -> dict:
        key = f"{queue}/{group}"
        seq[key] = seq.get(key, -1) + 1
        return {"p": index, "g": group, "s": seq[key]}

    for _ in range(ops):
        queue = fifo if rng.random() < 0.7 else std  # fifo is where commit order matters
        op = rng.random()
        if op < 0.3:
            group = rng.choice(["a", "b", None])
            body = body_for(queue, group)
            with transaction.atomic():
                message_id = queues.send(queue, body, group=group, priority=rng.choice([0, 0, 5]))
                if rng.random() < 0.7:
                    time.sleep(rng.uniform(0, 0.02))  # commit after producers that drew later ids
            sent.append({"id": message_id, "queue": queue, "group": body["g"], "seq": body["s"]})
        elif op < 0.4:
            items = []
            for _ in range(rng.randint(1, 4)):
                group = rng.choice(["a", "b", None])
                dedup = rng.choice([None, None, f"x{rng.randint(0, 5)}"])
                items.append(queues.Outgoing(body=body_for(queue, group), group=group, dedup_id=dedup))
            ids = queues.send_batch(queue, items)
            for item, message_id in zip(items, ids, strict=True):
                # Which process stored a dedup id's message is for the parent to work out.
                if item.dedup_id is not None:
                    dedup_seen.append([queue, item.dedup_id, message_id])
                else:
                    sent.append({"id": message_id, "queue": queue, "group": item.body["g"], "seq": item.body["s"]})
        else:
            got = queues.receive(queue, max_messages=rng.randint(1, 3), visibility_timeout=30)
            held = time.time()
            for d in got:
                time.sleep(rng.uniform(0, 0.02))  # "work", long enough for late commits to land meanwhile
                ending = rng.choices(["ack", "nack", "extend+ack"], [0.75, 0.2, 0.05])[0]
                record = {"id": d.id, "queue": queue, "group": d.group, "count": d.receive_count, "body": d.body,
                          "held": held, "released": time.time(), "ending": ending}
                if ending == "extend+ack":
                    queues.extend(d.receipt, visibility_timeout=30)
                if ending == "nack":
                    queues.nack(d.receipt, delay=rng.choice([0, 0.05]), error="model")
                else:
                    queues.ack(d.receipt)
                deliveries.append(record)
    print(json.dumps({"sent": sent, "dedup": dedup_seen, "deliveries": deliveries}), flush=True)


if __name__ == "__main__":
    main()
