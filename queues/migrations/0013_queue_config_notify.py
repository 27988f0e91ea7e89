"""A queue's settings changed anywhere reach running workers at once.

After an UPDATE that changes a queue's row (the dashboard, ``mq_queue``, ``queues.update_queue``,
pause, resume), a trigger sends ``config:<queue id>`` on the channel senders wake receivers on
(``queues.engine.sql.NOTIFY_CHANNEL``). The worker's LISTEN thread turns it into a re-read of that
queue's settings (``queues.engine.notify``); older listeners skip a payload that is not a queue id.
Nothing on the hot path updates ``queues_queue``, so the trigger costs nothing there.
"""

from django.db import migrations

CREATE = """
CREATE FUNCTION queues_queue_config_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mqadmin', 'config:' || NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER queues_queue_config_notify AFTER UPDATE ON queues_queue
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION queues_queue_config_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS queues_queue_config_notify ON queues_queue;
DROP FUNCTION IF EXISTS queues_queue_config_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("queues", "0012_one_running_redrive")]

    operations = [migrations.RunSQL(CREATE, DROP)]
