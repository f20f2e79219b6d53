"""Fixtures of the OpenTelemetry tests: one SDK tracer provider for the test process, spans kept in memory.

The global tracer provider can be set only once per process, so the session sets it (or adds to the
SDK provider already set) and each test finds its own spans by job id and trace id, never by position:
a worker thread of an earlier test may still end a span meanwhile.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import dash
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_spans import Spans

from bgcb_testing import DashClient, LiveServer


@pytest.fixture(scope="session")
def spans() -> Iterator[Spans]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        pytest.skip("another tracer provider than the SDK's was set in this process before these tests")
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield Spans(exporter)
    processor.shutdown()


@pytest.fixture(scope="session", params=["flask", "fastapi"])
def otel_server(request: pytest.FixtureRequest, spans: Spans) -> Iterator[LiveServer]:
    """The traced test app over real HTTP (werkzeug for Flask, uvicorn for FastAPI)."""
    if request.param == "fastapi":
        pytest.importorskip("fastapi")
        pytest.importorskip("uvicorn")
        if "backend" not in inspect.signature(dash.Dash).parameters:
            pytest.skip("Dash serves FastAPI from 4.4 on")
    import otel_app

    server = LiveServer(otel_app.build(request.param))
    yield server
    server.stop()


@pytest.fixture
def otel_client(otel_server: LiveServer) -> DashClient:
    return DashClient.http(otel_server.url).load()
