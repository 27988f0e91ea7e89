"""At most one running redrive per source queue: a partial unique index (see queues/engine/redrive.py).

Before this index two redrives of one queue could run side by side (``mq_redrive`` did not check);
such leftovers would make the index fail to build, so all but the newest running redrive of a queue
are marked failed first, with the reason.
"""

from django.db import migrations, models

FAIL_EXTRA_RUNNING = """
UPDATE queues_redrive r
SET state = 'failed', finished_at = statement_timestamp(),
    error = 'abandoned: another redrive of the same queue was running beside it (at most one may run now)'
WHERE r.state = 'running'
  AND EXISTS (SELECT 1 FROM queues_redrive n WHERE n.source_id = r.source_id AND n.state = 'running' AND n.id > r.id)
"""


class Migration(migrations.Migration):

    dependencies = [
        ('queues', '0011_handler_durations'),
    ]

    operations = [
        migrations.RunSQL(FAIL_EXTRA_RUNNING, reverse_sql=migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name='redrive',
            constraint=models.UniqueConstraint(
                condition=models.Q(('state', 'running')), fields=('source',), name='queues_redrive_one_running'
            ),
        ),
    ]
