"""One structured log record per job transition, through Python's logging: an observer built into the core.

Logger ``bgcb.events``, at level INFO, and off until asked, even in an app that
logs everything at INFO: ``BGCB_LOG_EVENTS=1`` in the environment (web server
and workers), ``bgcb worker --log-events``, or
``logging.getLogger("bgcb.events").setLevel("INFO")`` with a handler. Each record's message reads
well as a line, and its fields ride on the record as attributes for JSON
formatters: ``bgcb_event`` (submitted, started, deferred, cancelled,
finished), ``job_id``, ``callback`` (the outputs, as ``graph.figure``),
``owner`` (when known), ``queue_wait`` (seconds from submit to start),
``run_time`` (seconds it ran) and ``outcome`` (the final state).

Each transition is logged once, by the process that made it (the core fires
observer events once): submitted and cancelled in a web process, started and
deferred in a worker, finished wherever the job ended.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from .hookspecs import hookimpl
from .joblog import callback_label
from .jobs import Job, Outcome, State

log = logging.getLogger("bgcb.events")
#: Set to 1 to turn the records on in every process (the web server's and the workers').
ENV_LOG_EVENTS = "BGCB_LOG_EVENTS"
if log.level == logging.NOTSET:  # off even where the app logs everything at INFO, until asked
    log.setLevel(logging.INFO if os.environ.get(ENV_LOG_EVENTS, "") not in ("", "0") else logging.WARNING)


def _emit(event: str, job_id: str, job: Job, text: str, **fields: Any) -> None:
    extra = {"bgcb_event": event, "job_id": job_id, "callback": callback_label(job), "owner": job.owner, **fields}
    who = f" of {job.owner}" if job.owner else ""
    log.info("bgcb job %s (%s%s) %s", job_id, extra["callback"], who, text, extra=extra)


class EventLog:
    """The observer that writes the records (registered in every process; costs nothing while INFO is off)."""

    @staticmethod
    def enabled() -> bool:
        return log.isEnabledFor(logging.INFO)

    @hookimpl
    def bgcb_job_submitted(self, job_id: str, job: Job) -> None:
        if self.enabled():
            _emit("submitted", job_id, job, "submitted")

    @hookimpl
    def bgcb_job_started(self, job_id: str, job: Job) -> None:
        if self.enabled():
            wait = max(0.0, time.time() - job.submitted_at)
            _emit("started", job_id, job, f"started after waiting {wait:.3f} s", queue_wait=round(wait, 6))

    @hookimpl
    def bgcb_job_deferred(self, job_id: str, job: Job, seconds: float, attempt: int) -> None:
        if self.enabled():
            _emit("deferred", job_id, job, f"runs again in {seconds:.3g} s (run {attempt})", delay=seconds, attempt=attempt)

    @hookimpl
    def bgcb_job_cancelled(self, job_id: str, job: Job) -> None:
        if self.enabled():
            _emit("cancelled", job_id, job, "cancelled")

    @hookimpl
    def bgcb_job_finished(self, job_id: str, job: Job, outcome: Outcome, state: State, seconds: float) -> None:
        if self.enabled():
            text = f"finished {state.value} after running {seconds:.3f} s"
            _emit("finished", job_id, job, text, run_time=round(seconds, 6), outcome=state.value)


#: The instance every process registers (``bgcb.observers.manager``).
EVENT_LOG = EventLog()
