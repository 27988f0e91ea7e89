"""The worker row's list of the receipts it holds is called what it is: ``held_receipts`` (it was
``in_flight_ids``, though it never held message ids)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("queues", "0013_queue_config_notify")]

    operations = [migrations.RenameField(model_name="worker", old_name="in_flight_ids", new_name="held_receipts")]
