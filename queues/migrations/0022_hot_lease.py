"""Leases as heap-only updates: the lease leaves every index, and in-flight counts come from ``queues_lease``.

Until now a lease moved ``available_at`` (a key of ``queues_msg_claim`` and ``queues_msg_avail``) and
wrote a new receipt (in ``queues_msg_avail``'s INCLUDE), so every lease was a new heap tuple plus an
entry in three indexes, and so was every version an ack later had to clean. Now:

- ``leased_until`` holds the lease's end, in no index; ``available_at`` is only when the message is due
  and a claim never moves it. The receipt leaves ``queues_msg_avail``. A lease changes no indexed
  column, so PostgreSQL writes it as a heap-only (HOT) update when the page has room for the new
  version; ``fillfactor = 50`` (was 80) leaves that room (a claim's rows share pages, and a page cannot be
  pruned of its own transaction's old versions). bench/levers.py measured this layout at 1.6-1.8x the
  drain of the old one (docs/benchmarks.md, "What each layout lever would buy").
- With no index on the lease, the in-flight count can't be an index range any more. Each claim and
  extend writes one ``queues_lease`` row (queue, until, the ids); in flight is the listed messages
  whose own lease is still on, found by primary key (``sql.STATS``).
- The claim's scan functions (0021) check the lease on the heap row.

Messages in flight when this runs keep their lease: its end moves to ``leased_until`` (and a batch
row lists them), and ``available_at`` becomes the present, when they were last due.
"""

import importlib

from django.db import migrations, models

import queues.fields

CLAIM_READY = """
CREATE OR REPLACE FUNCTION queues_claim_ready(bigint, bigint, bigint) RETURNS SETOF tid
LANGUAGE sql VOLATILE PARALLEL UNSAFE SET enable_sort = off AS $$
    SELECT m.ctid FROM queues_message m
    WHERE m.queue_id = $1 AND m.available_at <= statement_timestamp() AND m.id >= $2
      AND (m.leased_until IS NULL OR m.leased_until <= statement_timestamp())
    ORDER BY m.priority DESC, m.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
$$
"""

READY = """
CREATE OR REPLACE FUNCTION queues_ready(bigint, bigint) RETURNS TABLE (id bigint, group_key varchar, priority smallint)
LANGUAGE sql STABLE PARALLEL SAFE SET enable_sort = off AS $$
    SELECT m.id, m.group_key, m.priority FROM queues_message m
    WHERE m.queue_id = $1 AND m.available_at <= statement_timestamp()
      AND (m.leased_until IS NULL OR m.leased_until <= statement_timestamp())
    ORDER BY m.priority DESC, m.id
    LIMIT $2
$$
"""

# 0021's bodies, for the way back (migrations are frozen: read them from 0021 itself).
_0021 = importlib.import_module("queues.migrations.0021_claim_scan_functions")
OLD_CLAIM_READY = _0021.CLAIM_READY.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
OLD_READY = _0021.READY.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")

CARRY_LEASES = """
WITH moved AS (
    UPDATE queues_message SET leased_until = available_at, available_at = statement_timestamp()
    WHERE receipt IS NOT NULL AND available_at > statement_timestamp()
    RETURNING id, queue_id, leased_until
)
INSERT INTO queues_lease (queue_id, until, message_ids)
SELECT queue_id, leased_until, array_agg(id ORDER BY id) FROM moved GROUP BY queue_id, leased_until
"""

# The way back: a live lease's end is available_at again; an ended one (NULL or past) leaves it alone.
UNCARRY_LEASES = "UPDATE queues_message SET available_at = leased_until WHERE leased_until > statement_timestamp()"


class Migration(migrations.Migration):
    dependencies = [("queues", "0021_claim_scan_functions")]

    operations = [
        migrations.CreateModel(
            name="LeaseBatch",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("queue_id", models.BigIntegerField()),
                ("until", models.DateTimeField()),
                ("message_ids", queues.fields.BigIntArrayField()),
            ],
            options={"db_table": "queues_lease"},
        ),
        migrations.AddIndex(
            model_name="leasebatch",
            index=models.Index(fields=["queue_id", "until"], name="queues_lease_live"),
        ),
        migrations.AddField(
            model_name="message",
            name="leased_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunSQL(CARRY_LEASES, UNCARRY_LEASES),
        migrations.RemoveIndex(model_name="message", name="queues_msg_avail"),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["queue", "available_at"], name="queues_msg_avail"),
        ),
        # 0002_table_tuning set 80.
        migrations.RunSQL(
            "ALTER TABLE queues_message SET (fillfactor = 50)", "ALTER TABLE queues_message SET (fillfactor = 80)"
        ),
        migrations.RunSQL(CLAIM_READY, OLD_CLAIM_READY),
        migrations.RunSQL(READY, OLD_READY),
    ]
