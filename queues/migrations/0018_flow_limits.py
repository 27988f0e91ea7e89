"""Flow limits: a queue's rate limit (N per period, burst), concurrency limit and per-group switch, and the
rows limited claims lock and update (``queues_flow``; see ``queues.engine.flow_sql``)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("queues", "0017_dead_letter_signatures"),
    ]

    operations = [
        migrations.AddField(
            model_name="queue",
            name="concurrency_limit",
            field=models.PositiveIntegerField(
                blank=True, help_text="Most messages of the queue in flight at once, across every worker.", null=True
            ),
        ),
        migrations.AddField(
            model_name="queue",
            name="limits_per_group",
            field=models.BooleanField(
                default=False, help_text="The limits apply to each group key separately (no group key: one group)."
            ),
        ),
        migrations.AddField(
            model_name="queue",
            name="rate_burst",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Most deliveries at once after a quiet spell; empty: one second's worth.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="queue",
            name="rate_limit",
            field=models.PositiveIntegerField(blank=True, help_text="Deliveries per rate period.", null=True),
        ),
        migrations.AddField(
            model_name="queue",
            name="rate_period",
            field=models.DurationField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="FlowLimit",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("group_key", models.CharField(blank=True, default="", max_length=128)),
                ("tokens", models.FloatField(default=0)),
                ("refilled_at", models.DateTimeField()),
                (
                    "leases",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="Leases granted through the limit: [{id, receipt, xid}, ...].",
                    ),
                ),
                ("taken", models.BigIntegerField(default=0)),
                (
                    "queue",
                    models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="queues.queue"
                    ),
                ),
            ],
            options={
                "db_table": "queues_flow",
                "constraints": [models.UniqueConstraint(fields=("queue", "group_key"), name="queues_flow_key")],
            },
        ),
    ]
