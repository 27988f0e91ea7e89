"""The async twins do what the sync API does."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

import queues

pytestmark = pytest.mark.django_db(transaction=True)


def _run(coro_fn):
    async def wrapper():
        try:
            return await coro_fn()
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(wrapper())


def test_async_send_receive_ack_nack_extend(make_queue):
    queue = make_queue()

    async def scenario():
        first = await queues.asend(queue, {"n": 1}, priority=1)
        ids = await queues.asend_batch(queue, [{"n": 2}, {"n": 3}])
        got = await queues.areceive(queue, max_messages=3)
        assert [d.id for d in got] == [first, *ids]
        await queues.aack(got[0].receipt)
        await queues.aextend(got[1].receipt, visibility_timeout=120)
        assert await queues.anack(got[2].receipt, error="later", delay=300) is False
        with pytest.raises(queues.LeaseExpired):
            await queues.aack(got[0].receipt)
        result = await queues.aack_batch([got[1].receipt])
        assert result.acked == [got[1].receipt]
        [info] = await queues.apeek(queue)
        return info, await queues.astats([queue])

    info, stats = _run(scenario)
    assert (info.state, info.last_error) == ("delayed", "later")
    assert (stats[0].depth, stats[0].delayed, stats[0].acked_total) == (1, 1, 2)


def test_async_pause_resume_purge_publish(make_queue):
    queue = make_queue()
    queues.subscribe("t", queue)

    async def scenario():
        await queues.apause(queue)
        await queues.apublish("t", "x")
        assert await queues.areceive(queue) == []
        await queues.aresume(queue)
        assert len(await queues.areceive(queue)) == 1
        return await queues.apurge(queue)

    assert _run(scenario) == 1


def test_async_bad_input_raises_the_same_errors(make_queue):
    queue = make_queue()

    async def scenario():
        with pytest.raises(queues.QueueNotFound):
            await queues.asend("missing", "x")
        with pytest.raises(queues.InvalidMessage):
            await queues.asend(queue, "x", priority=101)
        with pytest.raises(queues.InvalidReceipt):
            await queues.aack("not a receipt")
        with pytest.raises(queues.QueueNotFound):
            await queues.areceive("missing", wait=1)

    _run(scenario)
