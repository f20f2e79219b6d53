"""The observer hooks: bgcb's second kind of plugin (metrics, tracing, logging, audit).

Any number of observers hear every job's events, fired once each by the core
(:mod:`bgcb.observers`); see :mod:`bgcb.hookspecs` for the backend hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Mapping
    from contextlib import AbstractContextManager

    from .jobs import Job, Outcome, State, Update

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

    @hookspec
    def bgcb_job_carry(self, job: Job) -> Mapping[str, str] | None:
        """Text to carry from the submitting request to the worker (a trace context, a request id).

        Called in the web process, in the request that submits ``job``, before
        it is stored; the entries of every observer's answer are merged into
        ``job.carry``, which the worker's events then see. Keep it small: it
        travels with every job.
        """

    @hookspec
    def bgcb_job_running(self, job_id: str, job: Job) -> AbstractContextManager[object] | None:
        """A context manager to run the callback inside (a tracing span), or None.

        Called in the worker for each run, after ``bgcb_job_started``; the core
        enters every observer's answer around the callback and leaves them when
        it returns or raises, in the callback's own thread and context.
        """

    @hookspec
    def bgcb_job_ran(self, job_id: str, job: Job, outcome: Outcome, state: State) -> None:
        """A run of the job in this worker is over: ``outcome`` is what the run gave, ``state`` the job's
        state now (that outcome's, ``queued`` when it runs again later, or the state another process ended
        it in while it ran: cancelled, timed_out, lost). Called in the worker for every run, inside the
        contexts of ``bgcb_job_running``, after ``bgcb_job_finished`` when this run ended the job."""

    @hookspec
    def bgcb_job_update(self, job_id: str, job: Job, update: Update) -> None:
        """The callback reported progress or called set_props (``update["type"]``: ``"progress"`` or
        ``"props"``). Called in the worker, in the callback's thread, after the update was stored."""

    @hookspec
    def bgcb_job_deferred(self, job_id: str, job: Job, seconds: float, attempt: int) -> None:
        """A run ended and the job waits ``seconds`` to run again (``bgcb.retry_later``, or a failure with
        ``retries`` left); ``attempt`` is the number of the next run. Called in the worker."""

    @hookspec
    def bgcb_worker_process(self, metrics_port: int | None) -> None:
        """A ``bgcb worker`` process starts (before its backend runs jobs). ``metrics_port`` is its
        ``--metrics-port`` option, None unless given: an observer that exposes metrics serves them there."""
