"""A worker row can carry an operator's request to stop (``stop_requested_at``), read on each beat."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("queues", "0014_worker_held_receipts")]

    operations = [
        migrations.AddField(
            model_name="worker",
            name="stop_requested_at",
            field=models.DateTimeField(
                blank=True,
                help_text="Set when an operator asks this worker to stop; the worker reads it on its next beat, "
                "finishes what it holds and exits.",
                null=True,
            ),
        ),
    ]
