"""The consumer side: the handler registry and the worker process behind ``mq_worker``.

- :mod:`~queues.worker.registry`: which function handles which queue (``@queues.handler``);
- :mod:`~queues.worker.config`: :class:`~queues.worker.config.WorkerConfig`, one field per ``mq_worker`` option;
- :mod:`~queues.worker.runtime`: :class:`~queues.worker.runtime.WorkerProcess`, the process (claims,
  watchers, beat, shutdown), with its handler side (:mod:`~queues.worker.handling`) and settling side
  (:mod:`~queues.worker.settling`) in files of their own, and what they share in :mod:`~queues.worker.items`;
- :mod:`~queues.worker.outcomes`: what a failed attempt means for its message (pure functions);
- :mod:`~queues.worker.fleet`: heartbeat rows, reaping dead workers, deleting old rows;
- :mod:`~queues.worker.resilience`: per-thread connection care and outage logging.

Handlers raise :class:`Reject` to dead-letter a message at once (it can never succeed), and
:class:`Retry` to choose when their message is tried again.
"""

from queues.worker.errors import Reject, Retry, WorkerConfigError

__all__ = ["Reject", "Retry", "WorkerConfigError"]
