"""Async twins of the engine API: ``asend``, ``areceive``, ``aack`` and friends.

Database work runs in Django's thread-sensitive executor (``sync_to_async``), as Channels does; a
long-polling :func:`areceive` waits on the LISTEN thread without holding an executor thread.
"""

from __future__ import annotations

import time
from typing import Any

from asgiref.sync import sync_to_async

from queues.engine import core
from queues.engine.types import Delivery

asend = sync_to_async(core.send)
asend_batch = sync_to_async(core.send_batch)
aack = sync_to_async(core.ack)
aack_batch = sync_to_async(core.ack_batch)
anack = sync_to_async(core.nack)
aextend = sync_to_async(core.extend)
aextend_batch = sync_to_async(core.extend_batch)
apurge = sync_to_async(core.purge)
apublish = sync_to_async(core.publish)
apause = sync_to_async(core.pause)
aresume = sync_to_async(core.resume)
apeek = sync_to_async(core.peek)
astats = sync_to_async(core.stats)
acreate_queue = sync_to_async(core.create_queue)
aget_queue = sync_to_async(core.get_queue)
aredrive = sync_to_async(core.redrive)


@sync_to_async
def _claim_once(queue: str, limit: int, vt: float | None) -> tuple[int, list[Delivery]]:
    cfg = core._config(queue)
    return cfg.id, core._claim(cfg, limit, vt)


async def areceive(
    queue: str, *, max_messages: int = 1, visibility_timeout: float | None = None, wait: float = 0.0
) -> list[Delivery]:
    """Async :func:`queues.receive`."""
    limit, vt, w = core._receive_args(max_messages, visibility_timeout, wait)
    if w <= 0:
        return (await _claim_once(queue, limit, vt))[1]
    from queues.engine.notify import get_listener

    listener = await sync_to_async(get_listener)()
    deadline = time.monotonic() + w
    # Read the wake-up count before every claim, the first one included: a send landing between an
    # empty first claim and a later read would go unnoticed until the next poll (up to a second).
    queue_id: Any = (await sync_to_async(core._config)(queue)).id
    while True:
        seen = listener.seq(queue_id)
        queue_id, got = await _claim_once(queue, limit, vt)
        left = deadline - time.monotonic()
        if got or left <= 0:
            return got
        await listener.await_wakeup(queue_id, seen, min(left, core.POLL_INTERVAL))


__all__ = [
    "aack", "aack_batch", "acreate_queue", "aextend", "aextend_batch", "aget_queue", "anack", "apause",
    "apeek", "apublish", "apurge", "areceive", "aredrive", "aresume", "asend", "asend_batch", "astats",
]
