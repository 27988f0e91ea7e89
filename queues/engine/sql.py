"""The engine's SQL, one named statement per state change.

Every statement that adds, removes or moves messages also bumps ``queues_counter`` in the same
statement, so the live counts are exact at every commit. Counter rows are split into ``SLOTS`` per
queue by backend pid, so concurrent producers rarely wait on the same row.

Time is ``statement_timestamp()``: current even inside a caller's long transaction (``now()`` would
be the transaction's start) and still stable, so the planner can use it in index conditions.
Lease checks at ack time use ``clock_timestamp()``: a handler's transaction may be long.

It stays one module although it is long: the statements share their CTE builders (``_bump``, ``_deltas``,
``_lease_and_deadletter``, ``_free_groups``) and must stay consistent with each other (every change of
a message moves the counters the same way), which is easier to check when they sit side by side.
"""

from __future__ import annotations

# Two writers on one slot wait for each other's commit (an fsync) at every statement: with 8 slots
# two consumers shared a row one run in eight, and four writers more often than not.
SLOTS = 64
NOTIFY_CHANNEL = "mqadmin"

_COLUMNS = ("depth", "sent", "acked", "failed", "dead")


# The slot also moves on every second (every backend together, so two backends never meet on one):
# under a held snapshot (a long transaction) no version of a counter row can be pruned, and an upsert
# checks every version of its row in the unique index. One row per backend collected each version of
# a whole hold (50,000 in four minutes at 300 msg/s); spread over SLOTS rows, a row gets a second's
# worth of them every SLOTS seconds.
_SLOT = f"(pg_backend_pid() + extract(epoch FROM statement_timestamp())::bigint) %% {SLOTS}"


def _bump(name: str, source: str, slot: str = _SLOT) -> str:
    """A CTE that adds the deltas of ``source`` (queue_id + the counter columns) to the counters."""
    cols = ", ".join(_COLUMNS)
    sums = ", ".join(f"sum({c})" for c in _COLUMNS)
    sets = ", ".join(f"{c} = k.{c} + EXCLUDED.{c}" for c in _COLUMNS)
    return f"""{name} AS (
    INSERT INTO queues_counter AS k (queue_id, slot, {cols})
    SELECT queue_id, {slot}, {sums} FROM {source}
    GROUP BY queue_id
    ON CONFLICT (queue_id, slot) DO UPDATE SET {sets}
)"""


def _deltas(**cols: str) -> str:
    """Select-list of counter deltas, zero for the columns not given."""
    return ", ".join(f"{cols.get(c, '0')}::bigint AS {c}" for c in _COLUMNS)


# -- send -------------------------------------------------------------------------------------------
# A time to live (the message's own, else the queue's) counts from when the message becomes
# available, so a delayed message cannot expire before anyone could receive it. NULL: never expires.
_EXPIRES_AT = (
    "statement_timestamp() + coalesce({t}.delay * interval '1 second', q.default_delay)"
    " + coalesce({t}.ttl * interval '1 second', q.message_ttl)"
)

# A statement that puts messages into a queue locks the queue's row against deletion until its transaction
# ends; the trigger queues_message_queue_check (migration 0023) takes the same lock after the insert, and
# raises if the queue is gone. Taken first, in the statement, it makes a send that raced the queue's
# deletion find no queue row (it waited for the deletion, which committed) and insert nothing: the
# caller reloads the queue's id and raises QueueNotFound, and the caller's transaction is not aborted.
_HOLD_QUEUE = "FOR KEY SHARE"

# One statement for any number of messages: arrays in, ids out in input order. Dedup ids go through
# queues_dedup first; a conflicting live entry makes the row vanish from `fresh`, and the caller
# reads the first message's id back from queues_dedup.
SEND = f"""
WITH input AS (
    SELECT * FROM unnest(
        %(bodies)s::text[], %(headers)s::text[], %(priorities)s::int[], %(groups)s::text[],
        %(dedup_ids)s::text[], %(delays)s::float8[], %(ttls)s::float8[]
    ) WITH ORDINALITY AS t(body, headers, priority, group_key, dedup_id, delay, ttl, ord)
),
q AS (SELECT id, default_delay, dedup_window, message_ttl FROM queues_queue WHERE id = %(queue_id)s {_HOLD_QUEUE}),
numbered AS (
    SELECT input.*, nextval('queues_message_id_seq') AS new_id FROM input
),
dedup AS (
    INSERT INTO queues_dedup AS d (queue_id, dedup_id, message_id, expires_at)
    SELECT q.id, n.dedup_id, n.new_id, statement_timestamp() + q.dedup_window
    FROM numbered n, q WHERE n.dedup_id IS NOT NULL
    ON CONFLICT (queue_id, dedup_id) DO UPDATE
        SET message_id = EXCLUDED.message_id, expires_at = EXCLUDED.expires_at
        WHERE d.expires_at <= statement_timestamp()
    RETURNING d.message_id
),
fresh AS (
    INSERT INTO queues_message (
        id, queue_id, body, headers, priority, group_key, dedup_id, enqueued_at, available_at,
        receive_count, last_error, history, expires_at)
    SELECT n.new_id, q.id, n.body::json, n.headers::jsonb, n.priority, n.group_key, n.dedup_id,
           statement_timestamp(),
           statement_timestamp() + coalesce(n.delay * interval '1 second', q.default_delay),
           0, '', '[]'::jsonb, {_EXPIRES_AT.format(t="n")}
    FROM numbered n, q
    WHERE n.dedup_id IS NULL OR n.new_id IN (SELECT message_id FROM dedup)
    RETURNING id, available_at
),
deltas AS (SELECT %(queue_id)s::bigint AS queue_id, {_deltas(depth="count(*)", sent="count(*)")} FROM fresh
           HAVING count(*) > 0),
{_bump("bumped", "deltas")},
-- Wake receivers in the same statement: a separate NOTIFY would cost a round trip (and, outside a
-- transaction, a second commit) per send.
notified AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', %(queue_id)s::text)
    WHERE EXISTS (SELECT 1 FROM fresh WHERE available_at <= statement_timestamp())
)
SELECT n.ord, n.new_id, n.dedup_id, (n.new_id IN (SELECT id FROM fresh)) AS stored,
       (SELECT count(*) FROM q) AS queue_exists, (SELECT count(*) FROM notified) AS notified
FROM numbered n ORDER BY n.ord
"""

