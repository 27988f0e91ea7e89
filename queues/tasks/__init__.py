"""A ``django.tasks`` backend that runs ``@task`` functions on mqadmin workers.

Configure it in ``settings.TASKS``::

    TASKS = {
        "default": {
            "BACKEND": "queues.tasks.QueuesBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"QUEUE_PREFIX": "tasks.", "BACKOFF": 2.0},
        }
    }

and run ``python manage.py mq_worker tasks.default tasks.emails``.

How it fits together (each module imports only those above it):

- :mod:`~queues.tasks.options`: the backend's options, their defaults and limits;
- :mod:`~queues.tasks.checks`: the system checks of one backend, which its ``check()`` runs;
- :mod:`~queues.tasks.results`: the result rows and their named transitions (``start``, ``succeed``,
  ``retry``, ``fail``, ``release``, ``lose``);
- :mod:`~queues.tasks.backend`: :class:`QueuesBackend` (``enqueue`` writes the result row and sends
  ``{"task_result_id": ...}`` to the mqadmin queue ``<QUEUE_PREFIX><queue_name>`` in one transaction
  that joins the caller's; ``priority`` becomes the message priority, ``run_after`` its delay), the
  configured backends, and the pruning of old results;
- :mod:`~queues.tasks.executor`: :func:`run_task_message`, the handler that workers call for every
  task queue (registered by ``queues/handlers.py`` through :func:`register_handlers`);
- :mod:`~queues.tasks.periodic`: ``@periodic(cron=...)`` above a ``@task``: a periodic schedule
  (:mod:`queues.schedules`).

The names below are the public ones (settings name ``queues.tasks.QueuesBackend``; stored errors
name ``queues.tasks.TaskLost`` and ``queues.tasks.InvalidTaskArguments``).
"""

from __future__ import annotations

from queues.tasks.backend import QueuesBackend, prune_results, queues_backends
from queues.tasks.executor import register_handlers, run_task_message, worker_id
from queues.tasks.options import MAX_DEFER_SECONDS, OPTION_DEFAULTS
from queues.tasks.periodic import periodic
from queues.tasks.results import FINAL_STATUSES, InvalidTaskArguments, TaskLost

__all__ = [
    "FINAL_STATUSES",
    "MAX_DEFER_SECONDS",
    "OPTION_DEFAULTS",
    "InvalidTaskArguments",
    "QueuesBackend",
    "TaskLost",
    "prune_results",
    "periodic",
    "queues_backends",
    "register_handlers",
    "run_task_message",
    "worker_id",
]
