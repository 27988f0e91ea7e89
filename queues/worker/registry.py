"""Which function handles which queue.

A Django app registers handlers with the decorator::

    import queues

    @queues.handler("orders", retries=5, timeout=30, atomic=True)
    def handle_order(message: queues.Delivery) -> None:
        ...

or by dotted path in ``settings.MQADMIN["HANDLERS"] = {"orders": "shop.handlers.handle_order"}``.
A handler returns normally to ack and raises to nack (retried with backoff). ``async def``
handlers are supported. Handler modules are found by importing each installed app's
``handlers`` module (``autodiscover``), the way the admin finds ``admin.py``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.utils.module_loading import import_string, module_has_submodule

from queues import conf
from queues.engine import validate_name


@dataclass(frozen=True)
class HandlerSpec:
    """A registered handler and its options.

    ``retries``: receives allowed before dead-lettering (None: the queue's max receives); a delivery
    received more often (an earlier outcome was never recorded) is dead-lettered without running.
    ``backoff``: base seconds of the exponential backoff between attempts (with jitter).
    ``max_backoff``: cap of the backoff in seconds.
    ``timeout``: seconds after which a running handler is abandoned and its message nacked.
    ``atomic``: run inside ``transaction.atomic()`` and ack in the same transaction.
    ``decode``: called with the body before the handler runs; the handler gets a delivery whose body is
    its result. If it raises, the message can never succeed: it is dead-lettered at once with the reason.
    ``create_queue``: for a queue its owner creates on demand (a task queue of a backend with
    ``CREATE_QUEUES``), what creates it; a worker started before the queue exists calls it instead of
    refusing to start, so a worker and the first enqueue can come in either order.
    """

    queue: str
    func: Callable[..., Any]
    retries: int | None = None
    backoff: float = 1.0
    max_backoff: float = 300.0
    timeout: float | None = None
    atomic: bool = False
    decode: Callable[[Any], Any] | None = None
    create_queue: Callable[[], Any] | None = None

    @property
    def is_async(self) -> bool:
        """Whether the handler is an ``async def``."""
        return inspect.iscoroutinefunction(self.func)

    @property
    def name(self) -> str:
        """The handler's dotted path, for logs."""
        return f"{self.func.__module__}.{self.func.__qualname__}"


_registry: dict[str, HandlerSpec] = {}


def _check_options(
    queue: str, retries: Any, backoff: Any, max_backoff: Any, timeout: Any, atomic: Any, decode: Any = None
) -> None:
    validate_name(queue)
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 1):
        raise ValueError(f"retries must be a positive integer or None, got {retries!r}")
    for label, value in (("backoff", backoff), ("max_backoff", max_backoff)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{label} must be a number of seconds >= 0, got {value!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if not isinstance(atomic, bool):
        raise ValueError(f"atomic must be True or False, got {atomic!r}")
    if decode is not None and not callable(decode):
        raise ValueError(f"decode must be a callable taking the message body, got {decode!r}")


def register(
    queue: str,
    func: Callable[..., Any],
    *,
    retries: int | None = None,
    backoff: float = 1.0,
    max_backoff: float = 300.0,
    timeout: float | None = None,
    atomic: bool = False,
    decode: Callable[[Any], Any] | None = None,
    create_queue: Callable[[], Any] | None = None,
) -> HandlerSpec:
    """Register ``func`` as the handler of ``queue`` (replacing any earlier one) and return its spec."""
    _check_options(queue, retries, backoff, max_backoff, timeout, atomic, decode)
    if not callable(func):
        raise ValueError(f"handler for {queue!r} must be callable, got {func!r}")
    spec = HandlerSpec(queue, func, retries, float(backoff), float(max_backoff), timeout, atomic, decode,
                       create_queue)
    _registry[queue] = spec
    return spec


def handler(queue: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator form of :func:`register`; returns the function unchanged."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        register(queue, func, **options)
        return func

    return decorate


def unregister(queue: str) -> None:
    """Forget the handler of ``queue`` (tests use this)."""
    _registry.pop(queue, None)


def autodiscover() -> None:
    """Import ``<app>.handlers`` of every installed app and the dotted paths in settings."""
    for app in apps.get_app_configs():
        if module_has_submodule(app.module, "handlers"):
            importlib.import_module(f"{app.name}.handlers")
    for queue, path in conf.get("HANDLERS").items():
        if queue not in _registry:
            try:
                func = import_string(path)
            except ImportError as exc:
                raise ValueError(f"MQADMIN['HANDLERS'][{queue!r}] = {path!r} cannot be imported: {exc}") from None
            if isinstance(func, HandlerSpec):
                _registry[queue] = func
            elif queue not in _registry:  # importing its module may have registered it, with options
                register(queue, func)


def get_handler(queue: str) -> HandlerSpec | None:
    """The handler registered for ``queue``, or None."""
    return _registry.get(queue)


def all_handlers() -> dict[str, HandlerSpec]:
    """Every registered handler, by queue name."""
    return dict(_registry)
