"""Flow control: message expiry (``expires_at``, the queue's ``message_ttl`` and ``expiry_action``),
cancellation (``cancel_requested_at``), bounded queues (``max_length``, ``overflow``) and their counters."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('queues', '0018_flow_limits'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='cancel_requested_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='message',
            name='expires_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='queue',
            name='expiry_action',
            field=models.CharField(choices=[('drop', 'drop'), ('dead_letter', 'dead-letter')], db_default='drop', default='drop', help_text='What happens to an expired message: dropped, or moved to the dead-letter queue.', max_length=16),
        ),
        migrations.AddField(
            model_name='queue',
            name='max_length',
            field=models.PositiveIntegerField(blank=True, help_text='Most live messages the queue holds; empty: unbounded.', null=True),
        ),
        migrations.AddField(
            model_name='queue',
            name='message_ttl',
            field=models.DurationField(blank=True, help_text='Default time to live of a message once available; empty: messages never expire.', null=True),
        ),
        migrations.AddField(
            model_name='queue',
            name='overflow',
            field=models.CharField(choices=[('reject', 'reject'), ('drop_oldest', 'drop oldest')], db_default='reject', default='reject', help_text='What a send to a full queue does: refused, or the oldest waiting messages make room.', max_length=16),
        ),
        migrations.AddField(
            model_name='queuecounter',
            name='cancelled',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='queuecounter',
            name='expired',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='queuecounter',
            name='overflowed',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('expires_at__isnull', False)), fields=['expires_at'], name='queues_msg_expiry'),
        ),
    ]
