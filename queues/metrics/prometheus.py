"""The Prometheus view of mqadmin: a custom ``prometheus_client`` Collector that reads the database.

A scrape costs about one sampler tick, never a ``count(*)`` of the backlog:

- queue gauges (ready, in flight, delayed, dead, oldest ready age) come from the newest stored 1 s
  sample of each queue (one index probe per queue on ``queues_sample_series``); only when the sampler is
  not running (no sample younger than :func:`fresh_limit`) does the scrape read them live with
  :func:`queues.stats`, the very statement one sampler tick runs;
- message counters (sent, acked, failed, dead-lettered) are the sums of the live counter slots
  (``queues_counter``, a handful of rows per queue), exact and monotonic: those columns are only ever
  added to (slot compaction moves amounts between slots of one queue), so ``rate()`` works across worker
  restarts, web restarts and sampler elections. They restart from zero only when a queue is deleted;
- workers from their heartbeat rows; handler durations from the histograms workers write with their
  beats (:mod:`queues.metrics.durations`); redrives from their rows; database health from catalog views
  (:mod:`queues.health`).

Everything lives in PostgreSQL, so any number of web processes serve the same numbers and no worker
needs a scrape target of its own. See docs/observability.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from queues import conf, engine, health, queue_health
from queues.engine import QueueStats
from queues.formatting import display_kind
from queues.metrics import durations
from queues.metrics.sampler import sample_interval

QUEUES_SQL = """
SELECT q.name, EXISTS (SELECT 1 FROM queues_queue s WHERE s.dead_letter_queue_id = q.id),
       coalesce(k.sent, 0), coalesce(k.acked, 0), coalesce(k.failed, 0), coalesce(k.dead, 0),
       s.ready, s.in_flight, s.delayed, s.dead, s.oldest_ready_age,
       extract(epoch FROM statement_timestamp() - s.at), q.paused, q.kind
FROM queues_queue q
LEFT JOIN LATERAL (
    SELECT sum(sent) AS sent, sum(acked) AS acked, sum(failed) AS failed, sum(dead) AS dead
    FROM queues_counter WHERE queue_id = q.id
) k ON true
LEFT JOIN LATERAL (
    SELECT at, ready, in_flight, delayed, dead, oldest_ready_age FROM queues_sample
    WHERE queue_name = q.name AND resolution = 1 ORDER BY at DESC LIMIT 1
) s ON true
ORDER BY q.name
"""

# Stopped and dead workers stay listed (up 0) for a while so a crash is seen, then their series end.
WORKERS_SQL = """
SELECT name, host, state, processed, failed, in_flight, extract(epoch FROM statement_timestamp() - last_beat_at),
       queues
