"""The consumer side: the handler registry and the worker runtime behind ``mq_worker``.

Handlers raise :class:`Reject` to dead-letter a message at once (it can never succeed).
"""

from queues.worker.errors import Reject, WorkerConfigError

__all__ = ["Reject", "WorkerConfigError"]
