"""Cancellation through the Python API, without a worker."""

from __future__ import annotations

import pytest

import queues
from queues.engine.cancel import cancel
from queues.engine.expiry import flow_totals
from tests.engine.conftest import assert_counts_exact


def test_a_cancel_request_reaches_a_plain_consumer_and_a_returned_message_is_dropped(make_queue):
    queue = make_queue()
    first, second = queues.send_batch(queue, ["a", "b"])
    d1, d2 = queues.receive(queue, max_messages=2)
    d2.check_cancelled()  # nothing asked: returns
    result = cancel(queue, [first, second])
    assert (result.cancelled, result.requested) == ([], [first, second])
    assert cancel(queue, [first]).requested == []  # asked once only
    with pytest.raises(queues.Cancelled, match="cancelled by an operator"):
        d1.check_cancelled()
    assert d1.cancel_requested
    queues.ack(d1.receipt)  # it finished anyway: acked, its work was done
    queues.nack(d2.receipt)  # it comes back: the next claim drops it as cancelled
    assert queues.receive(queue) == []
    assert queues.peek(queue) == []
    assert flow_totals([queue])[queue].cancelled == 1
    assert_counts_exact("cancel in flight")


def test_cancel_refuses_bad_ids_and_writes_nothing(make_queue):
    queue = make_queue()
    kept = queues.send(queue, "x")
    for bad in (["1"], [0], [True], [2**63]):
        with pytest.raises(ValueError, match="message ids must be integers"):
            cancel(queue, [kept, *bad])
    with pytest.raises(queues.QueueNotFound):
        cancel("no-such-queue", [kept])
    assert [m.id for m in queues.peek(queue)] == [kept]