# Sends without dedup ids (nearly all of them) skip the dedup machinery. Bodies arrive as one JSON
# array: one parse on the server, no array literal to escape on the client; json_array_elements of a
# json (not jsonb) value returns each element's text exactly as written. Headers, priorities,
# groups and delays are NULL when every message takes the default; ROWS FROM pads a NULL one with
# NULLs. nextval() is volatile, so PostgreSQL evaluates it after the sort: ascending ids are input order.
SEND_FAST = f"""
WITH q AS (SELECT id, default_delay, message_ttl FROM queues_queue WHERE id = %(queue_id)s {_HOLD_QUEUE}),
fresh AS (
    INSERT INTO queues_message (
        id, queue_id, body, headers, priority, group_key, enqueued_at, available_at,
        receive_count, last_error, history, expires_at)
    SELECT nextval('queues_message_id_seq'), q.id, t.body, coalesce(t.headers, '{{}}'::jsonb),
           coalesce(t.priority, 0), t.group_key, statement_timestamp(),
           statement_timestamp() + coalesce(t.delay * interval '1 second', q.default_delay),
           0, '', '[]'::jsonb, {_EXPIRES_AT.format(t="t")}
    FROM q, ROWS FROM (
        json_array_elements(%(bodies)s::json), jsonb_array_elements(%(headers)s::jsonb),
        unnest(%(priorities)s::int[]), unnest(%(groups)s::text[]), unnest(%(delays)s::float8[]),
        unnest(%(ttls)s::float8[])
    ) WITH ORDINALITY AS t(body, headers, priority, group_key, delay, ttl, ord)
    ORDER BY t.ord
    RETURNING id, available_at
),
deltas AS (SELECT %(queue_id)s::bigint AS queue_id, {_deltas(depth="count(*)", sent="count(*)")} FROM fresh
           HAVING count(*) > 0),
{_bump("bumped", "deltas")},
notified AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', %(queue_id)s::text)
    WHERE EXISTS (SELECT 1 FROM fresh WHERE available_at <= statement_timestamp())
)
SELECT id, (SELECT count(*) FROM notified) FROM fresh ORDER BY id
"""

DEDUP_LOOKUP = """
SELECT dedup_id, message_id FROM queues_dedup WHERE queue_id = %(queue_id)s AND dedup_id = ANY(%(dedup_ids)s::text[])
"""

NOTIFY = f"SELECT pg_notify('{NOTIFY_CHANNEL}', %(queue_id)s::text)"

# -- commit mode ------------------------------------------------------------------------------------
# A lease, ack, nack, extend or release lost in a server crash only means a redelivery, which
# at-least-once allows, so outside a caller's transaction these commit without waiting for the WAL
# flush (%(async_commit)s true; sends never do). set_config(..., true) lasts until this statement's
# own commit: no extra round trip, and the connection's setting is untouched afterwards. An
# uncorrelated scalar subquery in the final WHERE is a one-time filter: evaluated once, before the
# first row (a false parameter short-circuits the OR, and folds it away in a custom plan).
_ASYNC_COMMIT = "(SELECT NOT %(async_commit)s::boolean OR set_config('synchronous_commit', 'off', true) = 'off')"


# -- receive ----------------------------------------------------------------------------------------
# A claimed message is leased unless it has used up its receives; then it is dead-lettered instead.
_LEASE_ENDS = "statement_timestamp() + coalesce(%(vt)s::float8 * interval '1 second', q.visibility_timeout)"
# A message is in flight while its lease's end (leased_until, in no index: migration 0022) is ahead;
# a claim never moves available_at, so a message in flight is never delayed as well.
# Both are true or false, never NULL (leased_until is NULL for a message never leased): they are values
# too (CANCEL's in_flight, PEEK's columns), where NULL would be neither.
LEASED = "coalesce({m}.leased_until > statement_timestamp(), false)"
UNLEASED = "({m}.leased_until IS NULL OR {m}.leased_until <= statement_timestamp())"
_LIVES = "(q.max_receives = 0 OR q.dead_letter_queue_id IS NULL OR {c}.receive_count < q.max_receives)"


# The claimed rows are taken as one array of ctids: PostgreSQL answers `ctid = ANY(array)` with a single
# TID scan whatever its estimates. A join with `claimed` was planned from the estimates, and the prepared
# statement's generic plan hashed a sequential scan of the whole table (docs/engine.md, "Claims").
def _lease_and_deadletter(only: str = "") -> str:
    """The CTEs that lease (or dead-letter) the rows of ``claimed``; ``only``: a further condition on ``m``."""
    return f"""
leased AS (
    UPDATE queues_message m
    SET receive_count = m.receive_count + 1,
        receipt = gen_random_uuid(),
        leased_until = {_LEASE_ENDS}
    FROM q
    WHERE m.ctid = ANY(ARRAY(SELECT ctid FROM claimed)) AND {_LIVES.format(c="m")} {only}
    RETURNING m.id, m.body, m.headers, m.priority, m.group_key, m.receive_count, m.enqueued_at,
              m.leased_until, m.receipt, m.last_error,
              -- dead letters never expire (nor does a consumer of a dead-letter queue drop them)
              CASE WHEN m.dead_at IS NULL THEN m.expires_at END AS expires_at
),
dead AS (
    UPDATE queues_message m
    SET queue_id = q.dead_letter_queue_id, origin_queue_id = m.queue_id, dead_at = statement_timestamp(),
        receipt = NULL, leased_until = NULL, available_at = statement_timestamp(),
        history = m.history || jsonb_build_array(jsonb_build_object(
            'at', statement_timestamp(), 'event', 'dead-lettered',
            'reason', format('received %%s times (max receives %%s)', m.receive_count, q.max_receives)))
    FROM q
    WHERE m.ctid = ANY(ARRAY(SELECT ctid FROM claimed)) AND NOT {_LIVES.format(c="m")}
    RETURNING m.queue_id AS dlq_id
),
-- What the in-flight count reads (sql.STATS): one row per claim, whatever its size.
lease_batch AS (
    INSERT INTO queues_lease (queue_id, until, message_ids)
    SELECT (SELECT id FROM q), max(leased_until), array_agg(id) FROM leased HAVING count(*) > 0
),
deltas AS (
    SELECT (SELECT id FROM q) AS queue_id, {_deltas(depth="-count(*)", failed="count(*)", dead="count(*)")}
    FROM dead HAVING count(*) > 0
    UNION ALL
    SELECT dlq_id, {_deltas(depth="count(*)", sent="count(*)")} FROM dead GROUP BY dlq_id
),
{_bump("bumped", "deltas")}
SELECT id, body::text, headers, priority, group_key, receive_count, enqueued_at, leased_until,
       replace(receipt::text, '-', ''), last_error, expires_at
FROM leased WHERE {_ASYNC_COMMIT} ORDER BY priority DESC, id
"""

