"""The claim of a queue with flow limits (a rate limit, a concurrency limit, or both), and its small reads.

Only queues with a limit use these statements (``delivery.claim`` picks them from the queue's cached
config); every other claim runs ``sql.RECEIVE_STANDARD`` unchanged. The lease-or-dead-letter tail is
``sql.LEASE_AND_DEADLETTER``, the same text as the plain claim's.

How the limits hold under concurrency. Every limited claim of a queue locks the queue's row in
``queues_flow`` (``FOR UPDATE``, waiting), so the claims of one queue take turns, and a claim that waited
reads the row as the one before it left it (a row lock returns the latest version, whatever the
statement's snapshot):

- **Rate.** ``tokens`` is a token bucket as of ``refilled_at``. The claim refills it from the elapsed time
  (capped at the burst), takes at most ``floor(tokens)`` messages, and writes the bucket back less what
  it leased, in the same statement. No claim can spend a token another one spent.
- **Concurrency.** A count of in-flight messages taken from the statement's snapshot is not enough: a
  claim that waited for the lock has a snapshot older than the leases the previous claim just
  committed, and would see their slots free (the race of snapshot-counting queues). So the row itself
  lists the leases granted through the limit, each with the id of the transaction that granted it.
  A claim counts a lease as ended only when that transaction is visible in its own snapshot
  (``pg_visible_in_snapshot``) *and* the snapshot shows the lease gone (the message acked, nacked,
  released, or its lease run out; a lease never comes back once gone). Every other listed lease counts
  as in flight. A lease granted after the snapshot is thus always counted, and the count is never lower
  than the truth: two claims can never both fill the same slot.

A limited queue's claims wait for each other on one row: for a rate-limited queue that costs nothing
it would not lose anyway (the limit is the bottleneck), and the lock is held only for the claim
statement (outside a caller's transaction).
"""

from __future__ import annotations

from queues.engine.sql import LEASE_AND_DEADLETTER, LEASED, UNLEASED

# The queue's row with its limits turned into what the claim needs: tokens per second and the bucket's
# size (the burst, by default one second's worth, at least 1).
_LIMITED_QUEUE_ROW = """
q AS (
    SELECT id, visibility_timeout, max_receives, dead_letter_queue_id, concurrency_limit,
           rate_limit / extract(epoch FROM rate_period)::float8 AS per_second,
           coalesce(rate_burst, greatest(1, ceil(rate_limit / extract(epoch FROM rate_period)::float8)))::float8
               AS burst
    FROM queues_queue WHERE id = %(queue_id)s AND NOT paused
)"""

# Leases listed on the flow row that may still be in flight (see the module's docstring). A scalar
# subquery, so it stays one primary-key probe per listed lease (EXISTS let the planner hash a scan of every
# message leased or delayed, in every queue).
_HELD = f"""
held AS (
    SELECT e.id, e.receipt, e.xid
    FROM flow f CROSS JOIN LATERAL jsonb_to_recordset(f.leases) AS e(id bigint, receipt uuid, xid text)
    WHERE NOT pg_visible_in_snapshot(e.xid::xid8, pg_current_snapshot())
       OR (SELECT m.receipt = e.receipt AND {LEASED.format(m="m")}
           FROM queues_message m WHERE m.id = e.id)
)"""

# WITH RECURSIVE only for its other effect: a CTE may name one defined later (`debited` names `leased`,
# which LEASE_AND_DEADLETTER defines), so the shared tail stays last and untouched.
RECEIVE_LIMITED = f"""
WITH RECURSIVE {_LIMITED_QUEUE_ROW},
-- The lock every limited claim of the queue waits on; its values are the row's latest version.
flow AS (
    SELECT f.id, f.tokens, f.refilled_at, f.leases FROM queues_flow f
    WHERE f.queue_id = (SELECT id FROM q) AND f.group_key = ''
    FOR UPDATE
),
{_HELD},
bucket AS (
    SELECT f.id,
           CASE WHEN q.per_second IS NULL THEN NULL ELSE least(q.burst, f.tokens + q.per_second
                * greatest(extract(epoch FROM statement_timestamp() - f.refilled_at)::float8, 0)) END AS tokens,
           q.concurrency_limit - (SELECT count(*) FROM held) AS free_slots
    FROM flow f, q
),
-- No flow row (the queue's limits are being set up, or were just removed): nothing this time.
allowance AS (
    SELECT b.id, b.tokens,
           greatest(0, least(%(limit)s::bigint, coalesce(floor(b.tokens)::bigint, %(limit)s::bigint),
                             coalesce(b.free_slots, %(limit)s::bigint))) AS n
    FROM bucket b
),
-- The scan is sql.RECEIVE_STANDARD's (queues_claim_ready, migration 0021), from the queue's start.
claimed AS (
    SELECT c.ctid FROM queues_claim_ready((SELECT id FROM q), 0, coalesce((SELECT n FROM allowance), 0)) AS c(ctid)
),
-- Dead-lettered messages are not deliveries: only leases spend tokens and take slots. Leases are listed
-- only under a concurrency limit (a rate limit alone needs no list).
debited AS (
    UPDATE queues_flow f
    SET tokens = coalesce(a.tokens - (SELECT count(*) FROM leased), 0),
        refilled_at = statement_timestamp(),
        taken = f.taken + (SELECT count(*) FROM leased),
        leases = CASE WHEN (SELECT concurrency_limit FROM q) IS NULL THEN '[]'::jsonb ELSE (
            SELECT coalesce(jsonb_agg(jsonb_build_object('id', x.id, 'receipt', x.receipt, 'xid', x.xid)), '[]')
            FROM (SELECT id, receipt, xid FROM held
                  UNION ALL
                  SELECT id, receipt, pg_current_xact_id()::text FROM leased) x) END
    FROM allowance a
    WHERE f.id = a.id AND EXISTS (SELECT 1 FROM leased)
),
{LEASE_AND_DEADLETTER()}
"""

