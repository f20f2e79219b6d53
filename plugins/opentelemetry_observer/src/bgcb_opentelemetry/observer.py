"""The observer: one trace per job, from the request that submitted it to every run in a worker.

Web process: ``bgcb_job_carry`` starts the PRODUCER span ``bgcb submit <callback>`` under whatever span
is current in the request and puts its context in ``job.carry`` with the configured propagator;
``bgcb_job_submitted`` ends it once the job is stored. Worker: ``bgcb_job_running`` extracts that
context and runs the callback inside the CONSUMER span ``bgcb run <callback>``, so spans the callback
makes nest in it; updates become its events and ``bgcb_job_ran`` its status. Only the OpenTelemetry
API is used: without an SDK every span is a no-op, and the application's exporter gets the rest.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from bgcb import hookimpl
from bgcb.jobs import Job, Outcome, State, Update

from .attributes import ATTEMPT, JOB_ID, QUEUE_WAIT, STATE, exception_event, job_attributes, short, span_name, update_event

try:
    VERSION = metadata.version("bgcb-opentelemetry")
except metadata.PackageNotFoundError:  # run from a source tree
    VERSION = "0+unknown"

#: The instrumentation scope of every span: tracer "bgcb", this distribution's version.
TRACER_NAME = "bgcb"
#: Jobs whose next run number this process remembers (it deferred them); oldest forgotten first.
REMEMBERED = 1024
#: The status message of a submit span whose job was never stored (the store failed, the request failed).
NOT_QUEUED = "bgcb: the job was not queued"


@dataclass
class _Run:
    """A run this process is inside: its span, and the deferral it ended with, if any."""

    span: trace.Span
    deferred: tuple[float, int] | None = None


class OpenTelemetryObserver:
    """Traces bgcb jobs with the global tracer provider (or ``tracer_provider``); registered by entry point."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer(TRACER_NAME, VERSION, tracer_provider=tracer_provider)
        # Open submit spans by id(job): carry and submitted may run on different threads (async servers
        # prepare on the event loop and store off it), so no thread-local or contextvar can hold them.
        self._submits: dict[int, tuple[trace.Span, weakref.finalize[[int, trace.Span], Job]]] = {}
        self._unstored: deque[tuple[trace.Span, int]] = deque()  # (span, when its job was dropped), to end
        self._runs: dict[str, _Run] = {}  # by job id: a job runs at most once at a time
        self._next: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    # -- web process: submit ------------------------------------------------------------

    @hookimpl
    def bgcb_job_carry(self, job: Job) -> dict[str, str] | None:
        self._end_unstored()
        attributes = {**job_attributes(job), "messaging.operation.type": "send"}
        span = self.tracer.start_span(span_name("submit", job), kind=SpanKind.PRODUCER, attributes=attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        if span.is_recording():
            self._hold(job, span)
        return carrier or None

    def _hold(self, job: Job, span: trace.Span) -> None:
        """Keep ``span`` open until ``job`` is stored, bounded by the job's life.

        ``bgcb_job_submitted`` does not fire when the store (or the request) fails after
        ``bgcb_job_carry``: when such a job is garbage collected, its span is queued to end as an error
        at the time the job was dropped. It is ended by the next submission, not by the collector: a
        span processor or exporter must not run inside a garbage collection, in whatever thread.
        """
        key = id(job)
        earlier = self._submits.pop(key, None)
        if earlier is not None:  # the same Job object prepared twice: the first try was never stored
            earlier[1]()
            self._end_unstored()
        try:
            finalizer = weakref.finalize(job, self._dropped, key, span)
        except TypeError:  # a job that takes no weak reference: a zero-length submit span rather than a leak
            span.end()
            return
        finalizer.atexit = False
        self._submits[key] = (span, finalizer)

    def _dropped(self, key: int, span: trace.Span) -> None:
        """The job of ``span`` is gone unstored (a weakref callback: only atomic steps here)."""
        entry = self._submits.get(key)
        if entry is not None and entry[0] is span:
            self._submits.pop(key, None)
        self._unstored.append((span, time.time_ns()))

    def _end_unstored(self) -> None:
        while self._unstored:
            try:
                span, dropped_at = self._unstored.popleft()
            except IndexError:  # another thread ended it
                return
            span.set_status(Status(StatusCode.ERROR, NOT_QUEUED))
            span.end(end_time=dropped_at)

    @hookimpl
    def bgcb_job_submitted(self, job_id: str, job: Job) -> None:
        entry = self._submits.pop(id(job), None)
        if entry is None:
            return
        span, finalizer = entry
        finalizer.detach()
        span.set_attributes({JOB_ID: job_id, "messaging.message.id": job_id})
        span.end()
        self._end_unstored()

    # -- worker: runs ---------------------------------------------------------------------

    @hookimpl
    def bgcb_job_running(self, job_id: str, job: Job) -> contextlib.AbstractContextManager[object]:
        return self._running(job_id, job)

    @contextlib.contextmanager
    def _running(self, job_id: str, job: Job) -> Iterator[trace.Span]:
        """The run span, current while the callback runs and its outcome is recorded.

        The carried context is attached first (not only given as the parent), so that its baggage
        reaches the callback too.
        """
        attributes: dict[str, Any] = {
            **job_attributes(job, job_id),
            "messaging.operation.type": "process",
            ATTEMPT: self._attempt(job_id),
            QUEUE_WAIT: round(max(0.0, time.time() - job.submitted_at), 6),
        }
        token = otel_context.attach(propagate.extract(job.carry))
        try:
            with self.tracer.start_as_current_span(span_name("run", job), kind=SpanKind.CONSUMER, attributes=attributes) as span:
                self._runs[job_id] = _Run(span)
                try:
                    yield span
                finally:
                    self._runs.pop(job_id, None)
        finally:
            otel_context.detach(token)

    def _attempt(self, job_id: str) -> int:
        """This run's number as this process knows it: 1 unless this process deferred the job before."""
        with self._lock:
            return self._next.pop(job_id, 1)

    @hookimpl
    def bgcb_job_update(self, job_id: str, job: Job, update: Update) -> None:
        run = self._runs.get(job_id)
        if run is not None and run.span.is_recording():  # sampled out or no SDK: not even the text of the value
            name, attributes = update_event(update)
            run.span.add_event(name, attributes)

    @hookimpl
    def bgcb_job_deferred(self, job_id: str, job: Job, seconds: float, attempt: int) -> None:
        run = self._runs.get(job_id)
        if run is not None:
            run.deferred = (seconds, attempt)
        with self._lock:  # the next run, if this process takes it, knows its number
            self._next[job_id] = attempt
            self._next.move_to_end(job_id)
            while len(self._next) > REMEMBERED:
                self._next.popitem(last=False)

    @hookimpl
    def bgcb_job_ran(self, job_id: str, job: Job, outcome: Outcome, state: State) -> None:
        run = self._runs.get(job_id)
        if run is None:
            return
        span = run.span
        span.set_attributes({STATE: state.value, "bgcb.outcome": outcome.kind})
        if state is State.SUCCEEDED:
            span.set_status(Status(StatusCode.OK))
        elif state is State.QUEUED:  # runs again later: not an end, so no status
            seconds, attempt = run.deferred or (float(outcome.value or 0), 0)
            event: dict[str, Any] = {"bgcb.delay_seconds": seconds}
            if attempt:
                event["bgcb.next_attempt"] = attempt
            if outcome.error and outcome.error.get("msg"):
                event["bgcb.reason"] = short(outcome.error["msg"], 256)
            span.add_event("deferred", event)
        elif state is State.CANCELLED:
            pass  # someone chose to stop it: UNSET, so that cancels do not count as errors; bgcb.state says it
        else:  # failed, timed_out, lost, or its record expired while it ran
            if state is State.FAILED and outcome.kind == "error":
                span.add_event("exception", exception_event(outcome))
            span.set_status(Status(StatusCode.ERROR, _message(outcome, state)))

    # -- wherever a job ends away from its run: cancels, timeouts, lost workers -------------------

    @hookimpl
    def bgcb_job_finished(self, job_id: str, job: Job, outcome: Outcome, state: State, seconds: float) -> None:
        """A span in the job's trace for a cancel, and for an end that its run cannot tell.

        A cancel (``bgcb cancel``, status UNSET) is told wherever it happens, even while this process runs
        the job: it says when the job was cancelled, and links to the request that did it. Other ends
        (``bgcb end``: a timeout or a dead worker seen by a poll or a backend's supervisor, a job no worker
        took) are told only away from the run, so that a run span that never ends is not all there is.
        ``bgcb_job_cancelled`` is not needed: ``finished`` follows it for every cancel, in the same process.
        """
        if state is State.CANCELLED:
            self._mark("cancel", job_id, job, state, None)
        elif state is not State.SUCCEEDED and job_id not in self._runs:
            self._mark("end", job_id, job, state, Status(StatusCode.ERROR, _message(outcome, state)))

    def _mark(self, verb: str, job_id: str, job: Job, state: State, status: Status | None) -> None:
        parent = propagate.extract(job.carry)  # the job's trace; the current context when it carried none
        here = trace.get_current_span().get_span_context()
        there = trace.get_current_span(parent).get_span_context()
        links = [Link(here)] if here.is_valid and (here.trace_id, here.span_id) != (there.trace_id, there.span_id) else None
        attributes = {**job_attributes(job, job_id), STATE: state.value}
        span = self.tracer.start_span(span_name(verb, job), context=parent, attributes=attributes, links=links)
        if status is not None:
            span.set_status(status)
        span.end()


def _message(outcome: Outcome, state: State) -> str:
    """The error text of a run or job that ended ``state``."""
    if outcome.state is state and outcome.error and outcome.error.get("msg"):
        return str(outcome.error["msg"])
    return f"bgcb: the job ended {state.value}" + ("" if outcome.state is state else f" while this run ended {outcome.kind}")
