"""One vocabulary of message states: ``MessageState`` and the verbs of ``Message.objects``, which the
browser's search, its state column and :func:`queues.peek` all agree with."""

from __future__ import annotations

import pytest
from django.utils import timezone

import queues
from queues.models import Message, MessageState, dead_letter_queue_ids
from queues.search import parse_search
from queues.selectors import search_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_of_each(make_queue) -> dict[str, int]:
    """orders: one message in every state (the dead one in orders.dlq)."""
    make_queue("orders", max_receives=1)
    dead = queues.send("orders", {"dead": True})
    [d] = queues.receive("orders")
    queues.nack(d.receipt, error="boom")
    flying = queues.send("orders", {"flying": True}, priority=100)
    [lease] = queues.receive("orders", visibility_timeout=600)
    assert lease.id == flying
    ready = queues.send("orders", {"ready": True})
    delayed = queues.send("orders", {"later": True}, delay=600)
    return {
        MessageState.READY: ready,
        MessageState.DELAYED: delayed,
        MessageState.IN_FLIGHT: flying,
        MessageState.DEAD: dead,
    }


def test_each_state_verb_finds_exactly_its_messages(one_of_each):
    now = timezone.now()
    found = {
        MessageState.READY: Message.objects.ready(now=now),
        MessageState.DELAYED: Message.objects.delayed(now=now),
        MessageState.IN_FLIGHT: Message.objects.in_flight(now=now),
        MessageState.DEAD: Message.objects.dead(now=now),
    }
    assert {state: list(qs.values_list("id", flat=True)) for state, qs in found.items()} == {
        state: [message_id] for state, message_id in one_of_each.items()
    }
    both = Message.objects.in_states(MessageState.READY, MessageState.DEAD, now=now)
    assert sorted(both.values_list("id", flat=True)) == sorted([one_of_each["ready"], one_of_each["dead"]])


def test_a_lease_that_ran_out_is_ready_again(one_of_each):
    Message.objects.filter(id=one_of_each["in_flight"]).update(leased_until=timezone.now())
    assert one_of_each["in_flight"] in Message.objects.ready().values_list("id", flat=True)
    assert not Message.objects.in_flight().exists()


def test_the_state_of_a_read_row_follows_the_same_rule(one_of_each):
    now = timezone.now()
    dlq_ids = set(dead_letter_queue_ids())
    for message in Message.objects.all():
        state = MessageState.of(
            leased_until=message.leased_until,
            available_at=message.available_at,
            in_dead_letter_queue=message.queue_id in dlq_ids,
            now=now,
        )
        assert one_of_each[state] == message.id


def test_browser_search_column_and_peek_say_the_same_states(one_of_each):
    for state, message_id in one_of_each.items():
        [row] = search_messages(parse_search(f"state:{state}")).rows
        assert (row.id, row.state) == (message_id, state)
    peeked = {m.id: m.state for m in queues.peek("orders") + queues.peek("orders.dlq")}
    assert peeked == {message_id: state for state, message_id in one_of_each.items()}


def test_an_unknown_state_is_refused():
    with pytest.raises(ValueError, match="unknown message state 'done'"):
        Message.objects.in_states("done")
