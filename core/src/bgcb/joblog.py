"""One log record per job a worker ran: which callback, how it ended, how long it took, and the traceback of an error.

Logger ``bgcb.jobs``. Successes, no-updates and cancels are INFO (shown by
``bgcb worker``, which logs at INFO; quiet in a web process that configures
no logging); timeouts and lost jobs are WARNING; errors are ERROR with the
callback's traceback, so that a failing callback is visible where it runs
even when nobody watches the page.
"""

from __future__ import annotations

import logging
from typing import Any

from .jobs import Job, Outcome

log = logging.getLogger("bgcb.jobs")

_LEVELS = {"value": logging.INFO, "no_update": logging.INFO, "cancelled": logging.INFO, "timeout": logging.WARNING}


def callback_label(job: Job) -> str:
    """The callback's outputs (``graph.figure``, ``out.children + bar.value``), from the job's context."""
    outputs: Any = (job.context or {}).get("outputs_list")
    items = outputs if isinstance(outputs, list) else [outputs]
    names = []
    for item in items:
        for output in item if isinstance(item, list) else [item]:
            if isinstance(output, dict) and "id" in output:
                names.append(f"{output['id']}.{output.get('property', '')}")
    return " + ".join(names) or job.callback[:12]


def ran(job_id: str, job: Job, outcome: Outcome, seconds: float) -> None:
    """Log how a job this process ran ended."""
    level = _LEVELS.get(outcome.kind, logging.ERROR if outcome.kind == "error" else logging.WARNING)
    if not log.isEnabledFor(level):
        return
    label, how = callback_label(job), {"value": "succeeded", "no_update": "succeeded (no update)"}.get(outcome.kind)
    if how is not None or outcome.kind == "cancelled":
        log.log(level, "bgcb: job %s (%s) %s in %.3f s", job_id, label, how or "was cancelled", seconds)
        return
    error = outcome.error or {}
    tb = str(error.get("tb") or "").rstrip()
    what = {"error": "failed", "timeout": "timed out", "lost": "was lost"}.get(outcome.kind, outcome.kind)
    detail = str(error.get("msg", "")) + ("\n" + tb if tb else "")
    log.log(level, "bgcb: job %s (%s) %s after %.3f s: %s", job_id, label, what, seconds, detail)


def ended_elsewhere(job_id: str, job: Job, state: str, seconds: float) -> None:
    """Log a job this process ran to its end after another process had ended it (a cancel, a timeout)."""
    log.info("bgcb: job %s (%s) returned after %.3f s, but had already ended as %s", job_id, callback_label(job), seconds, state)


def ended_here(job_id: str, outcome: Outcome, reason: str) -> None:
    """Log a job this process ended for its worker: past its timeout (stopped), or lost with ``reason``."""
    if outcome.kind == "timeout":
        log.warning("bgcb: job %s timed out and was stopped: %s", job_id, (outcome.error or {}).get("msg", ""))
    else:
        log.warning("bgcb: job %s was lost: %s", job_id, reason)