_QUEUE_ROW = """
q AS (
    SELECT id, visibility_timeout, max_receives, dead_letter_queue_id
    FROM queues_queue WHERE id = %(queue_id)s AND NOT paused
)"""


# The claim starts at the process's claim floor for the queue (delivery.claim; 0 for a full claim): under a
# held snapshot the claim index keeps an entry for every version of every message acked or leased since,
# and a claim from the queue's start would visit each of them. The scan itself is the SQL function
# queues_claim_ready (migration 0021), which walks the claim index whatever the statistics say: written
# here, the prepared claim flipped to queues_msg_avail and a sort whenever ANALYZE had seen the table
# nearly empty, and read every dead version in the heap (docs/engine.md, "Claims").
RECEIVE_STANDARD = f"""
WITH {_QUEUE_ROW},
claimed AS (
    SELECT c.ctid FROM queues_claim_ready((SELECT id FROM q), %(floor)s::bigint, %(limit)s::bigint) AS c(ctid)
),
{_lease_and_deadletter()}
"""


# Fifo: walk the distinct group keys with a loose index scan (one index probe per group, never a scan
# of the queue), look at each group's head (its lowest id), and stop once enough heads are ready.
#
# A ready head alone does not make its group free. Ids are drawn when a send runs, not when it
# commits, so a lower id can become visible after a later message of its group was leased (a
# producer committing late); a redrive or a move brings old ids back into a group too. The group's
# row in queues_group says whether it has a message in flight, and a claim takes a group only by
# locking that row (FOR UPDATE SKIP LOCKED re-checks `until` on the row's latest version, not on the
# statement's snapshot) or by creating it. So two claims never both see a group free, whatever
# their snapshots, and a group has at most one message in flight, always its lowest id at the time.
#
# The walk starts after `after` (where the process's last walk stopped) or, with RECEIVE_FIFO_FIRST,
# at the first group. Two statements, not one with `(after IS NULL OR group_key > after)`: in the
# prepared (generic) plan that OR is a filter, not an index bound, so each walk scanned the index
# entries of every group before the cursor (5x slower with 1,000,000 messages in 10,000 groups). No
# sentinel value can stand for "before every key": the empty string is a valid group key.
_HEAD = f"""SELECT m.id, m.available_at <= statement_timestamp() AND {UNLEASED.format(m="m")} AS ready
          FROM queues_message m
          WHERE m.queue_id = %(queue_id)s AND m.group_key = g.group_key ORDER BY m.id LIMIT 1"""


def _receive_fifo(anchor: str) -> str:
    return f"""
WITH RECURSIVE {_QUEUE_ROW},
walk AS (
    SELECT g.group_key, h.id AS head_id, h.ready, h.ready::int AS found, 1 AS steps
    FROM (SELECT m.group_key FROM queues_message m
          WHERE m.queue_id = %(queue_id)s AND m.group_key IS NOT NULL {anchor}
          ORDER BY m.group_key LIMIT 1) g
    CROSS JOIN LATERAL ({_HEAD}) h
    UNION ALL
    SELECT g.group_key, h.id, h.ready, w.found + h.ready::int, w.steps + 1
    FROM walk w
    CROSS JOIN LATERAL (SELECT m.group_key FROM queues_message m
          WHERE m.queue_id = %(queue_id)s AND m.group_key > w.group_key
          ORDER BY m.group_key LIMIT 1) g
    CROSS JOIN LATERAL ({_HEAD}) h
    WHERE w.found < %(limit)s * 2 AND w.steps < %(max_groups)s
),
-- The snapshot's view of the group rows only saves locking heads of groups known to be busy. A
-- scalar subquery, so it stays one index probe per head (an anti-join may scan all the queue's groups).
candidates AS (
    SELECT w.head_id FROM walk w
    WHERE w.ready AND NOT coalesce((
        SELECT g.until > statement_timestamp() FROM queues_group g
        WHERE g.queue_id = %(queue_id)s AND g.group_key = w.group_key), false)
),
-- `= ANY(ARRAY(...))` makes it a primary-key probe per head whatever the statistics say (`IN` let the
-- planner scan the whole queue). queue_id is re-checked on the locked row: a head moved away since
-- the snapshot is not ours.
claimed AS (
    SELECT m.ctid, m.id, m.receive_count, m.group_key FROM queues_message m
    WHERE m.id = ANY(ARRAY(SELECT head_id FROM candidates)) AND m.queue_id = %(queue_id)s
      AND m.available_at <= statement_timestamp() AND {UNLEASED.format(m="m")} AND EXISTS (SELECT 1 FROM q)
    ORDER BY m.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
taking AS (SELECT c.id, c.group_key, {_LEASE_ENDS} AS until FROM claimed c, q WHERE {_LIVES.format(c="c")}),
free_groups AS (
    SELECT f.id, t.id AS message_id, t.until FROM taking t
    CROSS JOIN LATERAL (
        SELECT g.id, g.group_key FROM queues_group g
        WHERE g.queue_id = %(queue_id)s AND g.group_key = t.group_key AND g.until <= statement_timestamp()
        FOR UPDATE SKIP LOCKED) f
),
taken AS (
    UPDATE queues_group g SET message_id = f.message_id, until = f.until
    FROM free_groups f WHERE g.id = f.id
    RETURNING f.message_id AS id
),
-- A group's first claim makes its row. Rows go in key order, so two claims racing for the same new
-- groups wait for each other (briefly) in one order and never deadlock.
new_groups AS (
    INSERT INTO queues_group AS g (queue_id, group_key, message_id, until)
    SELECT %(queue_id)s, t.group_key, t.id, t.until FROM taking t
    WHERE NOT EXISTS (SELECT 1 FROM queues_group x WHERE x.queue_id = %(queue_id)s AND x.group_key = t.group_key)
    ORDER BY t.group_key
    ON CONFLICT (queue_id, group_key) DO NOTHING
    RETURNING g.message_id AS id
),
{_lease_and_deadletter("AND m.id IN (SELECT id FROM taken UNION ALL SELECT id FROM new_groups)")}
"""


