"""The fifo claim's walk over the groups: it resumes after the last group it took (a range bound on the
group index) and wraps around to the first group, the empty key (messages sent without a group) included."""

from __future__ import annotations

from collections import defaultdict

import pytest

import queues

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_walk_resumes_mid_way_and_wraps_around_to_the_empty_group(make_queue):
    queue = make_queue(kind="fifo")
    sent: dict[str, list[int]] = defaultdict(list)
    for round_ in range(3):
        for group in (None, "a", "b", "c"):
            sent[group or ""].append(queues.send(queue, {"round": round_}, group=group))

    seen: dict[str, list[int]] = defaultdict(list)
    walks = []
    while got := queues.receive(queue, max_messages=2):
        walks.append(sorted(d.group for d in got))
        for d in got:
            seen[d.group].append(d.id)
        queues.ack_batch([d.receipt for d in got])

    assert seen == sent, "every message once, in id order within its group"
    # Two heads per claim, resuming after the last group taken: '' and a, then b and c, then around.
    assert walks[:4] == [["", "a"], ["b", "c"], ["", "a"], ["b", "c"]]


def test_a_walk_that_starts_after_the_last_group_wraps_in_the_same_receive(make_queue):
    queue = make_queue(kind="fifo")
    first = queues.send(queue, "x", group="m")
    [d] = queues.receive(queue)  # the walk now resumes after "m"
    queues.ack(d.receipt)
    assert d.id == first
    ids = [queues.send(queue, "y", group=None), queues.send(queue, "z", group="b")]
    got = queues.receive(queue, max_messages=5)
    assert [x.id for x in got] == ids, "groups before the resume point are reached by wrapping around"
