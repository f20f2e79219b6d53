"""The observer in-process: through bgcb's lifecycle on the testing backend (the global tracer provider),
and its hooks called directly on an observer with a tracer provider of its own."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Iterator
from importlib import metadata

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from otel_spans import Spans

import bgcb
from bgcb import observers, provider
from bgcb.jobs import Job, Outcome, State
from bgcb_opentelemetry import OpenTelemetryObserver
from bgcb_opentelemetry.attributes import VALUE_CHARS, update_event
from bgcb_opentelemetry.observer import NOT_QUEUED
from bgcb_testing import TestingBackend
from bgcb_testing.conformance import callbacks


class BrokenStore(TestingBackend):
    """The testing backend, whose store refuses every job."""

    @bgcb.hookimpl
    def bgcb_enqueue(self, job_id, job, data, timeout, ttl, lane, priority, cap) -> None:  # type: ignore[override]
        raise ConnectionError("the store is down")


@pytest.fixture
def backend() -> Iterator[provider.Backend]:
    made = provider.Backend.from_plugin("otel", TestingBackend(), {"workers": 1})
    yield made
    made.close()


@pytest.fixture
def installed() -> OpenTelemetryObserver:
    found = observers.manager().get_plugin("opentelemetry")
    assert isinstance(found, OpenTelemetryObserver), "bgcb-opentelemetry is not registered by its entry point"
    return found


@pytest.fixture
def own() -> tuple[OpenTelemetryObserver, InMemorySpanExporter]:
    """An observer on a tracer provider of its own (not registered: the test calls its hooks)."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetryObserver(tracer_provider=tracer_provider), exporter


def _kit_job(name: str, arg: object, **fields: object) -> Job:
    return Job(callback=callbacks.key(name), args=[arg], progress=name == "progress", **fields)  # type: ignore[arg-type]


def _end(backend: provider.Backend, job_id: str) -> State:
    deadline = time.monotonic() + 10
    while (state := backend.status(job_id).state).active:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.01)
    return state


def test_a_job_submitted_outside_any_request_starts_its_own_trace(backend, spans: Spans, installed) -> None:
    job_id = backend.submit(_kit_job("progress", 2, owner="alice"))
    assert _end(backend, job_id) is State.SUCCEEDED
    (submit,) = spans.of_job(job_id, "bgcb submit")
    (ran,) = spans.wait(lambda: spans.of_job(job_id, "bgcb run"), "the run span")
    assert submit.parent is None and ran.parent.span_id == submit.context.span_id
    assert submit.attributes["bgcb.owner"] == ran.attributes["bgcb.owner"] == "alice"
    assert submit.attributes["messaging.operation.type"] == "send" and ran.attributes["messaging.operation.type"] == "process"
    assert ran.instrumentation_scope.name == "bgcb"
    assert ran.instrumentation_scope.version == metadata.version("bgcb-opentelemetry")
    assert [e.attributes["bgcb.progress"] for e in ran.events if e.name == "progress"] == ["[0,2]", "[1,2]"]
    assert not installed._submits and not installed._runs, "spans held after the job ended"


def _submit_to_a_broken_store() -> None:
    broken = provider.Backend.from_plugin("otel-broken", BrokenStore(), {"workers": 1})
    try:
        broken.submit(_kit_job("echo", "never stored"))
    except ConnectionError:
        pass
    finally:
        broken.close()


def test_a_job_the_store_refused_ends_its_submit_span_as_an_error(backend, spans: Spans, installed) -> None:
    """``bgcb_job_submitted`` never comes when the store fails: the span ends as an error, at the time
    its job was dropped, when the next job is submitted."""
    before = len(spans.all())
    _submit_to_a_broken_store()
    gc.collect()
    dropped_by = time.time_ns()
    assert not installed._submits, "the span of the refused job is still held"
    time.sleep(0.01)
    job_id = backend.submit(_kit_job("echo", "stored"))
    refused = [s for s in spans.all()[before:] if s.name.startswith("bgcb submit") and "bgcb.job_id" not in s.attributes]
    assert len(refused) == 1 and refused[0].end_time <= dropped_by
    assert refused[0].status.status_code is StatusCode.ERROR and refused[0].status.description == NOT_QUEUED
    assert _end(backend, job_id) is State.SUCCEEDED and spans.of_job(job_id, "bgcb submit")


def test_ends_away_from_the_run_are_spans_in_the_jobs_trace(own) -> None:
    observer, exporter = own
    job = Job(callback="k", args=[])
    job.carry.update(observer.bgcb_job_carry(job=job) or {})
    observer.bgcb_job_submitted(job_id="j1", job=job)
    observer.bgcb_job_finished(job_id="j1", job=job, outcome=Outcome.lost("its worker died"), state=State.LOST, seconds=1.0)
    submit, end = exporter.get_finished_spans()
    assert end.name == "bgcb end k" and end.parent.span_id == submit.context.span_id
    assert end.status.status_code is StatusCode.ERROR and end.status.description == "its worker died"
    assert end.attributes["bgcb.state"] == "lost" and end.attributes["bgcb.job_id"] == "j1"
    with observer.bgcb_job_running(job_id="j1", job=job):  # the run is here: its own span tells how it ended
        observer.bgcb_job_finished(job_id="j1", job=job, outcome=Outcome.failure("x"), state=State.FAILED, seconds=1.0)
    assert [s.name for s in exporter.get_finished_spans()] == ["bgcb submit k", "bgcb end k", "bgcb run k"]


