"""The claim's scan of ready messages, as two SQL functions that always walk ``queues_msg_claim``.

Under a held snapshot (a long transaction, a replica's ``hot_standby_feedback``) the message table keeps
every version of every message acked or leased since, while ANALYZE and VACUUM count only live rows: the
planner sees a nearly empty table. Prepared claims then flipped between the claim index (which checks
``available_at`` and the claim floor inside the index) and ``queues_msg_avail`` plus a sort (which reads
every dead version in the heap): 70,000 buffers and 30-70 ms a claim for tens of seconds at a time
(docs/benchmarks.md, "Issue 11, fourth pass"). ``ORDER BY priority DESC, id`` without a sort can only
come from the claim index, so the functions run with ``enable_sort = off``: the plan no longer depends
on the statistics. A SET clause is the one per-statement planner setting PostgreSQL has; it lasts for
the function's own statement and never reaches the caller's connection.

``queues_claim_ready(queue, from_id, lim)``: the ctids of up to ``lim`` ready messages with ids from
``from_id`` (the claim floor; 0 for a full claim), highest priority then oldest first, locked
``FOR UPDATE SKIP LOCKED``. ``queues_ready(queue, lim)``: the same scan without locks, for the claim of
a queue with limits per group (its candidates).
"""

from django.db import migrations

CLAIM_READY = """
CREATE FUNCTION queues_claim_ready(bigint, bigint, bigint) RETURNS SETOF tid
LANGUAGE sql VOLATILE PARALLEL UNSAFE SET enable_sort = off AS $$
    SELECT m.ctid FROM queues_message m
    WHERE m.queue_id = $1 AND m.available_at <= statement_timestamp() AND m.id >= $2
    ORDER BY m.priority DESC, m.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
$$
"""

READY = """
CREATE FUNCTION queues_ready(bigint, bigint) RETURNS TABLE (id bigint, group_key varchar, priority smallint)
LANGUAGE sql STABLE PARALLEL SAFE SET enable_sort = off AS $$
    SELECT m.id, m.group_key, m.priority FROM queues_message m
    WHERE m.queue_id = $1 AND m.available_at <= statement_timestamp()
    ORDER BY m.priority DESC, m.id
    LIMIT $2
$$
"""


class Migration(migrations.Migration):
    dependencies = [("queues", "0020_queue_health")]

    operations = [
        migrations.RunSQL(CLAIM_READY, "DROP FUNCTION queues_claim_ready(bigint, bigint, bigint)"),
        migrations.RunSQL(READY, "DROP FUNCTION queues_ready(bigint, bigint)"),
    ]