# Limits per group key (``limits_per_group``): each group key has its own row, bucket and lease list
# (messages without a group key share the row of ''). The claim looks at the first CANDIDATES ready
# messages, locks the rows of their groups without waiting (a group another claim holds right now is
# skipped this time: the row lock still serializes the claims of each group, and the visibility rule
# above holds per row), and takes from each group at most what its row allows, in claim order. A group
# seen for the first time gets its row (a full bucket) but nothing this time: a row made by this
# statement cannot be locked by it; delivery.claim tries once more at once when a claim came back short.
RECEIVE_LIMITED_PER_GROUP = f"""
WITH RECURSIVE {_LIMITED_QUEUE_ROW},
-- queues_ready (migration 0021) walks the claim index whatever the statistics say, as the plain claim does.
candidates AS (
    SELECT r.id, coalesce(r.group_key, '') AS gk, r.priority FROM queues_ready((SELECT id FROM q), %(candidates)s) r
),
keys AS (SELECT DISTINCT gk FROM candidates),
flow AS (
    SELECT f.id, f.group_key, f.tokens, f.refilled_at, f.leases FROM queues_flow f
    WHERE f.queue_id = (SELECT id FROM q) AND f.group_key = ANY(ARRAY(SELECT gk FROM keys))
    ORDER BY f.group_key
    FOR UPDATE SKIP LOCKED
),
made AS (
    INSERT INTO queues_flow AS f (queue_id, group_key, tokens, refilled_at, leases, taken)
    SELECT q.id, k.gk, coalesce(q.burst, 0), statement_timestamp(), '[]'::jsonb, 0 FROM keys k, q
    WHERE NOT EXISTS (SELECT 1 FROM queues_flow x WHERE x.queue_id = q.id AND x.group_key = k.gk)
    ORDER BY k.gk
    ON CONFLICT (queue_id, group_key) DO NOTHING
),
held AS (
    SELECT f.group_key, e.id, e.receipt, e.xid
    FROM flow f CROSS JOIN LATERAL jsonb_to_recordset(f.leases) AS e(id bigint, receipt uuid, xid text)
    WHERE NOT pg_visible_in_snapshot(e.xid::xid8, pg_current_snapshot())
       OR (SELECT m.receipt = e.receipt AND {LEASED.format(m="m")}
           FROM queues_message m WHERE m.id = e.id)
),
allowance AS (
    SELECT b.id, b.group_key, b.tokens,
           greatest(0, least(coalesce(floor(b.tokens)::bigint, %(limit)s::bigint),
                             coalesce(b.free_slots, %(limit)s::bigint))) AS n
    FROM (SELECT f.id, f.group_key,
                 CASE WHEN q.per_second IS NULL THEN NULL ELSE least(q.burst, f.tokens + q.per_second
                      * greatest(extract(epoch FROM statement_timestamp() - f.refilled_at)::float8, 0)) END AS tokens,
                 q.concurrency_limit - (SELECT count(*) FROM held h WHERE h.group_key = f.group_key) AS free_slots
          FROM flow f, q) b
),
picked AS (
    SELECT r.id FROM (
        SELECT c.id, c.gk, row_number() OVER (PARTITION BY c.gk ORDER BY c.priority DESC, c.id) AS rn
        FROM candidates c) r
    JOIN allowance a ON a.group_key = r.gk
    WHERE r.rn <= a.n
),
claimed AS (
    SELECT m.ctid, m.id, m.receive_count FROM queues_message m
    WHERE m.id = ANY(ARRAY(SELECT id FROM picked)) AND m.queue_id = (SELECT id FROM q)
      AND m.available_at <= statement_timestamp() AND {UNLEASED.format(m="m")}
    ORDER BY m.priority DESC, m.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
debited AS (
    UPDATE queues_flow f
    SET tokens = coalesce(a.tokens - l.n, 0),
        refilled_at = statement_timestamp(),
        taken = f.taken + l.n,
        leases = CASE WHEN (SELECT concurrency_limit FROM q) IS NULL THEN '[]'::jsonb ELSE (
            SELECT coalesce(jsonb_agg(jsonb_build_object('id', x.id, 'receipt', x.receipt, 'xid', x.xid)), '[]')
            FROM (SELECT id, receipt, xid FROM held h WHERE h.group_key = a.group_key
                  UNION ALL
                  SELECT id, receipt, pg_current_xact_id()::text FROM leased d
                  WHERE coalesce(d.group_key, '') = a.group_key) x) END
    FROM allowance a
    JOIN (SELECT coalesce(group_key, '') AS gk, count(*) AS n FROM leased GROUP BY 1) l ON l.gk = a.group_key
    WHERE f.id = a.id
),
{LEASE_AND_DEADLETTER()}
"""