RECEIVE_FIFO = _receive_fifo("AND m.group_key > %(after)s::text")
RECEIVE_FIFO_FIRST = _receive_fifo("")

# A message leaving its lease (ack, nack, release, delete, purge) frees its fifo group now rather than
# when the lease would have run out. Only the group row that names this very message: the group may
# be someone else's by now. `source` has the message's id, queue_id and group_key.
def _free_groups(name: str, source: str) -> str:
    return f"""{name} AS (
    UPDATE queues_group g SET until = statement_timestamp()
    FROM {source} x
    WHERE x.group_key IS NOT NULL AND g.queue_id = x.queue_id AND g.group_key = x.group_key
      AND g.message_id = x.id AND g.until > statement_timestamp()
)"""


# -- ack / nack / extend ----------------------------------------------------------------------------
# Receipts arrive as two parameters: %(ids)s, the messages' ids (bigint[]), and %(held)s, a JSON object from
# each id to the lease tokens given for it ({"42": ["9f86d081884c7d659a2feaa0c55ad015"]}: 32 hex digits,
# as receipts carry them; delivery._split builds both). A message is held by a receipt while its lease
# lasts and its token is among those given for its id.
# - `id = ANY(array)` is an index condition: the primary key answers it with one probe per id. (A join's
#   `m.id = r.id` was planned from the estimates, and under a held snapshot, where ANALYZE counts only
#   live rows, a prepared ack once walked the whole primary key, every dead version included, for one
#   message: docs/engine.md, "Claims"; test_claim_plans holds the settlements to a few buffers there.)
# - The token is looked up in the object by the row's own id (a binary search), never joined: a join with
#   `unnest(ids, tokens)` was planned, in the prepared statement's generic plan, as if the batch held 10
#   receipts (PostgreSQL's guess for a parameter's unnest), and became a nested loop comparing every
#   receipt with every row: 124,750 comparisons and 10 ms for an ack of 500 (docs/benchmarks.md).
_HELD_BY_RECEIPT = (
    "m.id = ANY(%(ids)s::bigint[]) AND m.leased_until > clock_timestamp()"
    " AND (%(held)s::jsonb -> m.id::text) ? replace(m.receipt::text, '-', '')"
)

ACK = f"""
WITH removed AS (
    DELETE FROM queues_message m
    WHERE {_HELD_BY_RECEIPT}
    RETURNING m.id, m.queue_id, m.group_key
),
{_free_groups("freed", "removed")},
deltas AS (SELECT queue_id, {_deltas(depth="-count(*)", acked="count(*)")} FROM removed GROUP BY queue_id),
{_bump("bumped", "deltas")},
-- Acking a fifo group's head makes the next message of the group claimable: wake idle receivers
-- now rather than at their next poll (once per queue, and only if the group has a next message).
notified AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', x.queue_id::text) FROM removed x
    -- (the statement's snapshot still shows the deleted head itself, hence "a later id")
    WHERE x.group_key IS NOT NULL AND EXISTS (
        SELECT 1 FROM queues_message n
        WHERE n.queue_id = x.queue_id AND n.group_key = x.group_key AND n.id > x.id)
    GROUP BY x.queue_id
)
SELECT id, (SELECT count(*) FROM notified) FROM removed WHERE {_ASYNC_COMMIT}
"""

# The group row of a fifo message follows its lease, or the group would open while it is still held.
EXTEND = f"""
WITH extended AS (
    UPDATE queues_message m
    SET leased_until = statement_timestamp() + %(seconds)s::float8 * interval '1 second'
    WHERE {_HELD_BY_RECEIPT}
    RETURNING m.id, m.queue_id, m.group_key, m.leased_until
),
followed AS (
    UPDATE queues_group g SET until = x.leased_until
    FROM extended x
    WHERE x.group_key IS NOT NULL AND g.queue_id = x.queue_id AND g.group_key = x.group_key
      AND g.message_id = x.id
),
-- The lease now ends after its claim's batch row does: list it again, until its new end.
lease_batch AS (
    INSERT INTO queues_lease (queue_id, until, message_ids)
    SELECT queue_id, max(leased_until), array_agg(id) FROM extended GROUP BY queue_id
)
SELECT id, leased_until FROM extended WHERE {_ASYNC_COMMIT}
"""

