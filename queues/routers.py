"""Put mqadmin's tables on their own database: ``MQADMIN = {"DATABASE": "queues"}`` plus this router.

    DATABASE_ROUTERS = ["queues.routers.QueuesRouter"]

Every model of the ``queues`` app is read, written and migrated on that alias; nothing else is
migrated there. The engine uses the alias directly; the router is what points the ORM (dashboard,
admin, ``django.tasks`` results) at the same place. Run ``manage.py migrate --database=queues`` as well
as the plain ``migrate`` (which creates mqadmin's permissions on the default database).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from queues import conf

APP_LABEL = "queues"


class QueuesRouter:
    """Routes the ``queues`` app to ``MQADMIN["DATABASE"]``; says nothing about other apps."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return conf.database_alias() if model._meta.app_label == APP_LABEL else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return conf.database_alias() if model._meta.app_label == APP_LABEL else None

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        # An audit row names its actor, a user on the default database (the column has no constraint).
        if APP_LABEL in (obj1._meta.app_label, obj2._meta.app_label):
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        alias = conf.database_alias()
        if app_label == APP_LABEL:
            return db == alias
        if db == alias and alias != "default":
            return False  # the queue database holds mqadmin's tables only
        return None
