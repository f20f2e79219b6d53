"""The app module diskcache worker processes import in the cross-process test: the conformance kit's
callbacks, and, where ``BGCB_OTEL_TEST_SPANS`` names a file and no SDK is set yet (a worker process,
not the test process), a tracer provider that appends every span there as a line of JSON."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from bgcb_testing.conformance import callbacks  # noqa: F401  (registers the callbacks the test submits)

ENV_SPANS = "BGCB_OTEL_TEST_SPANS"


class FileSpanExporter(SpanExporter):
    """Appends each span's JSON on one line: the test process reads what another process exported."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                out.write(span.to_json(indent=None) + "\n")
        return SpanExportResult.SUCCESS


if os.environ.get(ENV_SPANS) and not isinstance(trace.get_tracer_provider(), TracerProvider):
    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(os.environ[ENV_SPANS])))
    trace.set_tracer_provider(_provider)