# A nack puts the message back (after `delay`) with the error on record; one that has used up its
# receives (or whose consumer asks for it: `dead_letter`) goes straight to the dead-letter queue
# instead of waiting for the next claim.
NACK = f"""
WITH target AS (
    SELECT m.id, m.queue_id, m.receive_count, q.max_receives, q.dead_letter_queue_id,
           (q.dead_letter_queue_id IS NOT NULL
            AND (%(dead_letter)s::boolean OR (q.max_receives > 0 AND m.receive_count >= q.max_receives))) AS dies
    FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id
    WHERE {_HELD_BY_RECEIPT}
    FOR UPDATE OF m
),
changed AS (
    UPDATE queues_message m
    SET receipt = NULL, leased_until = NULL,
        available_at = CASE WHEN t.dies THEN statement_timestamp()
                            ELSE statement_timestamp() + %(delay)s::float8 * interval '1 second' END,
        queue_id = CASE WHEN t.dies THEN t.dead_letter_queue_id ELSE m.queue_id END,
        origin_queue_id = CASE WHEN t.dies THEN m.queue_id ELSE m.origin_queue_id END,
        dead_at = CASE WHEN t.dies THEN statement_timestamp() ELSE m.dead_at END,
        last_error = %(error)s::text,
        -- a retry records when it is due (the backoff the operator sees, and tests check)
        history = (m.history || jsonb_build_array(jsonb_build_object(
            'at', statement_timestamp(), 'event', CASE WHEN t.dies THEN 'dead-lettered' ELSE 'nacked' END,
            'receive_count', m.receive_count, 'error', %(error)s::text)
            || CASE WHEN t.dies THEN '{{}}'::jsonb ELSE jsonb_build_object(
                   'available_at', statement_timestamp() + %(delay)s::float8 * interval '1 second') END))
            -- keep the last 20 entries: a message that fails forever must not grow without bound
            #- '{{-21}}'
    FROM target t
    WHERE m.id = t.id
    RETURNING m.id, t.queue_id AS source_id, t.dead_letter_queue_id, t.dies, m.group_key
),
{_free_groups("freed", "(SELECT id, source_id AS queue_id, group_key FROM changed)")},
deltas AS (
    SELECT source_id AS queue_id,
           {_deltas(depth="-count(*) FILTER (WHERE dies)", failed="count(*)", dead="count(*) FILTER (WHERE dies)")}
    FROM changed GROUP BY source_id
    UNION ALL
    SELECT dead_letter_queue_id, {_deltas(depth="count(*)", sent="count(*)")}
    FROM changed WHERE dies GROUP BY dead_letter_queue_id
),
{_bump("bumped", "deltas")}
SELECT id, dies FROM changed WHERE {_ASYNC_COMMIT}
"""

# Give leases back early (a stopping consumer, or a dead one's leases released by another process):
# ready now (available_at, when it was due, stays as it was), nothing on record, no failure counted.
# `refund` takes back the receive for deliveries that never reached a handler, so they do not creep
# towards max receives.
RELEASE = f"""
WITH released AS (
    UPDATE queues_message m
    SET receipt = NULL, leased_until = NULL,
        receive_count = CASE WHEN %(refund)s::boolean THEN greatest(m.receive_count - 1, 0) ELSE m.receive_count END
    WHERE {_HELD_BY_RECEIPT}
    RETURNING m.id, m.queue_id, m.group_key
),
{_free_groups("freed", "released")}
SELECT id, queue_id FROM released WHERE {_ASYNC_COMMIT}
"""

# -- operator actions -------------------------------------------------------------------------------
PURGE = f"""
WITH removed AS (DELETE FROM queues_message WHERE queue_id = %(queue_id)s RETURNING id, queue_id, group_key),
{_free_groups("freed", "removed")},
deltas AS (SELECT queue_id, {_deltas(depth="-count(*)")} FROM removed GROUP BY queue_id),
{_bump("bumped", "deltas")}
SELECT count(*) FROM removed
"""

DELETE_MESSAGES = f"""
WITH removed AS (
    DELETE FROM queues_message WHERE queue_id = %(queue_id)s AND id = ANY(%(ids)s::bigint[])
    RETURNING id, queue_id, group_key
),
{_free_groups("freed", "removed")},
deltas AS (SELECT queue_id, {_deltas(depth="-count(*)")} FROM removed GROUP BY queue_id),
{_bump("bumped", "deltas")}
SELECT count(*) FROM removed
"""

# Moves skip messages in flight: their lease holder still owns them.
MOVE_MESSAGES = f"""
WITH picked AS (
    SELECT id, queue_id FROM queues_message
    WHERE queue_id = %(queue_id)s AND id = ANY(%(ids)s::bigint[])
      AND {UNLEASED.format(m="queues_message")}
    FOR UPDATE SKIP LOCKED
),
moved AS (
    UPDATE queues_message m
    SET queue_id = %(to_id)s, receipt = NULL, available_at = statement_timestamp(), receive_count = 0,
        dead_at = NULL, expires_at = NULL, cancel_requested_at = NULL,  -- an operator brought it back on purpose
        group_key = CASE WHEN %(to_fifo)s THEN coalesce(m.group_key, '') ELSE m.group_key END,
        history = m.history || jsonb_build_array(jsonb_build_object(
            'at', statement_timestamp(), 'event', 'moved', 'from', %(queue_name)s::text))
    FROM picked p WHERE m.id = p.id
    RETURNING p.queue_id AS from_id
),
deltas AS (
    SELECT from_id AS queue_id, {_deltas(depth="-count(*)")} FROM moved GROUP BY from_id
    UNION ALL
    SELECT %(to_id)s::bigint, {_deltas(depth="count(*)", sent="count(*)")} FROM moved HAVING count(*) > 0
),
{_bump("bumped", "deltas")}
SELECT count(*) FROM moved
"""

RETRY_NOW = f"""
UPDATE queues_message SET available_at = statement_timestamp()
WHERE queue_id = %(queue_id)s AND id = ANY(%(ids)s::bigint[]) AND {UNLEASED.format(m="queues_message")}
  AND available_at > statement_timestamp()
"""

# Redrive one batch: the oldest dead letters go to `to_id`, or each to the queue it died in.
REDRIVE_BATCH = f"""
WITH picked AS (
    SELECT m.id, coalesce(%(to_id)s::bigint, m.origin_queue_id) AS dest
    FROM queues_message m
    WHERE m.queue_id = %(queue_id)s AND m.available_at <= statement_timestamp() AND {UNLEASED.format(m="m")}
      AND coalesce(%(to_id)s::bigint, m.origin_queue_id) IS NOT NULL
    ORDER BY m.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
moved AS (
    UPDATE queues_message m
    SET queue_id = p.dest, receipt = NULL, available_at = statement_timestamp(), receive_count = 0,
        dead_at = NULL, origin_queue_id = NULL, expires_at = NULL, cancel_requested_at = NULL,
        group_key = CASE WHEN dq.kind = 'fifo' THEN coalesce(m.group_key, '') ELSE m.group_key END,
        history = m.history || jsonb_build_array(jsonb_build_object(
            'at', statement_timestamp(), 'event', 'redriven', 'from', %(queue_name)s::text))
    FROM picked p JOIN queues_queue dq ON dq.id = p.dest
    WHERE m.id = p.id
    RETURNING p.dest
),
deltas AS (
    SELECT %(queue_id)s::bigint AS queue_id, {_deltas(depth="-count(*)")} FROM moved HAVING count(*) > 0
    UNION ALL
    SELECT dest, {_deltas(depth="count(*)", sent="count(*)")} FROM moved GROUP BY dest
),
{_bump("bumped", "deltas")}
SELECT dest, count(*) FROM moved GROUP BY dest
"""

