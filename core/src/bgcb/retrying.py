"""Running a job again: when its callback asks (:func:`retry_later`) or when it failed and may retry (``retries=``).

A job to be run again goes back to state ``queued`` (the one transition out of
``running`` that is not an end, written only here) with its next attempt
number and the time it is due, and the backend's ``bgcb_defer`` puts its id
back in the queue after the delay. No worker waits meanwhile: the worker that
ran it is free at once. While it waits, a poll sees a queued job with
``Status.retry_at``; a cancel ends it as any queued job; a page that stopped
polling gets it cancelled when a worker takes it again.

Jobs run at most once unless asked: ``retries`` is 0 by default, and only a
callback's own exception is retried (not a timeout, a lost worker or a
cancel, which a second run would likely meet again).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

from . import defaults, observers
from .jobs import Job, Outcome, State
from .record import Data

if TYPE_CHECKING:
    from .lifecycle import Lifecycle

__all__ = ["RetryLater", "retry_later"]

log = logging.getLogger("bgcb.jobs")


class RetryLater(Exception):
    """Raised by a background callback to be run again after ``seconds``, without holding a worker meanwhile.

    The browser keeps polling and sees the job as queued (its ``running``
    outputs stay on); progress and set_props already sent stay shown. Each
    run gets the job's full ``timeout`` again.
    """

    def __init__(self, seconds: float, reason: str = "") -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= defaults.RETRY_LATER_MAX:
            raise ValueError(
                f"bgcb.retry_later({seconds!r}): give seconds from 0 to {defaults.RETRY_LATER_MAX:g} "
                "(a job waiting longer would outlive its record)."
            )
        super().__init__(reason or f"run again in {seconds:g} s")
        self.seconds = float(seconds)
        self.reason = reason


def retry_later(seconds: float, reason: str = "") -> NoReturn:
    """Stop this run of the background callback and run it again in ``seconds`` (inside a callback only).

    ``reason`` is logged with the job. Use it when the callback cannot go on
    yet (a rate limit, a resource not ready) and sleeping would hold a worker.
    """
    raise RetryLater(seconds, reason)


def check_retries(retries: object, delay: object) -> tuple[int, float]:
    """The manager's ``retries`` and ``retry_delay``, checked."""
    from .errors import ConfigurationError

    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise ConfigurationError(f"bgcb: retries={retries!r}; give how many times a failed job runs again, 0 to 100 (0: never).")
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= defaults.RETRY_DELAY_MAX:
        raise ConfigurationError(
            f"bgcb: retry_delay={delay!r}; give the seconds before the first retry, 0 to {defaults.RETRY_DELAY_MAX:g} "
            "(each later retry waits twice as long)."
        )
    return retries, float(delay)


def retry_delay(job: Job, attempt: int) -> float:
    """Seconds before run ``attempt + 1`` of a failed job: ``retry_delay``, doubling per retry, capped."""
    return float(min(defaults.RETRY_DELAY_MAX, job.retry_delay * math.pow(2, max(0, attempt - 1))))


class Retrying:
    """The lifecycle's part that puts a job back in the queue (one per :class:`~bgcb.lifecycle.Lifecycle`)."""

    def __init__(self, jobs: Lifecycle) -> None:
        self.jobs = jobs

    def wanted(self, job: Job, data: Data, outcome: Outcome) -> float | None:
        """Seconds until the job runs again, or None when ``outcome`` is its end."""
        if outcome.kind == "retry":
            return float(outcome.value or 0)
        attempt = data.attempt or 1
        if outcome.kind == "error" and attempt <= job.retries:
            return retry_delay(job, attempt)
        return None

    def again(self, job_id: str, job: Job, data: Data, outcome: Outcome, seconds: float) -> Outcome:
        """Queue the job again in ``seconds``; return ``Outcome.retry`` if it is, else how it ends instead."""
        jobs = self.jobs
        if not jobs.can_defer():
            why = (
                f"bgcb: the callback asked to run again later, but backend {jobs.name!r} cannot queue a job "
                "for later (it does not list 'deferral' in bgcb_capabilities). Use bgcb-diskcache or bgcb-celery, "
                "or retry from the page."
            )
            return Outcome.failure(why) if outcome.kind == "retry" else outcome
        attempt = (data.attempt or 1) + 1
        due = time.time() + seconds
        waiting = replace(data, started_at=None, deadline=None, worker=None, cooperative=None, attempt=attempt, retry_at=due)
        if not jobs.cas(job_id, State.RUNNING.value, State.QUEUED, waiting):
            return outcome  # cancelled or ended meanwhile: the caller finds out as for any run
        lane, priority, cap = jobs.place(job)
        try:
            jobs.hook.bgcb_defer(job_id=job_id, delay=seconds, lane=lane, priority=priority, cap=cap)
        except Exception as exc:
            log.error("bgcb: could not queue job %s again", job_id, exc_info=True)
            failed = Outcome.failure(f"bgcb: this job was to run again in {seconds:g} s, but the queue refused it: {exc}")
            jobs.end_queued(job_id, failed)
            return failed
        observers.deferred(job_id, job, seconds, attempt)
        why = outcome.error.get("msg", "") if outcome.error else ""
        log.info("bgcb: job %s will run again in %.3g s (attempt %d)%s", job_id, seconds, attempt, f": {why}" if why else "")
        return Outcome.retry(seconds, why)
