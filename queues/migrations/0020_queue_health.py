"""Per-queue health thresholds (queues/queue_health.py): four nullable durations, NULL for the default."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("queues", "0019_expiry_cancel_bounded")]

    operations = [
        migrations.AddField(
            model_name="queue", name="health_backing_up_after",
            field=models.DurationField(
                blank=True, null=True, help_text="Oldest ready message older than this: backing up. Empty: 2 min."),
        ),
        migrations.AddField(
            model_name="queue", name="health_stalled_after",
            field=models.DurationField(
                blank=True, null=True,
                help_text="Ready work this old with no live worker, or nothing acked or failed for this long: "
                          "stalled. Empty: 5 min."),
        ),
        migrations.AddField(
            model_name="queue", name="health_dead_letter_window",
            field=models.DurationField(
                blank=True, null=True,
                help_text="More dead letters now than this long ago: dead letters growing. Empty: 15 min."),
        ),
        migrations.AddField(
            model_name="queue", name="health_retention_warning",
            field=models.DurationField(
                blank=True, null=True,
                help_text="Oldest message deleted by retention within this: retention risk. Empty: 1 day."),
        ),
    ]
