"""Message bodies become ``json`` (the text as sent) instead of ``jsonb`` (a normalised parse).

Existing rows keep their current text: jsonb's rendering of what was sent (the original key order of
those is already gone). The ALTER rewrites the table under an exclusive lock: on a big backlog, run it
when the queues are quiet (about 1 s per 100,000 messages on the test machine).
"""

from django.db import migrations

import queues.fields


class Migration(migrations.Migration):

    dependencies = [
        ("queues", "0008_audit_actor_any_database"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE queues_message ALTER COLUMN body TYPE json USING body::json",
                    reverse_sql="ALTER TABLE queues_message ALTER COLUMN body TYPE jsonb USING body::jsonb",
                ),
            ],
            state_operations=[
                migrations.AlterField(model_name="message", name="body", field=queues.fields.JSONTextField()),
            ],
        ),
    ]
