"""A message's queue is checked once per statement and queue, not once per row.

``queues_message.queue_id`` was a foreign key. PostgreSQL checks a foreign key row by row: each message a
statement inserts (or moves to another queue) ran its own query that finds the queue and locks it
``FOR KEY SHARE``. In a send of 100 messages, those 100 checks of the same queue row cost a third of the
statement (``bench/levers.py``: 100 per statement, 0.68x the raw floor with the foreign key, 0.92x without).

The constraint goes; three triggers keep its promise, that no message is ever in a queue that does not
exist:

- After each statement that inserts messages, ``queues_message_queue_check`` locks each queue the new rows
  name, once, ``FOR KEY SHARE`` (what the foreign key's check locked, once per row), and raises
  ``foreign_key_violation`` (constraint ``queues_message_queue``) if one does not exist. The lock lasts
  until the transaction ends, so a queue cannot be deleted under a send that has not committed.
- A statement that moves a message to another queue (dead-lettering, a move, a redrive) checks and locks
  the new queue the same way, per row (``queues_message_moved_check``). Moves are rare; a lease, which
  does not set ``queue_id``, never fires it.
- Deleting a queue that still has messages raises ``foreign_key_violation``, as the foreign key did
  (``queues_queue_messages_check``): delete its messages first, as ``delete_queue`` and Django's
  cascade do. Deleting a queue row waits for the ``FOR KEY SHARE`` locks of the sends in progress, and
  its check then sees their messages.

The foreign key was checked when the transaction committed (Django makes them ``DEFERRABLE INITIALLY
DEFERRED``); these checks run at the end of each statement, so a send into a missing queue fails at the
send, not at the commit.
"""

from django.db import migrations, models

# Lock the queue `{queue}` names against deletion, or raise if it does not exist: the one check, written
# into both trigger functions (a call of a shared PL/pgSQL function from them cost about a tenth of a
# single send: 1,940 against 2,138 sends a second, bare statement, six alternating rounds).
_LOCK_OR_RAISE = """
        PERFORM 1 FROM queues_queue WHERE id = {queue} FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'queue % does not exist', {queue}
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'queues_message_queue',
                      HINT = 'it was deleted, or never made: send to a queue that exists';
        END IF;"""

CHECK = f"""
CREATE FUNCTION queues_message_queue_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queue bigint;
BEGIN
    -- In id order, so two statements that fill the same queues lock them in one order.
    FOR queue IN SELECT DISTINCT queue_id FROM new_rows ORDER BY 1 LOOP{_LOCK_OR_RAISE.format(queue="queue")}
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER queues_message_queue_check AFTER INSERT ON queues_message
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION queues_message_queue_check();

CREATE FUNCTION queues_message_moved_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_LOCK_OR_RAISE.format(queue="NEW.queue_id")}
    RETURN NULL;
END
$$;

CREATE TRIGGER queues_message_moved_check AFTER UPDATE OF queue_id ON queues_message
    FOR EACH ROW WHEN (OLD.queue_id IS DISTINCT FROM NEW.queue_id) EXECUTE FUNCTION queues_message_moved_check();

CREATE FUNCTION queues_queue_messages_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM queues_message WHERE queue_id = OLD.id) THEN
        RAISE EXCEPTION 'queue % (%) still has messages', OLD.id, OLD.name
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'queues_message_queue',
                  HINT = 'delete its messages first (queues.delete_queue does)';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER queues_queue_messages_check AFTER DELETE ON queues_queue
    FOR EACH ROW EXECUTE FUNCTION queues_queue_messages_check();
"""

UNCHECK = """
DROP TRIGGER queues_queue_messages_check ON queues_queue;
DROP FUNCTION queues_queue_messages_check();
DROP TRIGGER queues_message_moved_check ON queues_message;
DROP FUNCTION queues_message_moved_check();
DROP TRIGGER queues_message_queue_check ON queues_message;
DROP FUNCTION queues_message_queue_check();
"""


class Migration(migrations.Migration):
    dependencies = [("queues", "0022_hot_lease")]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="queue",
            field=models.ForeignKey(
                db_constraint=False, db_index=False, on_delete=models.deletion.CASCADE, related_name="messages",
                to="queues.queue",
            ),
        ),
        migrations.RunSQL(CHECK, UNCHECK),
    ]
