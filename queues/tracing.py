"""OpenTelemetry traces for sends and handlers (the optional extra ``otel``: ``django-mqadmin[otel]``).

When the OpenTelemetry API is importable and the application has set a tracer provider, a send starts
a PRODUCER span and puts its context in the message headers (``traceparent``, ``tracestate``: W3C
Trace Context, through the globally configured propagator); a worker continues it with a CONSUMER
span around each handler, so one trace runs from the HTTP request that sent a message through the
handler and the database queries it makes. Each claim of a batch gets a ``receive`` span that links
the producer contexts of its messages. Names and attributes follow the OpenTelemetry messaging
semantic conventions (``messaging.system``, ``messaging.destination.name``,
``messaging.operation.type``, ``messaging.message.id``, ``messaging.batch.message_count``).

Without the API, or with the API but no tracer provider configured, every function here returns at
once: the only cost on the hot path is one boolean test per call (see docs/observability.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from queues import __version__

try:  # the extra is optional: without it nothing else of OpenTelemetry is imported
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by installs without the extra
    trace = None

SYSTEM = "mqadmin"
TRACER_NAME = "queues"


def active() -> bool:
    """Whether traces are recorded: the API is installed and a real tracer provider is set."""
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _tracer() -> Any:
    return trace.get_tracer(TRACER_NAME, __version__)


def _with_context(headers: Mapping[str, str] | None) -> dict[str, str]:
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def traced_send[F: Callable[..., Any]](func: F) -> F:
    """Wrap ``send``: a PRODUCER span around it, its context injected into the message's headers."""

    @functools.wraps(func)
    def send(queue: str, body: Any, *args: Any, **kwargs: Any) -> Any:
        if not active():
            return func(queue, body, *args, **kwargs)
        with _tracer().start_as_current_span(
            f"send {queue}", kind=SpanKind.PRODUCER,
            attributes={"messaging.system": SYSTEM, "messaging.destination.name": queue,
                        "messaging.operation.type": "send", "messaging.operation.name": "send"},
        ) as span:
            kwargs["headers"] = _with_context(kwargs.get("headers"))
            message_id = func(queue, body, *args, **kwargs)
            span.set_attribute("messaging.message.id", str(message_id))
            return message_id

    return send  # type: ignore[return-value]


def traced_send_batch[F: Callable[..., Any]](func: F) -> F:
    """Wrap ``send_batch``: one PRODUCER span, its context injected into every message's headers."""

    @functools.wraps(func)
    def send_batch(queue: str, messages: Any, *args: Any, **kwargs: Any) -> Any:
        if not active():
            return func(queue, messages, *args, **kwargs)
        # deferred: the engine imports this module, and queues.engine.types loads the engine package
        from queues.engine.types import Outgoing

        items = list(messages)
        with _tracer().start_as_current_span(
            f"send {queue}", kind=SpanKind.PRODUCER,
            attributes={"messaging.system": SYSTEM, "messaging.destination.name": queue,
                        "messaging.operation.type": "send", "messaging.operation.name": "send_batch",
                        "messaging.batch.message_count": len(items)},
        ):
            carried = []
            for item in items:
                if not isinstance(item, Outgoing):
                    carried.append(Outgoing(body=item, headers=_with_context(None)))
                elif item.headers is None or isinstance(item.headers, Mapping):
                    carried.append(dataclasses.replace(item, headers=_with_context(item.headers)))
                else:
                    carried.append(item)  # not a mapping: the engine refuses it with its own error
            return func(queue, carried, *args, **kwargs)

    return send_batch  # type: ignore[return-value]


def record_receive(queue: str, deliveries: Sequence[Any]) -> None:
    """A ``receive`` span for one claimed batch, linked to the producer span of each of its messages."""
    if not deliveries or not active():
        return
    links = []
    for delivery in deliveries:
        parent = trace.get_current_span(propagate.extract(delivery.headers or {})).get_span_context()
        if parent.is_valid:
            links.append(Link(parent, {"messaging.message.id": str(delivery.id)}))
    span = _tracer().start_span(
        f"receive {queue}", kind=SpanKind.CONSUMER, links=links,
        attributes={"messaging.system": SYSTEM, "messaging.destination.name": queue,
                    "messaging.operation.type": "receive", "messaging.operation.name": "receive",
                    "messaging.batch.message_count": len(deliveries)},
    )
    span.end()


@contextlib.contextmanager
def _process(queue: str, delivery: Any, handler: str) -> Iterator[None]:
    parent = propagate.extract(delivery.headers or {})
    token = otel_context.attach(parent)
    try:
        with _tracer().start_as_current_span(
            f"process {queue}", kind=SpanKind.CONSUMER, record_exception=False, set_status_on_exception=False,
            attributes={"messaging.system": SYSTEM, "messaging.destination.name": queue,
                        "messaging.operation.type": "process", "messaging.operation.name": "process",
                        "messaging.message.id": str(delivery.id),
                        "messaging.message.delivery_count": delivery.receive_count,
                        "code.function.name": handler},
        ) as span:
            try:
                yield
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
    finally:
        otel_context.detach(token)


def process_span(queue: str, delivery: Any, handler: str) -> contextlib.AbstractContextManager[None]:
    """The CONSUMER span around one handler run, continuing the trace in the message's headers."""
    if not active():
        return contextlib.nullcontext()
    return _process(queue, delivery, handler)
