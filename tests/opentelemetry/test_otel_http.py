"""Traces of jobs started through a real Dash app over HTTP (Flask, and FastAPI where the job is stored
off the event loop), run by the in-process testing backend: submit span in the request, run span in the
worker, one trace."""

from __future__ import annotations

import itertools

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from otel_app import REQUEST_SPAN
from otel_spans import Spans, job_of

from bgcb_testing import DashClient

_clicks = itertools.count(1)


def _submit_and_runs(spans: Spans, job_id: str, runs: int = 1) -> tuple[ReadableSpan, list[ReadableSpan]]:
    submit = spans.wait(lambda: spans.of_job(job_id, "bgcb submit"), "the submit span")[0]
    ran = spans.wait(lambda: len(found := spans.of_job(job_id, "bgcb run")) >= runs and found, f"{runs} run span(s)")
    return submit, ran


def test_one_trace_from_the_request_to_the_worker(otel_client: DashClient, spans: Spans) -> None:
    """The acceptance test: the request's span > the PRODUCER submit span > the CONSUMER run span with
    its progress and set_props events, all in one trace."""
    outputs, inputs = [("work-out", "children")], [("work-btn", "n_clicks", 3)]
    run = otel_client.run(outputs, inputs)
    assert run.output("work-out", "children") == "worked 3"
    job_id = job_of(run.handles)
    submit, (worked,) = _submit_and_runs(spans, job_id)

    assert submit.name == "bgcb submit work-out.children" and submit.kind is SpanKind.PRODUCER
    # the request's span is its parent (FastAPI's own "fastapi.endpoint" span may come between)
    assert REQUEST_SPAN in spans.ancestors(submit)[:2], f"the submit span is not in the request's: {spans.ancestors(submit)}"
    assert submit.end_time is not None and submit.attributes["bgcb.callback"] == "work-out.children"

    assert worked.name == "bgcb run work-out.children" and worked.kind is SpanKind.CONSUMER
    assert worked.context.trace_id == submit.context.trace_id
    assert worked.parent.span_id == submit.context.span_id and worked.parent.is_remote
    assert worked.status.status_code is StatusCode.OK
    attrs = worked.attributes
    assert attrs["bgcb.job_id"] == job_id and attrs["bgcb.attempt"] == 1 and attrs["bgcb.state"] == "succeeded"
    assert 0 <= attrs["bgcb.queue_wait_seconds"] < 10
    progress = [e.attributes["bgcb.progress"] for e in worked.events if e.name == "progress"]
    assert progress == ['["step 0"]', '["step 1"]', '["step 2"]']
    props = [dict(e.attributes) for e in worked.events if e.name == "set_props"]
    assert props == [{"bgcb.component_id": "props-out", "bgcb.props": "children"}]


def test_a_span_the_callback_makes_nests_in_the_run_span(otel_client: DashClient, spans: Spans) -> None:
    run = otel_client.run([("work-out", "children")], [("work-btn", "n_clicks", 1)])
    _, (worked,) = _submit_and_runs(spans, job_of(run.handles))
    inner = [s for s in spans.in_trace(worked.context.trace_id) if s.name == "inner work"]
    assert len(inner) == 1 and inner[0].parent.span_id == worked.context.span_id
    assert inner[0].attributes["app.steps"] == 1


def test_a_failing_callback_makes_an_error_span_with_its_message(otel_client: DashClient, spans: Spans) -> None:
    run = otel_client.run([("fail-out", "children")], [("fail-btn", "n_clicks", 1)])
    assert run.final.status == 500
    _, (failed,) = _submit_and_runs(spans, job_of(run.handles))
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "boom from the worker"
    assert failed.attributes["bgcb.state"] == "failed"
    (exc,) = [e for e in failed.events if e.name == "exception"]
    assert exc.attributes["exception.type"] == "ValueError" and exc.attributes["exception.message"] == "boom from the worker"
    assert "raise ValueError" in exc.attributes["exception.stacktrace"]


def test_retry_later_defers_the_first_run_and_runs_again_in_the_same_trace(otel_client: DashClient, spans: Spans) -> None:
    clicks = 100 + next(_clicks)  # a token of its own in the app's run counter
    run = otel_client.run([("later-out", "children")], [("later-btn", "n_clicks", clicks)])
    assert run.output("later-out", "children") == "later ok on run 2"
    submit, (first, second) = _submit_and_runs(spans, job_of(run.handles), runs=2)
    assert first.status.status_code is StatusCode.UNSET and first.attributes["bgcb.state"] == "queued"
    (deferred,) = [e for e in first.events if e.name == "deferred"]
    assert deferred.attributes == {"bgcb.delay_seconds": 0.05, "bgcb.next_attempt": 2, "bgcb.reason": "not yet"}
    assert second.status.status_code is StatusCode.OK and second.attributes["bgcb.attempt"] == 2
    for span in (first, second):
        assert span.context.trace_id == submit.context.trace_id and span.parent.span_id == submit.context.span_id


def test_a_cancel_ends_the_run_span_as_cancelled_and_marks_the_trace(otel_client: DashClient, spans: Spans) -> None:
    outputs, inputs = [("slow-out", "children")], [("slow-btn", "n_clicks", 1)]
    handles = otel_client.start(outputs, inputs)
    job_id = job_of(handles)
    spans.wait(lambda: otel_client.poll(handles, outputs, inputs).body.get("progress"), "the first progress")
    assert otel_client.cancel(("slow-cancel-btn", "n_clicks"), handles["job"]).status in (200, 204)
    assert otel_client.run(outputs, inputs, handles=handles, timeout=5).final.status == 204
    submit, (ran,) = _submit_and_runs(spans, job_id)
    assert ran.attributes["bgcb.state"] == "cancelled" and ran.status.status_code is StatusCode.UNSET
    assert any(e.name == "progress" for e in ran.events)

    (cancel,) = spans.of_job(job_id, "bgcb cancel")
    assert cancel.name == "bgcb cancel slow-out.children" and cancel.attributes["bgcb.state"] == "cancelled"
    assert cancel.context.trace_id == submit.context.trace_id and cancel.parent.span_id == submit.context.span_id
    (link,) = cancel.links  # to the request that cancelled, in a trace of its own
    assert link.context.trace_id != submit.context.trace_id
    linked = [s for s in spans.in_trace(link.context.trace_id) if s.context.span_id == link.context.span_id]
    assert len(linked) == 1 and REQUEST_SPAN in [linked[0].name, *spans.ancestors(linked[0])]
    assert not spans.of_job(job_id, "bgcb end"), "a cancel is told once, by the cancel span"