def test_a_run_carries_the_requests_baggage_and_a_job_without_context_is_a_root(own) -> None:
    observer, exporter = own
    job = Job(callback="k", args=[])
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        job.carry.update(observer.bgcb_job_carry(job=job) or {})
    finally:
        context.detach(token)
    seen: dict[str, object] = {}

    def worker() -> None:  # a thread of its own: nothing of the request's context but what was carried
        with observer.bgcb_job_running(job_id="j2", job=job) as span:
            seen["baggage"] = baggage.get_baggage("tenant")
            seen["current"] = trace.get_current_span() is span
        with observer.bgcb_job_running(job_id="j3", job=Job(callback="k", args=[])):
            pass

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert seen == {"baggage": "acme", "current": True}
    runs = [s for s in exporter.get_finished_spans() if s.name == "bgcb run k"]
    assert [s.kind for s in runs] == [SpanKind.CONSUMER, SpanKind.CONSUMER]
    assert runs[0].parent is not None and runs[1].parent is None


def test_without_an_sdk_nothing_is_carried_or_held() -> None:
    observer = OpenTelemetryObserver(tracer_provider=trace.NoOpTracerProvider())
    job = Job(callback="k", args=[])
    assert observer.bgcb_job_carry(job=job) is None and not observer._submits
    with observer.bgcb_job_running(job_id="j4", job=job):
        observer.bgcb_job_update(job_id="j4", job=job, update={"type": "progress", "value": [1]})
        observer.bgcb_job_ran(job_id="j4", job=job, outcome=Outcome.of_value(1), state=State.SUCCEEDED)
    assert not observer._runs


def test_update_events_stay_small_and_progress_values_can_be_left_out(monkeypatch) -> None:
    name, attrs = update_event({"type": "progress", "value": ["x" * 1000]})
    assert name == "progress" and len(attrs["bgcb.progress"]) == VALUE_CHARS and attrs["bgcb.progress"].endswith("…")
    pattern_id = json.dumps({"index": 1, "type": "card"})
    name, attrs = update_event({"type": "props", "id": pattern_id, "props": {"figure": {"data": [1] * 1000}, "title": "t"}})
    assert name == "set_props" and attrs == {"bgcb.component_id": pattern_id, "bgcb.props": "figure,title"}
    monkeypatch.setenv("BGCB_OTEL_PROGRESS_VALUES", "0")
    assert update_event({"type": "progress", "value": ["secret"]}) == ("progress", {})


def test_a_run_in_a_diskcache_worker_process_joins_the_submitting_trace(tmp_path, monkeypatch, spans: Spans) -> None:
    """Across processes: the worker exports its run span to a file; its parent is the submit span here."""
    pytest.importorskip("bgcb_diskcache")
    exported = tmp_path / "spans.jsonl"
    monkeypatch.setenv("BGCB_OTEL_TEST_SPANS", str(exported))  # the pool process inherits it
    import otel_pool_app  # noqa: F401  (the kit's callbacks, registered here as in the worker)

    backend = provider.load("diskcache", fresh=True, directory=str(tmp_path / "queue"), workers=1, app="otel_pool_app")
    try:
        job_id = backend.submit(_kit_job("progress", 2))
        assert _end_within(backend, job_id, 45) is State.SUCCEEDED
    finally:
        backend.close()

    def run_span() -> dict | None:
        lines = exported.read_text(encoding="utf-8").splitlines() if exported.exists() else []
        found = [s for s in map(json.loads, lines) if s["attributes"].get("bgcb.job_id") == job_id]
        return found[0] if found else None

    ran = spans.wait(run_span, "the worker's run span in the file", timeout=5)
    (submit,) = spans.of_job(job_id, "bgcb submit")
    assert ran["name"].startswith("bgcb run") and ran["kind"] == "SpanKind.CONSUMER"
    assert ran["context"]["trace_id"] == f"0x{submit.context.trace_id:032x}"
    assert ran["parent_id"] == f"0x{submit.context.span_id:016x}"
    assert [e["name"] for e in ran["events"]] == ["progress", "progress"] and ran["status"]["status_code"] == "OK"
    assert not spans.of_job(job_id, "bgcb run"), "the run span came from this process, not the worker"


def _end_within(backend: provider.Backend, job_id: str, seconds: float) -> State:
    deadline = time.monotonic() + seconds
    while (state := backend.status(job_id).state).active:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)
    return state