FROM queues_worker
WHERE state IN ('live', 'stopping') OR last_beat_at >= statement_timestamp() - make_interval(secs => %(keep)s)
ORDER BY name
"""

REDRIVES_SQL = """
SELECT q.name, count(*), coalesce(sum(greatest(r.total - r.moved, 0)), 0)
FROM queues_redrive r JOIN queues_queue q ON q.id = r.source_id
WHERE r.state IN ('running', 'stopping')
GROUP BY q.name ORDER BY q.name
"""

STOPPED_WORKERS_SHOWN = 600.0
"""Seconds a stopped or dead worker keeps its series (``mqadmin_worker_up`` 0) after its last beat."""


def fresh_limit() -> float:
    """Seconds after which the newest stored sample is too old to report (the sampler is not running)."""
    return max(5.0, 3 * sample_interval())


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    return [str(v) for v in value] if isinstance(value, list) else []


class MqadminCollector(Collector):
    """Reads every figure at collect time (one scrape = one read); holds no state of its own."""

    def collect(self) -> Iterator[Any]:
        """The metric families of one scrape."""
        yield from self._queues()
        yield from self._workers()
        yield from self._handlers()
        yield from self._redrives()
        yield from self._database()

    def _queues(self) -> Iterator[Any]:
        with conf.db().cursor() as cur:
            cur.execute(QUEUES_SQL)
            rows = cur.fetchall()
        limit = fresh_limit()
        stale = any(r[11] is None or float(r[11]) > limit for r in rows)
        gauges: dict[str, tuple[int, int, int, int, float | None]] = {}
        sample_age: float | None = None
        if stale and rows:
            # The sampler is not running: read the live counts once, the cost of one sampler tick.
            for s in engine.stats():
                gauges[s.queue] = (s.ready, s.in_flight, s.delayed, s.dead, s.oldest_ready_age)
            sample_age = 0.0
        else:
            for r in rows:
                age = float(r[11])
                sample_age = max(sample_age or 0.0, age)
                # The sample's oldest ready message has aged since the sample was taken.
                oldest = float(r[10]) + age if r[10] is not None else None
                gauges[r[0]] = (int(r[6]), int(r[7]), int(r[8]), int(r[9]), oldest)

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=["queue"])

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=["queue"])

        ready = gauge("mqadmin_queue_ready", "Messages that can be received now.")
        in_flight = gauge("mqadmin_queue_in_flight", "Messages leased to a worker.")
        delayed = gauge("mqadmin_queue_delayed", "Messages not available yet (delay or retry backoff).")
        dead = gauge("mqadmin_queue_dead", "Messages waiting in this queue's dead-letter queue.")
        oldest = gauge("mqadmin_queue_oldest_ready_age_seconds",
                       "How long the longest-waiting ready message has been ready (0 when none is).")
        is_dlq = gauge("mqadmin_queue_is_dead_letter_queue", "1 if this queue is another queue's dead-letter queue.")
        sent = counter("mqadmin_messages_sent_total",
                       "Messages stored in the queue (sent, published, moved, redriven or dead-lettered into it).")
        acked = counter("mqadmin_messages_acked_total", "Messages acked (done).")
        failed = counter("mqadmin_messages_failed_total",
                         "Failed deliveries: nacks, and deliveries past max receives that were dead-lettered.")
        dead_lettered = counter("mqadmin_messages_dead_lettered_total",
                                "Messages moved from this queue to its dead-letter queue.")
        for r in rows:
            name = r[0]
            labels = [name]
            g = gauges.get(name)
            if g is not None:
                ready.add_metric(labels, g[0])
                in_flight.add_metric(labels, g[1])
                delayed.add_metric(labels, g[2])
                dead.add_metric(labels, g[3])
                oldest.add_metric(labels, g[4] or 0.0)
            is_dlq.add_metric(labels, 1 if r[1] else 0)
            sent.add_metric(labels, int(r[2]))
            acked.add_metric(labels, int(r[3]))
            failed.add_metric(labels, int(r[4]))
            dead_lettered.add_metric(labels, int(r[5]))
        yield from (ready, in_flight, delayed, dead, oldest, is_dlq, sent, acked, failed, dead_lettered)
        # Flow control's counters (docs/flow-control.md): slot 0 of the counter rows, one small read.
        expired = counter("mqadmin_messages_expired_total",
                          "Messages whose time to live ran out before anyone received them (dropped or dead-lettered).")
        cancelled = counter("mqadmin_messages_cancelled_total",
                            "Messages cancelled by an operator (waiting ones, and running ones that stopped).")
        overflowed = counter("mqadmin_messages_overflowed_total",
                             "Messages dropped or dead-lettered to make room in a full drop_oldest queue.")
        for name, totals in engine.flow_totals().items():
            expired.add_metric([name], totals.expired)
            cancelled.add_metric([name], totals.cancelled)
            overflowed.add_metric([name], totals.overflowed)
        yield from (expired, cancelled, overflowed)
        yield from self._health(rows, gauges)
        freshness = GaugeMetricFamily(
            "mqadmin_sample_age_seconds",
            "Age of the stored samples the queue gauges come from (0: read live because the sampler is not running).")
        if sample_age is not None:
            freshness.add_metric([], sample_age)
        yield freshness

    def _health(self, rows: list[Any], gauges: dict[str, tuple[int, int, int, int, float | None]]) -> Iterator[Any]:
        """Each queue's kind as the dashboard words it, and which health states hold (queues/queue_health.py)."""
        stats = []
        for r in rows:
            g = gauges.get(r[0])
            if g is None:
                continue
            stats.append(QueueStats(
                queue=r[0], kind=r[13], paused=bool(r[12]), ready=g[0], in_flight=g[1], delayed=g[2], dead=g[3],
                depth=g[0] + g[1] + g[2], oldest_ready_age=g[4], sent_total=int(r[2]), acked_total=int(r[3]),
                failed_total=int(r[4]), dead_lettered_total=int(r[5]), is_dead_letter_queue=bool(r[1])))
        healths = queue_health.assess_all(stats)
        info = GaugeMetricFamily("mqadmin_queue_info", "1 per queue; kind is standard, fifo or dead-letter.",
                                 labels=["queue", "kind"])
        states = GaugeMetricFamily(
            "mqadmin_queue_health",
            "1 for each health state that holds for the queue (healthy when none of the others does), 0 otherwise; "
            "see docs/dashboard.md.", labels=["queue", "state"])
        for s in stats:
            info.add_metric([s.queue, display_kind(s.kind, is_dead_letter_queue=s.is_dead_letter_queue)], 1)
            h = healths[s.queue]
            holding = {r.state for r in h.reasons} or {queue_health.HealthState.HEALTHY}
            for state in queue_health.HealthState.values:
                states.add_metric([s.queue, state], 1 if state in holding else 0)
        yield from (info, states)

    def _workers(self) -> Iterator[Any]:
        with conf.db().cursor() as cur:
            cur.execute(WORKERS_SQL, {"keep": STOPPED_WORKERS_SHOWN})
            rows = cur.fetchall()
        stale_after = conf.worker_stale_after()
        labels = ["worker", "host"]
        up = GaugeMetricFamily("mqadmin_worker_up", "1 while the worker beats on time, 0 once stopped, dead or silent.",
                               labels=labels)
        processed = CounterMetricFamily("mqadmin_worker_processed_total", "Messages the worker handled and acked.",
                                        labels=labels)
        failed = CounterMetricFamily("mqadmin_worker_failed_total", "Handler failures of the worker (nacked).",
                                     labels=labels)
        in_flight = GaugeMetricFamily("mqadmin_worker_in_flight", "Messages the worker holds now.", labels=labels)
        beat_age = GaugeMetricFamily("mqadmin_worker_last_heartbeat_age_seconds",
                                     "Seconds since the worker's last heartbeat.", labels=labels)
        online = GaugeMetricFamily("mqadmin_workers_online", "Workers beating on time.")
        per_queue = GaugeMetricFamily("mqadmin_queue_workers_online", "Workers beating on time that serve the queue.",
                                      labels=["queue"])
        count = 0
        serving: dict[str, int] = {}
        for name, host, state, n_processed, n_failed, n_in_flight, age, queue_names in rows:
            alive = state in ("live", "stopping") and age is not None and float(age) <= stale_after
            values = [name, host]
            up.add_metric(values, 1 if alive else 0)
            processed.add_metric(values, int(n_processed))
            failed.add_metric(values, int(n_failed))
            in_flight.add_metric(values, int(n_in_flight) if alive else 0)
            beat_age.add_metric(values, max(0.0, float(age or 0.0)))
            if alive:
                count += 1
                for q in set(_as_list(queue_names)):
                    serving[q] = serving.get(q, 0) + 1
        online.add_metric([], count)
        for q in sorted(serving):
            per_queue.add_metric([q], serving[q])
        yield from (up, processed, failed, in_flight, beat_age, online, per_queue)

    def _handlers(self) -> Iterator[Any]:
        family = HistogramMetricFamily(
            "mqadmin_handler_duration_seconds",
            "How long handlers ran, per queue and handler, summed over every worker.",
            labels=["queue", "handler"])
        for series in durations.totals():
            bounds = [*(repr(float(b)) for b in durations.BUCKETS), "+Inf"]
            family.add_metric([series.queue, series.handler],
                              list(zip(bounds, durations.cumulative(series.counts), strict=True)), series.sum)
        yield family

    def _redrives(self) -> Iterator[Any]:
        with conf.db().cursor() as cur:
            cur.execute(REDRIVES_SQL)
            rows = cur.fetchall()
        running = GaugeMetricFamily("mqadmin_redrives_in_progress", "Redrives running (or stopping) from the queue.",
                                    labels=["queue"])
        remaining = GaugeMetricFamily("mqadmin_redrive_remaining_messages",
                                      "Dead letters the running redrives from the queue still have to move.",
                                      labels=["queue"])
        for name, n, left in rows:
            running.add_metric([name], int(n))
            remaining.add_metric([name], int(left))
        yield from (running, remaining)

    def _database(self) -> Iterator[Any]:
        h = health.read(holders=1)
        labels = ["table"]
        live = GaugeMetricFamily("mqadmin_db_table_live_tuples", "Live rows in the queue table (statistics).",
                                 labels=labels)
        dead = GaugeMetricFamily("mqadmin_db_table_dead_tuples", "Dead rows vacuum has not removed yet.", labels=labels)
        size = GaugeMetricFamily("mqadmin_db_table_size_bytes", "Size on disk with indexes and TOAST.", labels=labels)
        vacuum = GaugeMetricFamily("mqadmin_db_table_last_vacuum_timestamp_seconds",
                                   "When the table was last vacuumed (automatic or manual), Unix time.", labels=labels)
        autovacuums = CounterMetricFamily("mqadmin_db_table_autovacuum_total", "Autovacuum runs on the table.",
                                          labels=labels)
        for t in h.tables:
            live.add_metric([t.table], t.live_tuples)
            dead.add_metric([t.table], t.dead_tuples)
            size.add_metric([t.table], t.size_bytes)
            last = max((d for d in (t.last_autovacuum, t.last_vacuum) if d is not None), default=None)
            if last is not None:
                vacuum.add_metric([t.table], last.timestamp())
            autovacuums.add_metric([t.table], t.autovacuum_count)
        yield from (live, dead, size, vacuum, autovacuums)
        oldest = h.oldest
        age = GaugeMetricFamily("mqadmin_db_oldest_snapshot_age_seconds",
                                "Age of the oldest open transaction holding a snapshot in the database (0: none).")
        age.add_metric([], (oldest.age_seconds or 0.0) if oldest is not None else 0.0)
        xids = GaugeMetricFamily("mqadmin_db_oldest_snapshot_xid_age",
                                 "Transactions the oldest snapshot holds the xmin horizon back by (0: none).")
        xids.add_metric([], (oldest.xid_age or 0) if oldest is not None else 0)
        slots = GaugeMetricFamily("mqadmin_db_replication_slot_xmin_age",
                                  "Transactions a replication slot holds the xmin horizon back by.",
                                  labels=["slot", "active"])
        for s in h.slots:
            if s.xmin_age is not None:
                slots.add_metric([s.name, "true" if s.active else "false"], s.xmin_age)
        yield from (age, xids, slots)


def registry() -> CollectorRegistry:
    """A registry holding only mqadmin's collector (not the process metrics of the default registry,
    which would describe one web process out of several)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MqadminCollector())
    return reg
