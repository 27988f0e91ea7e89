"""A small reference model of DESIGN.md's promises, checked against the real engine step by step.

Hypothesis runs random sequences of send, send_batch (dedup ids, delays, priorities, groups),
receive, ack, nack, extend, lease expiry, delayed messages coming due, purge, move and redrive on a
standard queue, a fifo queue and their dead-letter queues. After every step the model and the
database must agree on every message (queue, state, receive count, group), on the live counts of
``queues.stats()`` and on ``count(*)``; no fifo group may have two messages in flight.

Where the contract leaves the engine a choice (which fifo groups a receive serves first), the model
checks that the engine's choice is one it allows, then follows it. Standard queues are exact:
``ORDER BY priority DESC, id``.

Time: no wall clock. Delays and leases are long (an hour, ten minutes); "time passes" is a
test-only UPDATE that moves one message's ``available_at`` (a lease's ``leased_until``, and its fifo group's
``until``, which always equals the lease's end) into the past, exactly what the clock would do.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import queues
from tests.engine.conftest import ground_truth

FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
LONG = 3600.0  # a delay or backoff that never runs out by itself during a test
LEASE = 600.0
MAX_RECEIVES = 3
_RUNS = itertools.count()

READY, DELAYED, IN_FLIGHT = "ready", "delayed", "in_flight"


@dataclass
class Msg:
    """What the model knows of one live message."""

    id: int
    queue: str
    body: object
    priority: int
    group: str | None
    state: str = READY
    receive_count: int = 0
    receipt: str | None = None
    origin: str | None = None


@dataclass
class Spec:
    kind: str
    max_receives: int
    dlq: str | None
    messages: dict[int, Msg] = field(default_factory=dict)


def expire_lease(message_id: int) -> None:
    """TEST ONLY: make a lease run out now, as the clock would: the message and its fifo group's row."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE queues_message SET leased_until = statement_timestamp() - interval '1 second' WHERE id = %s",
            [message_id],
        )
        cur.execute(
            "UPDATE queues_group SET until = statement_timestamp() - interval '1 second'"
            " WHERE message_id = %s AND until > statement_timestamp()",
            [message_id],
        )


def come_due(message_id: int) -> None:
    """TEST ONLY: a delayed (or backing-off) message's time comes."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE queues_message SET available_at = statement_timestamp() - interval '1 second' WHERE id = %s",
            [message_id],
        )


_STATE = """
SELECT m.id, q.name, m.receive_count, m.group_key,
       CASE WHEN m.leased_until > statement_timestamp() THEN 'in_flight'
            WHEN m.available_at > statement_timestamp() THEN 'delayed' ELSE 'ready' END,
       o.name
FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id LEFT JOIN queues_queue o ON o.id = m.origin_queue_id
WHERE q.name = ANY(%s)
"""

_DOUBLE_LEASES = """
SELECT q.name, m.group_key, array_agg(m.id) FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id
WHERE q.name = ANY(%s) AND q.kind = 'fifo' AND m.leased_until > statement_timestamp()
GROUP BY q.name, m.group_key HAVING count(*) > 1
"""

bodies = st.one_of(
    st.integers(-1000, 1000),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8),
    st.dictionaries(st.sampled_from(["a", "b", "n"]), st.integers(0, 9) | st.booleans() | st.none(), max_size=3),
)
priorities = st.sampled_from([-10, 0, 0, 10])
groups = st.sampled_from([None, "a", "a", "b"])  # few groups, so groups fill up and collide
dedup_ids = st.one_of(st.none(), st.sampled_from(["d1", "d2", "d3"]))


class QueueModel(RuleBasedStateMachine):
    """The reference model; each run gets its own queues."""

    receipts = Bundle("receipts")

    @initialize()
    def make_queues(self) -> None:
        # Each run in its own savepoint, rolled back at teardown: runs never see each other's rows,
        # and a failing statement in one run cannot poison the next.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        n = next(_RUNS)
        self.std, self.fifo = f"model-std-{n}", f"model-fifo-{n}"
        queues.create_queue(self.std, max_receives=MAX_RECEIVES)
        queues.create_queue(self.fifo, kind="fifo", max_receives=MAX_RECEIVES)
        self.specs = {
            self.std: Spec("standard", MAX_RECEIVES, f"{self.std}.dlq"),
            self.fifo: Spec("fifo", MAX_RECEIVES, f"{self.fifo}.dlq"),
            f"{self.std}.dlq": Spec("standard", 0, None),
            f"{self.fifo}.dlq": Spec("standard", 0, None),
        }
        self.names = list(self.specs)
        self.dedup: dict[str, dict[str, int]] = defaultdict(dict)
        self.leases = itertools.count()

    def teardown(self) -> None:
        if hasattr(self, "_atomic"):
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    # -- helpers ------------------------------------------------------------------------------------
    def msg(self, message_id: int) -> Msg | None:
        for spec in self.specs.values():
            if message_id in spec.messages:
                return spec.messages[message_id]
        return None

    def place(self, m: Msg, queue: str) -> None:
        self.specs[m.queue].messages.pop(m.id, None)
        m.queue = queue
        if self.specs[queue].kind == "fifo" and m.group is None:
            m.group = ""
        self.specs[queue].messages[m.id] = m

    def all_messages(self) -> list[Msg]:
        return [m for spec in self.specs.values() for m in spec.messages.values()]

    def dies(self, m: Msg) -> bool:
        spec = self.specs[m.queue]
        return spec.dlq is not None and spec.max_receives > 0 and m.receive_count >= spec.max_receives

    def kill(self, m: Msg) -> None:
        spec = self.specs[m.queue]
        m.origin, m.state, m.receipt = m.queue, READY, None
        self.place(m, spec.dlq)

    def eligible_heads(self, queue: str) -> dict[str, Msg]:
        """Fifo: per group, its lowest id, if that is ready and nothing of the group is in flight."""
        by_group: dict[str, list[Msg]] = defaultdict(list)
        for m in self.specs[queue].messages.values():
            by_group[m.group].append(m)
        heads = {}
        for group, members in by_group.items():
            head = min(members, key=lambda m: m.id)
            if head.state == READY and not any(m.state == IN_FLIGHT for m in members):
                heads[group] = head
        return heads

    def valid(self, receipt: str) -> Msg | None:
        message_id = int(receipt.split(":")[0])
        m = self.msg(message_id)
        if m is not None and m.state == IN_FLIGHT and m.receipt == receipt:
            return m
        return None

    # -- sends ------------------------------------------------------------------------------------
    def _expect_send(self, queue: str, items: list[queues.Outgoing], ids: list[int]) -> None:
        assert len(ids) == len(items)
        for item, got in zip(items, ids, strict=True):
            if item.dedup_id is not None and item.dedup_id in self.dedup[queue]:
                assert got == self.dedup[queue][item.dedup_id], "a dedup repeat stored a new message"
                continue
            assert self.msg(got) is None, f"id {got} given twice"
            m = Msg(got, queue, item.body, item.priority, item.group,
                    state=DELAYED if item.delay else READY)
            self.place(m, queue)
            if item.dedup_id is not None:
                self.dedup[queue][item.dedup_id] = got

    @rule(q=st.sampled_from(["std", "fifo", "fifo"]), body=bodies, priority=priorities, group=groups, dedup=dedup_ids,
          delayed=st.booleans())
    def send(self, q, body, priority, group, dedup, delayed):
        queue = getattr(self, q)
        item = queues.Outgoing(
            body=body, priority=priority, group=group, dedup_id=dedup, delay=LONG if delayed else None
        )
        got = queues.send(queue, body, priority=priority, group=group, dedup_id=dedup, delay=item.delay)
        self._expect_send(queue, [item], [got])

    @rule(q=st.sampled_from(["std", "fifo", "fifo"]), items=st.lists(
        st.builds(queues.Outgoing, body=bodies, priority=priorities, group=groups, dedup_id=dedup_ids,
                  delay=st.sampled_from([None, None, LONG])), min_size=1, max_size=6))
    def send_batch(self, q, items):
        queue = getattr(self, q)
        self._expect_send(queue, items, queues.send_batch(queue, items))

    # -- receive ----------------------------------------------------------------------------------
    @rule(target=receipts, q=st.sampled_from([0, 1, 1, 1, 2, 3]), n=st.integers(1, 4))
    def receive(self, q, n):
        queue = self.names[q]
        spec = self.specs[queue]
        before = {m.id: (m.queue, m.state) for m in self.all_messages()}
        got = queues.receive(queue, max_messages=n, visibility_timeout=LEASE)
        assert len(got) <= n
        assert [(d.priority, -d.id) for d in got] == sorted(((d.priority, -d.id) for d in got), reverse=True)
        delivered = {d.id: d for d in got}
        rows = self._rows()
        died = {i for i, (was, _) in before.items() if was == queue and i in rows and rows[i][0] != queue}
        if spec.kind == "standard":
            ready = sorted((m for m in spec.messages.values() if m.state == READY), key=lambda m: (-m.priority, m.id))
            claimed = ready[:n]
            want_dead = {m.id for m in claimed if self.dies(m)}
            want_live = [m.id for m in claimed if not self.dies(m)]
            assert sorted(delivered) == sorted(want_live), "standard receive broke priority-then-id order"
            assert died == want_dead
        else:
            heads = self.eligible_heads(queue)
            allowed = {m.id for m in heads.values()}
            assert set(delivered) <= allowed, (
                f"fifo delivered {sorted(set(delivered) - allowed)}, not the free head of its group; "
                f"allowed {sorted(allowed)}")
            assert died <= {i for i in allowed if self.dies(self.msg(i))}
            assert not (set(delivered) & died)
            assert not any(self.dies(self.msg(i)) for i in delivered)
            assert len({d.group for d in got}) == len(got), "two heads of one group in one receive"
            if heads:
                assert got or died, f"fifo receive took nothing while heads {sorted(allowed)} were free"
        for i in sorted(died):
            self.kill(self.msg(i))
        for d in got:
            m = self.msg(d.id)
            assert (d.body, d.group, d.priority) == (m.body, m.group, m.priority)
            assert d.receive_count == m.receive_count + 1
            m.receive_count += 1
            m.state, m.receipt = IN_FLIGHT, d.receipt
        return multiple(*[d.receipt for d in got])

    # -- ack / nack / extend ----------------------------------------------------------------------
    @rule(receipt=consumes(receipts))
    def ack(self, receipt):
        m = self.valid(receipt)
        if m is None:
            with pytest.raises(queues.LeaseExpired):
                queues.ack(receipt)
            return
        queues.ack(receipt)
        del self.specs[m.queue].messages[m.id]

    @rule(receipt=receipts, backoff=st.booleans(), dead_letter=st.booleans())
    def nack(self, receipt, backoff, dead_letter):
        m = self.valid(receipt)
        if m is None:
            with pytest.raises(queues.LeaseExpired):
                queues.nack(receipt, delay=LONG if backoff else 0, dead_letter=dead_letter)
            return
        dies = self.specs[m.queue].dlq is not None and (dead_letter or self.dies(m))
        assert queues.nack(receipt, delay=LONG if backoff else 0, error="model", dead_letter=dead_letter) is dies
        if dies:
            self.kill(m)
        else:
            m.state, m.receipt = (DELAYED if backoff else READY), None

    @rule(receipt=receipts)
    def extend(self, receipt):
        m = self.valid(receipt)
        if m is None:
            with pytest.raises(queues.LeaseExpired):
                queues.extend(receipt, visibility_timeout=LEASE)
        else:
            queues.extend(receipt, visibility_timeout=LEASE)

    # -- time -------------------------------------------------------------------------------------
    @precondition(lambda self: any(m.state == IN_FLIGHT for m in self.all_messages()))
    @rule(data=st.data())
    def lease_runs_out(self, data):
        m = data.draw(st.sampled_from(sorted((m for m in self.all_messages() if m.state == IN_FLIGHT),
                                             key=lambda m: m.id)), label="lease")
        expire_lease(m.id)
        m.state = READY  # its receipt is stale from now on

    @precondition(lambda self: any(m.state == DELAYED for m in self.all_messages()))
    @rule(data=st.data())
    def delay_runs_out(self, data):
        m = data.draw(st.sampled_from(sorted((m for m in self.all_messages() if m.state == DELAYED),
                                             key=lambda m: m.id)), label="delayed")
        come_due(m.id)
        m.state = READY

    # -- operator actions -------------------------------------------------------------------------
    @rule(q=st.sampled_from(range(4)), now=st.integers(0, 3))
    def purge(self, q, now):
        if now:  # purge only one time in four: it wipes out the states that take steps to build
            return
        queue = self.names[q]
        assert queues.purge(queue) == len(self.specs[queue].messages)
        self.specs[queue].messages.clear()

    @rule(data=st.data(), src=st.sampled_from(range(4)), dst=st.sampled_from([0, 1, 1, 2, 3]))
    def move(self, data, src, dst):
        source, target = self.names[src], self.names[dst]
        if source == target:
            with pytest.raises(ValueError):
                queues.move_messages(source, [1], to=target)
            return
        candidates = sorted(self.specs[source].messages)
        ids = data.draw(st.lists(st.sampled_from(candidates), min_size=1, unique=True) if candidates else st.just([]),
                        label="ids")
        movable = [i for i in ids if self.msg(i).state != IN_FLIGHT]
        assert queues.move_messages(source, ids, to=target) == len(movable)
        for i in movable:
            m = self.msg(i)
            m.state, m.receipt, m.receive_count = READY, None, 0
            self.place(m, target)

    @rule(which=st.sampled_from(["std", "fifo"]), limit=st.integers(1, 5))
    def redrive(self, which, limit):
        dlq = f"{getattr(self, which)}.dlq"
        picked = sorted((m for m in self.specs[dlq].messages.values() if m.state == READY and m.origin),
                        key=lambda m: m.id)[:limit]
        want: dict[str, int] = defaultdict(int)
        for m in picked:
            want[m.origin] += 1
        assert queues.redrive_batch(dlq, limit=limit) == dict(want)
        for m in picked:
            dest = m.origin
            m.state, m.receipt, m.receive_count, m.origin = READY, None, 0, None
            self.place(m, dest)

    # -- checks after every step ------------------------------------------------------------------
    def _rows(self) -> dict[int, tuple]:
        with connection.cursor() as cur:
            cur.execute(_STATE, [self.names])
            return {r[0]: r[1:] for r in cur.fetchall()}

    @invariant()
    def every_message_as_the_model_says(self):
        if not hasattr(self, "specs"):
            return
        want = {m.id: (m.queue, m.receive_count, m.group, m.state, m.origin) for m in self.all_messages()}
        assert self._rows() == want

    @invariant()
    def counts_as_the_model_says(self):
        if not hasattr(self, "specs"):
            return
        stats = {s.queue: s for s in queues.stats(self.names)}
        truth = ground_truth()
        for name, spec in self.specs.items():
            states = [m.state for m in spec.messages.values()]
            dead = len(self.specs[spec.dlq].messages) if spec.dlq else 0
            want = {"ready": states.count(READY), "delayed": states.count(DELAYED),
                    "in_flight": states.count(IN_FLIGHT), "depth": len(states)}
            s = stats[name]
            assert {"ready": s.ready, "delayed": s.delayed, "in_flight": s.in_flight, "depth": s.depth} == want, name
            assert s.dead == dead
            assert truth[name] == {**want, "dead": dead}, name

    @invariant()
    def never_two_in_flight_per_group(self):
        if not hasattr(self, "specs"):
            return
        with connection.cursor() as cur:
            cur.execute(_DOUBLE_LEASES, [self.names])
            assert cur.fetchall() == []


@pytest.mark.property
@pytest.mark.slow
@pytest.mark.django_db
def test_engine_behaves_as_the_model():
    run_state_machine_as_test(
        QueueModel,
        settings=settings(
            max_examples=2000 if FUZZ else int(os.environ.get("MODEL_EXAMPLES", 30)),
            stateful_step_count=80 if FUZZ else 40, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