PRUNE_EXPIRED = f"""
WITH victims AS (
    SELECT m.id FROM queues_message m JOIN queues_queue q ON q.id = m.queue_id
    -- Retention counts from when the message became available, so a message delayed past its
    -- queue's retention is not pruned before anyone could receive it.
    WHERE m.queue_id = %(queue_id)s AND m.enqueued_at < statement_timestamp() - q.retention
      AND m.available_at < statement_timestamp() - q.retention AND {UNLEASED.format(m="m")}
    LIMIT %(limit)s
    FOR UPDATE OF m SKIP LOCKED
),
removed AS (DELETE FROM queues_message m USING victims v WHERE m.id = v.id RETURNING m.queue_id),
deltas AS (SELECT queue_id, {_deltas(depth="-count(*)")} FROM removed GROUP BY queue_id),
{_bump("bumped", "deltas")}
SELECT count(*) FROM removed
"""

PRUNE_DEDUP = "DELETE FROM queues_dedup WHERE expires_at <= statement_timestamp()"

# A free group's row can go at any time (no row means free); keeping recently used ones saves busy
# groups an insert per message. The latest version is re-checked, so a group taken meanwhile stays.
PRUNE_GROUPS = "DELETE FROM queues_group WHERE until < statement_timestamp() - interval '10 minutes'"

# A lease batch whose end has passed lists no message in flight (an extend lists its messages again).
PRUNE_LEASES = "DELETE FROM queues_lease WHERE until <= statement_timestamp()"
# The same for one queue, from a claim (delivery.claim): a bounded batch, skipping rows another process
# is deleting, so a claim inside a caller's transaction never waits on a sweep.
SWEEP_LEASES = """
DELETE FROM queues_lease WHERE id = ANY(ARRAY(
    SELECT id FROM queues_lease WHERE queue_id = %(queue_id)s AND until <= statement_timestamp()
    LIMIT 1000 FOR UPDATE SKIP LOCKED))
"""

# Fold a queue's counter slots into slot 0 so the table stays as small as the number of queues.
COMPACT_COUNTERS = f"""
WITH gone AS (
    DELETE FROM queues_counter WHERE slot <> 0 RETURNING queue_id, {", ".join(_COLUMNS)}
),
{_bump("bumped", "gone", slot="0")}
SELECT count(*) FROM gone
"""

PUBLISH = f"""
WITH targets AS (
    SELECT s.queue_id, q.default_delay, q.message_ttl FROM queues_subscription s
    JOIN queues_topic t ON t.id = s.topic_id JOIN queues_queue q ON q.id = s.queue_id
    WHERE t.name = %(topic)s AND (s.filter IS NULL OR %(headers)s::jsonb @> s.filter)
    {_HOLD_QUEUE} OF q
),
fresh AS (
    INSERT INTO queues_message (
        queue_id, body, headers, priority, group_key, enqueued_at, available_at,
        receive_count, last_error, history, expires_at)
    SELECT t.queue_id, %(body)s::json, %(headers)s::jsonb, %(priority)s,
           CASE WHEN q.kind = 'fifo' THEN coalesce(%(group)s::text, '') ELSE %(group)s::text END,
           statement_timestamp(),
           statement_timestamp() + coalesce(%(delay)s * interval '1 second', t.default_delay),
           0, '', '[]'::jsonb,
           statement_timestamp() + coalesce(%(delay)s * interval '1 second', t.default_delay) + t.message_ttl
    FROM targets t JOIN queues_queue q ON q.id = t.queue_id
    RETURNING id, queue_id, available_at
),
deltas AS (SELECT queue_id, {_deltas(depth="count(*)", sent="count(*)")} FROM fresh GROUP BY queue_id),
{_bump("bumped", "deltas")},
notified AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', queue_id::text) FROM fresh
    WHERE available_at <= statement_timestamp() GROUP BY queue_id
)
SELECT f.id, f.queue_id, (SELECT count(*) FROM notified) FROM fresh f ORDER BY f.id
"""

# -- reads ------------------------------------------------------------------------------------------
# Cheap at any depth: counters are a handful of rows per queue; the delayed count scans only the
# future part of (queue_id, available_at), and the oldest ready message is the first entry of the past
# part that is not in flight. The in-flight count probes the ids of the queue's live lease batches by
# primary key: its work follows the number in flight, not the backlog. An id listed twice (leased,
# released, leased again) is probed once, and a message counts only while its own lease is on.
STATS = f"""
SELECT q.id, q.name, q.kind, q.paused, q.dead_letter_queue_id,
       coalesce(k.depth, 0), coalesce(k.sent, 0), coalesce(k.acked, 0), coalesce(k.failed, 0),
       coalesce(k.dead, 0), coalesce(f.in_flight, 0), coalesce(f.delayed, 0),
       extract(epoch FROM statement_timestamp() - o.available_at)
FROM queues_queue q
LEFT JOIN LATERAL (
    SELECT sum(depth) AS depth, sum(sent) AS sent, sum(acked) AS acked, sum(failed) AS failed,
           sum(dead) AS dead
    FROM queues_counter WHERE queue_id = q.id
) k ON true
LEFT JOIN LATERAL (
    SELECT (SELECT count(*) FROM queues_message m
            WHERE m.id = ANY(ARRAY(SELECT unnest(b.message_ids) FROM queues_lease b
                                   WHERE b.queue_id = q.id AND b.until > statement_timestamp()))
              AND m.queue_id = q.id AND {LEASED.format(m="m")}) AS in_flight,
           (SELECT count(*) FROM queues_message
            WHERE queue_id = q.id AND available_at > statement_timestamp()) AS delayed
) f ON true
LEFT JOIN LATERAL (
    SELECT m.available_at FROM queues_message m
    WHERE m.queue_id = q.id AND m.available_at <= statement_timestamp() AND {UNLEASED.format(m="m")}
    ORDER BY m.available_at LIMIT 1
) o ON true
WHERE (%(names)s::text[] IS NULL OR q.name = ANY(%(names)s::text[]))
ORDER BY q.name
"""

