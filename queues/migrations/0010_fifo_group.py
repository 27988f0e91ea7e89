"""Fifo group leases (``queues_group``): the per-group "in flight" marker that fifo claims lock.

Its rows are updated at every fifo claim and ack but never in an indexed column, so a low
fillfactor keeps those updates HOT; vacuum runs on a row count, as for the other hot tables.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('queues', '0009_message_body_json'),
    ]

    operations = [
        migrations.CreateModel(
            name='FifoGroup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('group_key', models.CharField(max_length=128)),
                ('message_id', models.BigIntegerField(blank=True, null=True)),
                ('until', models.DateTimeField()),
                ('queue', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='queues.queue')),
            ],
            options={
                'db_table': 'queues_group',
                'constraints': [models.UniqueConstraint(fields=('queue', 'group_key'), name='queues_group_key')],
            },
        ),
        migrations.RunSQL(
            "ALTER TABLE queues_group SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.0,"
            " autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0)",
            "ALTER TABLE queues_group RESET (fillfactor, autovacuum_vacuum_scale_factor,"
            " autovacuum_vacuum_threshold, autovacuum_vacuum_cost_delay)",
        ),
    ]