# After a claim that came back short: are ready messages waiting on the limit (rather than none ready,
# or the queue paused)?
READY_WAITING = f"""
SELECT EXISTS (SELECT 1 FROM queues_message m
               WHERE m.queue_id = %(queue_id)s AND m.available_at <= statement_timestamp() AND {UNLEASED.format(m="m")})
       AND EXISTS (SELECT 1 FROM queues_queue WHERE id = %(queue_id)s AND NOT paused)
"""

# A queue's limits were set or changed (queues.engine.limits.apply): make its flow row, a full bucket
# for a new or changed rate, and the leases already in flight listed, so that a concurrency limit
# counts them from the start. Run in the settings change's transaction.
SETUP_FLOW = f"""
INSERT INTO queues_flow AS f (queue_id, group_key, tokens, refilled_at, leases, taken)
SELECT %(queue_id)s, '', %(tokens)s, statement_timestamp(),
       CASE WHEN %(track)s THEN (
           SELECT coalesce(jsonb_agg(jsonb_build_object('id', m.id, 'receipt', m.receipt,
                                                        'xid', pg_current_xact_id()::text)), '[]')
           FROM queues_message m
           WHERE m.queue_id = %(queue_id)s AND {LEASED.format(m="m")})
       ELSE '[]'::jsonb END,
       0
ON CONFLICT (queue_id, group_key) DO UPDATE
SET tokens = CASE WHEN %(refill)s THEN EXCLUDED.tokens ELSE f.tokens END,
    refilled_at = CASE WHEN %(refill)s THEN EXCLUDED.refilled_at ELSE f.refilled_at END,
    leases = CASE WHEN NOT %(track)s THEN '[]'::jsonb
                  WHEN f.leases = '[]'::jsonb THEN EXCLUDED.leases ELSE f.leases END
"""

# A group's row that has been idle long enough to be as a new one would be (no lease listed, the bucket
# full again) can go: the next claim that sees the group makes it afresh. Without this a queue limited per
# group key would keep a row for every key it ever saw. The row is locked first, skipping those a claim
# holds, and re-checked on its latest version.
PRUNE_IDLE_GROUPS = """
WITH idle AS (
    SELECT f.id FROM queues_flow f JOIN queues_queue q ON q.id = f.queue_id
    WHERE q.limits_per_group AND f.leases = '[]'::jsonb
      AND f.refilled_at < statement_timestamp() - greatest(
          interval '10 minutes',
          coalesce(q.rate_burst, 1) * coalesce(q.rate_period / nullif(q.rate_limit, 0), interval '0'))
    LIMIT %(limit)s
    FOR UPDATE OF f SKIP LOCKED
)
DELETE FROM queues_flow f USING idle WHERE f.id = idle.id
"""

# Drop a queue's flow rows (its limits switched between per queue and per group key).
CLEAR_FLOW = "DELETE FROM queues_flow WHERE queue_id = %(queue_id)s"

# What the dashboard shows of a limited queue: the bucket as of now (per queue only), the listed leases
# still in flight, every delivery granted so far, and how many rows (groups) there are. A plain read:
# no lock, the snapshot's view.
FLOW_STATUS = f"""
WITH {_LIMITED_QUEUE_ROW.replace("AND NOT paused", "")},
flow AS (SELECT f.id, f.tokens, f.refilled_at, f.leases, f.taken FROM queues_flow f
         WHERE f.queue_id = %(queue_id)s AND (%(per_group)s OR f.group_key = '')),
{_HELD}
SELECT CASE WHEN %(per_group)s OR q.per_second IS NULL THEN NULL ELSE max(least(q.burst, f.tokens + q.per_second
            * greatest(extract(epoch FROM statement_timestamp() - f.refilled_at)::float8, 0))) END,
       (SELECT count(*) FROM held), coalesce(sum(f.taken), 0)::bigint, count(*)
FROM flow f, q
GROUP BY q.per_second
"""
