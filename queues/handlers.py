"""The queues app's own handlers, found by ``queues.worker.registry.autodiscover``.

Every task queue of every ``queues.tasks.QueuesBackend`` in ``settings.TASKS`` gets the task
executor, so ``mq_worker tasks.default`` runs ``@task`` functions enqueued on the "default" queue.
"""

from __future__ import annotations

from queues.tasks import register_handlers

register_handlers()
