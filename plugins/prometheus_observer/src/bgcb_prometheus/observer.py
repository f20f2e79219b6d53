"""The observer: job events become Prometheus counters and histograms.

Each event is counted by the process the core fires it in (submitted and
cancelled in a web process, started and deferred in a worker, finished where
the job ended), so a job is counted once; the process-wide totals come from
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), which sums
every process's files at scrape time.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from bgcb import hookimpl
from bgcb.joblog import callback_label
from bgcb.jobs import Job, Outcome, State

#: Seconds, from a fast callback to a report that takes an hour: one bucket set for waits and runs.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
#: Longest ``callback`` label; a callback with many outputs is cut, so that a label stays a label.
MAX_LABEL = 120


def label(job: Job) -> str:
    """The ``callback`` label: the callback's outputs (``graph.figure``), bounded.

    Pattern-matching ids carry their concrete values (``{'type': 'row', 'index': 3}``);
    non-string values become ``*`` so that one callback stays one label series
    whichever row ran. A job whose text was gone when it ended is ``unknown``.
    """
    outputs: Any = (job.context or {}).get("outputs_list")
    if outputs is not None:
        job = dataclasses.replace(job, context={"outputs_list": _wildcard(outputs)})
    text = callback_label(job)
    return (text[: MAX_LABEL - 3] + "...") if len(text) > MAX_LABEL else (text or "unknown")


def _wildcard(outputs: Any) -> Any:
    if isinstance(outputs, list):
        return [_wildcard(item) for item in outputs]
    if isinstance(outputs, dict) and isinstance(outputs.get("id"), dict):
        ident = {k: (v if isinstance(v, str) else "*") for k, v in sorted(outputs["id"].items())}
        return {**outputs, "id": ident}
    return outputs


class PrometheusObserver:
    """The bgcb observer that keeps the ``bgcb_*`` job metrics in ``registry``.

    The entry point registers :data:`OBSERVER` (the default registry) in every
    process; tests make their own with a fresh :class:`~prometheus_client.CollectorRegistry`.
    """

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.registry = registry
        where: dict[str, Any] = {"registry": registry}
        self.submitted = Counter("bgcb_jobs_submitted", "Jobs queued, by callback (web process).", ["callback"], **where)
        self.finished = Counter(
            "bgcb_jobs_finished",
            "Jobs that reached a final state (succeeded, failed, cancelled, timed_out, lost), once per job.",
            ["callback", "outcome"],
            **where,
        )
        self.deferred = Counter(
            "bgcb_jobs_deferred", "Runs that ended with the job queued to run again later.", ["callback"], **where
        )
        self.queue_wait = Histogram(
            "bgcb_job_queue_wait_seconds",
            "Seconds from submit to the start of a run (each run of a job run again counts).",
            ["callback"],
            buckets=BUCKETS,
            **where,
        )
        self.run_seconds = Histogram(
            "bgcb_job_run_seconds",
            "Seconds a job ran, by final state (jobs that never started are not observed).",
            ["callback", "outcome"],
            buckets=BUCKETS,
            **where,
        )

    @hookimpl
    def bgcb_job_submitted(self, job_id: str, job: Job) -> None:
        self.submitted.labels(label(job)).inc()

    @hookimpl
    def bgcb_job_started(self, job_id: str, job: Job) -> None:
        self.queue_wait.labels(label(job)).observe(max(0.0, time.time() - job.submitted_at))

    @hookimpl
    def bgcb_job_deferred(self, job_id: str, job: Job, seconds: float, attempt: int) -> None:
        self.deferred.labels(label(job)).inc()

    @hookimpl
    def bgcb_job_finished(self, job_id: str, job: Job, outcome: Outcome, state: State, seconds: float) -> None:
        name, final = label(job), getattr(state, "value", str(state))
        self.finished.labels(name, final).inc()
        if seconds > 0:  # 0: it never started (cancelled or lost while queued); a zero would drag the quantiles down
            self.run_seconds.labels(name, final).observe(seconds)

    @hookimpl
    def bgcb_worker_process(self, metrics_port: int | None) -> None:
        if metrics_port is not None:
            from .exposition import serve

            print(f"bgcb-prometheus: {serve(metrics_port)}", file=sys.stderr)  # beside `bgcb worker: serving ...`
