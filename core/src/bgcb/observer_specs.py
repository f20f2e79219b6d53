"""The observer hooks: bgcb's second kind of plugin (metrics, tracing, logging, audit).

Any number of observers hear every job's events, fired once each by the core
(:mod:`bgcb.observers`); see :mod:`bgcb.hookspecs` for the backend hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .jobs import Job, Outcome, State

hookspec = pluggy.HookspecMarker("bgcb")


class ObserverSpec:
    """Hooks of an observer; every installed observer hears every event."""

    @hookspec
    def bgcb_job_submitted(self, job_id: str, job: Job) -> None:
        """A job was queued. Called in the web process, once per job, after the backend stored it."""

    @hookspec
    def bgcb_job_started(self, job_id: str, job: Job) -> None:
        """A worker claimed the job and starts running it. Called in the worker, once per run: a job run
        again later (``bgcb.retry_later``, ``retries=``) starts again, and ends only once."""

    @hookspec
    def bgcb_job_finished(self, job_id: str, job: Job, outcome: Outcome, state: State, seconds: float) -> None:
        """The job reached its terminal ``state`` with ``outcome``. Called exactly once per job that ended.

        ``state`` is succeeded, failed, cancelled, timed_out or lost;
        ``seconds`` is how long it ran (0 if it never started). Called in the
        process whose compare-and-set made the job terminal: the worker, the
        web process that cancelled it or saw it overdue or its worker gone,
        or a backend's supervisor that saw the worker die.
        """

    @hookspec
    def bgcb_job_cancelled(self, job_id: str, job: Job) -> None:
        """A cancel ended the job (before ``bgcb_job_finished`` for it). Called in the web process, once."""