PEEK = f"""
SELECT m.id, m.body::text, m.headers, m.priority, m.group_key, m.dedup_id, m.receive_count, m.enqueued_at,
       CASE WHEN {LEASED.format(m="m")} THEN m.leased_until ELSE m.available_at END,
       {LEASED.format(m="m")} AS in_flight,
       m.last_error, m.history, o.name, m.dead_at,
       m.available_at > statement_timestamp() OR {LEASED.format(m="m")} AS future
FROM queues_message m LEFT JOIN queues_queue o ON o.id = m.origin_queue_id
WHERE m.queue_id = %(queue_id)s AND (%(after)s::bigint IS NULL OR m.id > %(after)s::bigint)
  AND (%(ids)s::bigint[] IS NULL OR m.id = ANY(%(ids)s::bigint[]))
ORDER BY m.id
LIMIT %(limit)s
"""

# -- small reads and upkeep (not on the hot path, or cached) ------------------------------------------
# What the per-queue config cache holds (connection.config).
QUEUE_CONFIG = (
    "SELECT id, kind, max_message_size, extract(epoch FROM default_delay), "
    "rate_limit / extract(epoch FROM rate_period)::float8, concurrency_limit, limits_per_group, max_length, overflow "
    "FROM queues_queue WHERE name = %s"
)
QUEUE_NAME = "SELECT name FROM queues_queue WHERE id = %s"
QUEUE_NAMES_BY_ID = "SELECT name FROM queues_queue WHERE id = ANY(%s::bigint[])"
QUEUE_IDS = "SELECT id FROM queues_queue"
IS_DEAD_LETTER_QUEUE = "SELECT 1 FROM queues_queue WHERE dead_letter_queue_id = %s LIMIT 1"

# A redrive whose process went silent is failed; the error says since when (redrive.reap_redrives).
REAP_REDRIVES = (
    "UPDATE queues_redrive SET state = %(failed)s, finished_at = statement_timestamp(), "
    "error = 'abandoned: the process running it stopped without finishing (no sign of life since ' "
    "  || to_char(coalesce(heartbeat_at, created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
    "  || ' UTC); the messages it did not move are still in the queue: start a new redrive' "
    "WHERE state IN (%(running)s, %(stopping)s) "
    "  AND coalesce(heartbeat_at, created_at) < statement_timestamp() - make_interval(secs => %(secs)s)"
)

# -- fragments shared with the limited claims (engine/flow_sql.py) ----------------------------------
# The lease-or-dead-letter tail of every claim, public so that flow_sql builds its claims from the same
# text as RECEIVE_STANDARD rather than a copy of it.
LEASE_AND_DEADLETTER = _lease_and_deadletter

# -- flow control: expiry, cancellation, bounded queues (docs/flow-control.md) ------------------------
_FLOW_COLUMNS = (*_COLUMNS, "expired", "cancelled", "overflowed")


def _flow_bump(name: str, source: str) -> str:
    """Like ``_bump`` for all eight counter columns, always in slot 0: the flow counters live only there
    (the compaction folds the other slots without them). ``source`` has one row per queue_id at most,
    as one INSERT may not touch a row twice; these statements never run ``_bump`` beside it."""
    cols = ", ".join(_FLOW_COLUMNS)
    sums = ", ".join(f"sum({c})" for c in _FLOW_COLUMNS)
    sets = ", ".join(f"{c} = k.{c} + EXCLUDED.{c}" for c in _FLOW_COLUMNS)
    return f"""{name} AS (
    INSERT INTO queues_counter AS k (queue_id, slot, {cols})
    SELECT queue_id, 0, {sums} FROM {source}
    GROUP BY queue_id
    ON CONFLICT (queue_id, slot) DO UPDATE SET {sets}
)"""


def _flow_deltas(**cols: str) -> str:
    return ", ".join(f"{cols.get(c, '0')}::bigint AS {c}" for c in _FLOW_COLUMNS)


# Expire the rows of `victims` (ids, locked): one asked to be cancelled is dropped and counted as
# cancelled; otherwise the queue's expiry_action says drop or dead-letter (dropped when the queue has
# no dead-letter queue), counted as expired. A dead-lettered one loses its expiry, or it would expire
# again in the dead-letter queue. A fifo group held by one of them is freed.
def _expire(victims: str) -> str:
    return f"""
info AS (
    SELECT m.id, m.queue_id, m.group_key,
           (m.cancel_requested_at IS NOT NULL OR %(cancel)s::boolean) AS cancelled,
           CASE WHEN m.cancel_requested_at IS NULL AND NOT %(cancel)s::boolean AND q.expiry_action = 'dead_letter'
                THEN q.dead_letter_queue_id END AS dlq_id
    FROM {victims} v JOIN queues_message m ON m.id = v.id JOIN queues_queue q ON q.id = m.queue_id
),
removed AS (
    DELETE FROM queues_message m USING info i WHERE m.id = i.id AND i.dlq_id IS NULL RETURNING m.id
),
moved AS (
    UPDATE queues_message m
    SET queue_id = i.dlq_id, origin_queue_id = m.queue_id, dead_at = statement_timestamp(), receipt = NULL,
        leased_until = NULL, available_at = statement_timestamp(), expires_at = NULL,
        history = m.history || jsonb_build_array(jsonb_build_object(
            'at', statement_timestamp(), 'event', 'dead-lettered', 'reason', 'expired (time to live ran out)'))
    FROM info i WHERE m.id = i.id AND i.dlq_id IS NOT NULL
    RETURNING m.id
),
{_free_groups("freed", "info")},
deltas AS (
    SELECT queue_id, {_flow_deltas(depth="-count(*)", dead="count(dlq_id)",
                                   expired="count(*) FILTER (WHERE NOT cancelled)",
                                   cancelled="count(*) FILTER (WHERE cancelled)")}
    FROM info GROUP BY queue_id
    UNION ALL
    SELECT dlq_id, {_flow_deltas(depth="count(*)", sent="count(*)")} FROM info WHERE dlq_id IS NOT NULL GROUP BY dlq_id
),
{_flow_bump("bumped", "deltas")}
SELECT i.id, i.queue_id, i.cancelled, i.dlq_id IS NOT NULL FROM info i
"""


