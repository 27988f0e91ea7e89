"""A worker process with OpenTelemetry configured, as a host would: spans go to ``$MQ_TRACE_FILE``.

Imported by the worker through ``MQADMIN["HANDLERS"]`` (tests/worker/test_tracing.py); importing it sets
the process's tracer provider, with a simple span processor writing one JSON span per line.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import queues

_out = open(os.environ["MQ_TRACE_FILE"], "a", buffering=1)
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(
    ConsoleSpanExporter(out=_out, formatter=lambda span: span.to_json(indent=None) + "\n")
))
trace.set_tracer_provider(_provider)


def charge(message: queues.Delivery) -> None:
    """A handler with a span of its own, as instrumented code inside a handler would make."""
    with trace.get_tracer("tests").start_as_current_span("charge card"):
        if message.body.get("fail"):
            raise RuntimeError("card declined")
