"""OpenTelemetry: a trace runs from the code that sends, through a real worker process, into the handler."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import queues
from tests.conftest import ROOT, wait_for

HANDLERS = {"pay": "tests.worker.traced_handlers.charge"}


@pytest.fixture
def exporter(monkeypatch) -> InMemorySpanExporter:
    """This process traced into memory; the global provider is restored afterwards."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    return memory


def _spans(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _hex(value: int) -> str:
    return f"0x{value:032x}"


@pytest.mark.slow
def test_trace_runs_from_the_sender_through_the_worker_into_the_handler(
    exporter, start_worker, make_queue, scratch, worker_env
):
    make_queue("pay")
    with trace.get_tracer("tests").start_as_current_span("POST /orders/") as request_span:
        ok = queues.send("pay", {"order": 1}, headers={"tenant": "acme"})
        bad = queues.send("pay", {"order": 2, "fail": True})
    trace_file = scratch / "spans.jsonl"
    env = {**worker_env, "MQ_TRACE_FILE": str(trace_file)}
    worker = start_worker("pay", env=env, HANDLERS=HANDLERS)

    def processed() -> list[dict]:
        spans = _spans(trace_file)
        return spans if sum(s["name"] == "process pay" for s in spans) >= 2 else []

    spans = worker.wait_until(processed)
    sends = [s for s in exporter.get_finished_spans() if s.name == "send pay"]
    assert len(sends) == 2
    trace_id = _hex(request_span.get_span_context().trace_id)
    assert {_hex(s.context.trace_id) for s in sends} == {trace_id}
    assert sends[0].kind == trace.SpanKind.PRODUCER
    assert sends[0].attributes["messaging.system"] == "mqadmin"
    assert sends[0].attributes["messaging.destination.name"] == "pay"
    assert sends[0].attributes["messaging.operation.type"] == "send"
    assert sends[0].attributes["messaging.message.id"] == str(ok)
    send_ids = {s.attributes["messaging.message.id"]: f"0x{s.context.span_id:016x}" for s in sends}

    by_message = {s["attributes"]["messaging.message.id"]: s for s in spans if s["name"] == "process pay"}
    for message_id in (ok, bad):
        process = by_message[str(message_id)]
        assert process["context"]["trace_id"] == trace_id
        assert process["parent_id"] == send_ids[str(message_id)]  # continues the producer span
        assert process["kind"] == "SpanKind.CONSUMER"
        assert process["attributes"]["messaging.operation.type"] == "process"
    charges = [s for s in spans if s["name"] == "charge card"]
    assert {c["parent_id"] for c in charges} == {by_message[str(ok)]["context"]["span_id"],
                                                 by_message[str(bad)]["context"]["span_id"]}
    failed = by_message[str(bad)]
    assert failed["status"]["status_code"] == "ERROR"
    assert any(e["name"] == "exception" and "card declined" in e["attributes"]["exception.message"]
               for e in failed["events"])
    assert by_message[str(ok)]["status"]["status_code"] == "UNSET"
    receives = [s for s in spans if s["name"] == "receive pay"]
    assert receives and all(s["attributes"]["messaging.batch.message_count"] >= 1 for s in receives)
    linked = {link["context"]["span_id"] for s in receives for link in s["links"]}
    assert set(send_ids.values()) <= linked  # the batch receive links each message's producer span


def test_a_batch_send_carries_one_producer_context_into_every_message(exporter, make_queue):
    make_queue("pay")
    ids = queues.send_batch("pay", [{"n": 1}, queues.Outgoing(body={"n": 2}, headers={"k": "v"})])
    [span] = [s for s in exporter.get_finished_spans() if s.name == "send pay"]
    assert span.attributes["messaging.batch.message_count"] == 2
    got = queues.receive("pay", max_messages=2)
    assert sorted(d.id for d in got) == sorted(ids)
    want = f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}"
    assert [d.headers["traceparent"].rsplit("-", 1)[0] for d in got] == [want, want]
    assert [d.headers.get("k") for d in sorted(got, key=lambda d: d.id)] == [None, "v"]


def test_tasks_carry_the_trace_of_the_code_that_enqueued_them(exporter, transactional_db):
    from tests.tasks.tasks import add

    with trace.get_tracer("tests").start_as_current_span("enqueue") as outer:
        add.enqueue(1, 2)
    [message] = [d for name in queues.list_queues() for d in queues.peek(name.name, limit=5)
                 if "traceparent" in d.headers]
    assert message.headers["traceparent"].split("-")[1] == f"{outer.get_span_context().trace_id:032x}"


def test_without_a_tracer_provider_nothing_is_added(make_queue):
    make_queue("pay")
    queues.send("pay", {"n": 1}, headers={"k": "v"})
    [delivery] = queues.receive("pay")
    assert delivery.headers == {"k": "v"}


def test_without_opentelemetry_installed_sends_work_and_nothing_is_imported(subprocess_env, make_queue):
    make_queue("pay")
    script = (
        "import sys; sys.modules['opentelemetry'] = None\n"  # as if the extra were not installed
        "import django; django.setup()\n"
        "import queues; from queues import tracing\n"
        "assert not tracing.active()\n"
        "queues.send('pay', {'n': 1})\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry') and sys.modules[m] is not None]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=subprocess_env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
    wait_for(lambda: queues.queue_stats("pay").ready == 1)