# The upkeep job: messages past expires_at that nobody holds (ready or delayed), oldest expiry first,
# through the partial index on expires_at. A message in flight is its holder's until its lease ends.
EXPIRE_DUE = f"""
WITH victims AS (
    SELECT m.id FROM queues_message m
    WHERE m.expires_at <= statement_timestamp() AND m.dead_at IS NULL AND {UNLEASED.format(m="m")}
    ORDER BY m.expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
{_expire("victims")}
"""

# Deliveries just claimed (or a handler's own) whose expiry passed, or that a handler cancelled
# (cancel true): by receipt, while the lease is alive, so a lease lost meanwhile is left alone.
EXPIRE_HELD = f"""
WITH victims AS (
    SELECT m.id FROM queues_message m
    WHERE {_HELD_BY_RECEIPT}
    FOR UPDATE OF m
),
{_expire("victims")}
"""

# Cancel messages of a queue: one nobody holds is deleted now (counted as cancelled); one in flight is
# marked, so its handler sees the request, and its expiry set to now, so that if it comes back (a
# nack, a lease running out) it is dropped as cancelled instead of delivered. FOR UPDATE waits for a
# claim in progress and re-reads the row, so "in flight" is decided on the latest version.
CANCEL = f"""
WITH picked AS (
    SELECT m.id, m.queue_id, m.group_key,
           {LEASED.format(m="m")} AS in_flight
    FROM queues_message m
    WHERE m.queue_id = %(queue_id)s AND m.id = ANY(%(ids)s::bigint[])
    FOR UPDATE
),
removed AS (
    DELETE FROM queues_message m USING picked p WHERE m.id = p.id AND NOT p.in_flight
    RETURNING m.id, m.queue_id, m.group_key
),
requested AS (
    UPDATE queues_message m SET cancel_requested_at = statement_timestamp(), expires_at = statement_timestamp()
    FROM picked p WHERE m.id = p.id AND p.in_flight AND m.cancel_requested_at IS NULL
    RETURNING m.id
),
deltas AS (
    SELECT queue_id, {_flow_deltas(depth="-count(*)", cancelled="count(*)")} FROM removed GROUP BY queue_id
),
{_flow_bump("bumped", "deltas")}
SELECT (SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM removed),
       (SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM requested),
       (SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM picked WHERE in_flight)
"""

# Which of these in-flight messages an operator asked to cancel: primary-key probes, for the worker's
# periodic look and Delivery.check_cancelled().
CANCEL_REQUESTED = """
SELECT id FROM queues_message WHERE id = ANY(%(ids)s::bigint[]) AND cancel_requested_at IS NOT NULL
"""

# Bounded queues: every send to a queue with a max_length takes this lock (until its transaction
# ends) before its send statement, whose snapshot is then taken after the previous sender committed,
# so the depth it reads afterwards counts every message sent before. Unbounded queues never take it.
LOCK_QUEUE_SENDS = "SELECT pg_advisory_xact_lock(%(lock_class)s::int, %(queue_id)s::int)"

QUEUE_DEPTH = "SELECT coalesce(sum(depth), 0) FROM queues_counter WHERE queue_id = %(queue_id)s"

# Make room in a full drop_oldest queue: its oldest messages nobody holds (ready or delayed) go to the
# dead-letter queue, or are deleted when there is none, counted as overflowed. The ids just sent are
# never taken (their send is what made the room necessary).
DROP_OLDEST = f"""
WITH q AS (SELECT id, dead_letter_queue_id FROM queues_queue WHERE id = %(queue_id)s),
victims AS (
    SELECT m.id, m.group_key FROM queues_message m
    WHERE m.queue_id = %(queue_id)s AND NOT (m.id = ANY(%(keep)s::bigint[])) AND {UNLEASED.format(m="m")}
    ORDER BY m.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
removed AS (
    DELETE FROM queues_message m USING victims v WHERE m.id = v.id AND (SELECT dead_letter_queue_id FROM q) IS NULL
    RETURNING m.id
),
moved AS (
    UPDATE queues_message m
    SET queue_id = q.dead_letter_queue_id, origin_queue_id = m.queue_id, dead_at = statement_timestamp(),
        receipt = NULL, leased_until = NULL, available_at = statement_timestamp(), expires_at = NULL,
        history = m.history || jsonb_build_array(jsonb_build_object(
            'at', statement_timestamp(), 'event', 'dead-lettered', 'reason', 'overflow (queue at its max length)'))
    FROM victims v, q WHERE m.id = v.id AND q.dead_letter_queue_id IS NOT NULL
    RETURNING m.id
),
counted AS (SELECT count(*) AS n, (SELECT dead_letter_queue_id FROM q) AS dlq_id FROM victims),
deltas AS (
    SELECT %(queue_id)s::bigint AS queue_id,
           {_flow_deltas(depth="-n", dead="CASE WHEN dlq_id IS NULL THEN 0 ELSE n END", overflowed="n")}
    FROM counted WHERE n > 0
    UNION ALL
    SELECT dlq_id, {_flow_deltas(depth="n", sent="n")} FROM counted WHERE n > 0 AND dlq_id IS NOT NULL
),
{_flow_bump("bumped", "deltas")}
SELECT (SELECT count(*) FROM removed) + (SELECT count(*) FROM moved)
"""

# The flow counters of some queues (all of them when names is NULL).
FLOW_TOTALS = """
SELECT q.name, coalesce(sum(k.expired), 0), coalesce(sum(k.cancelled), 0), coalesce(sum(k.overflowed), 0)
FROM queues_queue q LEFT JOIN queues_counter k ON k.queue_id = q.id AND k.slot = 0
WHERE (%(names)s::text[] IS NULL OR q.name = ANY(%(names)s::text[]))
GROUP BY q.name
"""
