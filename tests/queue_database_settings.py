"""The demo site's settings with mqadmin on a database of its own (``MQADMIN_QUEUE_DB``), for child processes."""

import os

from mqadmin.settings import *  # noqa: F403

DATABASES["queues"] = {**DATABASES["default"], "NAME": os.environ["MQADMIN_QUEUE_DB"]}  # noqa: F405
MQADMIN = {"DATABASE": "queues"}
DATABASE_ROUTERS = ["queues.routers.QueuesRouter"]
