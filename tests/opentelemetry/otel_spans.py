"""What the OpenTelemetry tests look for in the spans the test process ended."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Spans:
    """The spans the test process ended, with the searches the tests need."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def of_job(self, job_id: str, prefix: str = "") -> list[ReadableSpan]:
        """Spans naming ``job_id`` whose name starts with ``prefix``, in the order they ended."""
        return [s for s in self.all() if (s.attributes or {}).get("bgcb.job_id") == job_id and s.name.startswith(prefix)]

    def in_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self.all() if s.context is not None and s.context.trace_id == trace_id]

    def ancestors(self, span: ReadableSpan) -> list[str]:
        """The names of ``span``'s parent, its parent's parent... among the ended spans of its trace."""
        by_id = {s.context.span_id: s for s in self.in_trace(span.context.trace_id)}
        names: list[str] = []
        while span.parent is not None and (span := by_id.get(span.parent.span_id)) is not None:  # type: ignore[assignment]
            names.append(span.name)
        return names

    def wait(self, found: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        """Poll until ``found()`` is truthy: a run span ends after the browser may have seen the result."""
        deadline = time.monotonic() + timeout
        while not (value := found()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}; spans: {[s.name for s in self.all()]}"
            time.sleep(0.01)
        return value


def job_of(handles: dict[str, Any]) -> str:
    """The job id inside a Dash job handle."""
    return str(handles["job"]).split("~")[0]
