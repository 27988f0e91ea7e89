"""Async twins of the engine API: ``asend``, ``areceive``, ``aack`` and friends, one per public function.

Database work runs in Django's thread-sensitive executor (``sync_to_async``), as Channels does; a
long-polling :func:`areceive` waits on the LISTEN thread without holding an executor thread. Pure
functions that touch no database (``validate_name``, ``parse_receipt``, ``as_dict``, ``clear_cache``)
have no twin: call them directly. ``aredrive`` and ``arun_redrive`` hold the executor thread for the
whole redrive; start long ones with ``astart_redrive`` and run them elsewhere.
"""

from __future__ import annotations

import time

from asgiref.sync import sync_to_async

from queues.engine import delivery, expiry, operations, queues
from queues.engine.cancel import cancel, requested_among, settle_cancelled
from queues.engine.connection import config
from queues.engine.delivery import POLL_INTERVAL, claim
from queues.engine.notify import get_listener
from queues.engine.redrive import reap_redrives, redrive, redrive_batch, run_redrive, start_redrive, stop_redrive
from queues.engine.types import Delivery
from queues.engine.validation import receive_args

# -- queues and topics
acreate_queue = sync_to_async(queues.create_queue)
aensure_queue = sync_to_async(queues.ensure_queue)
aget_queue = sync_to_async(queues.get_queue)
alist_queues = sync_to_async(queues.list_queues)
aupdate_queue = sync_to_async(queues.update_queue)
adelete_queue = sync_to_async(queues.delete_queue)
apause = sync_to_async(queues.pause)
aresume = sync_to_async(queues.resume)
asubscribe = sync_to_async(queues.subscribe)
aunsubscribe = sync_to_async(queues.unsubscribe)
apublish = sync_to_async(queues.publish)
# -- flow control
acancel = sync_to_async(cancel)
arequested_among = sync_to_async(requested_among)
asettle_cancelled = sync_to_async(settle_cancelled)
aexpire_due = sync_to_async(expiry.expire_due)
aflow_totals = sync_to_async(expiry.flow_totals)
# -- delivery (areceive is below)
asend = sync_to_async(delivery.send)
asend_batch = sync_to_async(delivery.send_batch)
aack = sync_to_async(delivery.ack)
aack_batch = sync_to_async(delivery.ack_batch)
anack = sync_to_async(delivery.nack)
arelease_batch = sync_to_async(delivery.release_batch)
aextend = sync_to_async(delivery.extend)
aextend_batch = sync_to_async(delivery.extend_batch)
# -- operations
apurge = sync_to_async(operations.purge)
adelete_messages = sync_to_async(operations.delete_messages)
amove_messages = sync_to_async(operations.move_messages)
aretry_now = sync_to_async(operations.retry_now)
apeek = sync_to_async(operations.peek)
astats = sync_to_async(operations.stats)
aqueue_stats = sync_to_async(operations.queue_stats)
aprune = sync_to_async(operations.prune)
# -- redrive
astart_redrive = sync_to_async(start_redrive)
aredrive = sync_to_async(redrive)
arun_redrive = sync_to_async(run_redrive)
aredrive_batch = sync_to_async(redrive_batch)
astop_redrive = sync_to_async(stop_redrive)
areap_redrives = sync_to_async(reap_redrives)


@sync_to_async
def _claim_once(queue: str, limit: int, vt: float | None) -> tuple[int, list[Delivery]]:
    cfg = config(queue)
    return cfg.id, claim(cfg, limit, vt)


async def areceive(
    queue: str, *, max_messages: int = 1, visibility_timeout: float | None = None, wait: float = 0.0
) -> list[Delivery]:
    """Async :func:`queues.receive`."""
    limit, vt, w = receive_args(max_messages, visibility_timeout, wait)
    if w <= 0:
        return (await _claim_once(queue, limit, vt))[1]
    listener = await sync_to_async(get_listener)()
    deadline = time.monotonic() + w
    # Read the wake-up count before every claim, the first one included: a send landing between an
    # empty first claim and a later read would go unnoticed until the next poll (up to a second).
    queue_id: int = (await sync_to_async(config)(queue)).id
    while True:
        seen = listener.seq(queue_id)
        queue_id, got = await _claim_once(queue, limit, vt)
        left = deadline - time.monotonic()
        if got or left <= 0:
            return got
        await listener.await_wakeup(queue_id, seen, min(left, POLL_INTERVAL))


__all__ = [
    "aack", "aack_batch", "acreate_queue", "adelete_messages", "adelete_queue", "aensure_queue", "aextend",
    "aextend_batch", "aget_queue", "alist_queues", "amove_messages", "anack", "apause", "apeek", "aprune",
    "apublish", "apurge", "aqueue_stats", "areap_redrives", "areceive", "aredrive", "aredrive_batch",
    "arelease_batch", "aresume", "aretry_now", "arun_redrive", "asend", "asend_batch", "astart_redrive", "astats",
    "astop_redrive", "asubscribe", "aunsubscribe", "aupdate_queue",
]
# Flow control (docs/flow-control.md).
__all__ += ["acancel", "aexpire_due", "aflow_totals", "arequested_among", "asettle_cancelled"]
