"""A job's life, written once for every backend.

:class:`Lifecycle` is what the Dash manager, the CLI and a backend's worker
loop talk to. It mints and checks ids, encodes jobs and outcomes as JSON,
moves records through the state machine with the backend's compare-and-set::

    queued ──▶ running ──▶ succeeded | failed | cancelled | timed_out | lost
       └──────────────────▶ cancelled | lost

and keeps its invariants: a terminal state is final (every write is a
compare-and-set from the states it may leave); only successful outcomes are
cached, and only by the worker whose result stood; cancel is idempotent;
every observer event fires once, from the process whose write won.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import defaults, joblog, observers
from .abandon import Abandonment
from .channel import StoreChannel
from .endings import lost_outcome, no_worker_outcome, timeout_outcome
from .jobs import Job, Outcome, Snapshot, State, Status, is_job_id, new_job_id
from .lookups import Lookups
from .record import Data, Queued, Started, Stored, decode_updates, dumps, loads
from .retrying import Retrying
from .scheduling import Scheduling

ACTIVE = (State.QUEUED.value, State.RUNNING.value)
__all__ = ["Lifecycle", "Queued", "Started", "lost_outcome", "no_worker_outcome", "timeout_outcome", "worker_name"]

log = logging.getLogger("bgcb.lifecycle")


def worker_name() -> str:
    """``host:pid`` of this process, read at call time (pool processes fork)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lifecycle(Scheduling, Lookups):
    """The core's view of one configured backend: jobs in, snapshots out.

    Built by :func:`bgcb.provider.load`; ``hook`` is the backend's hook relay.
    Every method may be called from several threads at once.
    """

    def __init__(self, name: str, hook: Any, settings: dict[str, float]) -> None:
        self.name = name
        self.hook = hook
        self.settings = settings
        optional = (
            "bgcb_stop",
            "bgcb_cache_get",
            "bgcb_active",
            "bgcb_shared_secret",
            "bgcb_wait",
            "bgcb_capacity",
            "bgcb_capabilities",
            "bgcb_touch",
            "bgcb_seen",
            "bgcb_defer",
            "bgcb_counts",
        )
        self._has = {h: bool(getattr(hook, h).get_hookimpls()) for h in optional}
        Scheduling.__init__(self)
        self.abandonment = Abandonment(self)
        self.retrying = Retrying(self)

    def cas(self, job_id: str, expect: str, state: State, data: Data | str) -> bool:
        """The state machine's one write: ``expect`` -> ``state``, with the TTL that state gets."""
        ttl = self.settings["result_ttl" if state.terminal else "job_ttl"]
        text = data if isinstance(data, str) else data.encode()
        return bool(self.hook.bgcb_cas(job_id=job_id, expect=[expect], state=state.value, data=text, ttl=ttl))

    # -- web side ------------------------------------------------------------

    def submit(self, job: Job) -> str:
        """Queue ``job``; return its new id. Raises TypeError when the job is not JSON data."""
        queued = self.prepare(job)
        self.enqueue(queued)
        return queued.job_id

    def prepare(self, job: Job) -> Queued:
        """Mint the id and encode ``job`` (no I/O): on async servers :meth:`enqueue` then runs off the event loop."""
        observers.carry(job)  # in the submitting request: what observers take to the worker (a trace context)
        data = Data(
            submitted_at=job.submitted_at,
            timeout=job.timeout,
            callback=job.callback,
            owner=job.owner,
            abandon_after=self.abandonment.after_for(job),
        )
        # Inputs keep NaN and Infinity as Dash passes them (Python's JSON reads them back); all else is strict JSON.
        return Queued(new_job_id(), job, dumps(job.to_json(), allow_nan=True), data.encode())

    def enqueue(self, queued: Queued) -> None:
        """Store and queue a prepared job."""
        job, ttl = queued.job, self.settings["job_ttl"]
        lane, priority, cap = self.place(job)
        self.hook.bgcb_enqueue(
            job_id=queued.job_id,
            job=queued.payload,
            data=queued.data,
            timeout=job.timeout,
            ttl=ttl,
            lane=lane,
            priority=priority,
            cap=cap,
        )
        observers.submitted(queued.job_id, job)

    def poll(self, job_id: str) -> Snapshot:
        """Everything one browser poll needs, in one backend read; delivers pending updates."""
        snap = self._snapshot(job_id, drain=True)
        self.abandonment.polled(job_id, snap.status)  # someone still watches it
        return snap

    def status(self, job_id: str) -> Status:
        return self._snapshot(job_id, drain=False).status

    def result(self, job_id: str) -> Outcome | None:
        return self._snapshot(job_id, drain=False).outcome

    def _read(self, job_id: str, drain: bool) -> Stored | None:
        if not is_job_id(job_id):
            return None  # forged or malformed: no backend hook sees it
        return self.hook.bgcb_read(job_id=job_id, drain=drain)

    def _snapshot(self, job_id: str, drain: bool) -> Snapshot:
        stored = self._read(job_id, drain)
        if stored is None:
            return Snapshot(Status.unknown())
        state, data = State(stored.state), Data.decode(stored.data)
        updates = decode_updates(stored.updates)
        if state is State.RUNNING:
            slack = self.settings["cancel_grace"] + defaults.OVERDUE_SLACK
            overdue = data.deadline is not None and time.time() > data.deadline + slack
            if overdue or stored.alive is False:
                gone = stored.reason or "its worker process is gone"
                reason = gone if stored.alive is False else "it ran past its timeout"
                try:
                    self.lost(job_id, reason, stop=True)
                    again = self._read(job_id, drain)  # as it now stands, with updates written meanwhile
                except Exception:  # the store failed mid-way: answer with what was read; the next poll retries
                    log.warning("bgcb: could not end job %s (%s) now; will retry at the next poll", job_id, reason, exc_info=True)
                    again = None
                if again is not None:
                    state, data = State(again.state), Data.decode(again.data)
                    updates += decode_updates(again.updates)
        elif state is State.QUEUED and stored.alive is False and self._unserved(job_id, data, stored.reason):
            again = self._read(job_id, drain)
            if again is not None:
                state, data = State(again.state), Data.decode(again.data)
        return Snapshot(data.status(state, stored.position), updates, data.result if state.terminal else None)

    def _unserved(self, job_id: str, data: Data, reason: str | None) -> bool:
        """End a queued job no worker serves once it waited ``no_worker_after``; True if this call did."""
        limit = self.settings.get("no_worker_after", defaults.NO_WORKER_AFTER)
        waited = time.time() - max(data.submitted_at or time.time(), data.retry_at or 0.0)
        if limit <= 0 or waited < limit:
            return False
        why = reason or "no worker serves this backend's queue"
        try:
            ended = self._end(job_id, ["queued"], lambda data: no_worker_outcome(waited, why)) is not None
        except Exception:  # the store failed mid-way: the next poll retries
            log.warning("bgcb: could not end job %s, which no worker serves; will retry at the next poll", job_id, exc_info=True)
            return False
        if ended:
            log.warning("bgcb: job %s waited %.0f s and no worker came: %s", job_id, waited, why)
        return ended

    def cancel(self, job_id: str) -> bool:
        """End a queued or running job as cancelled; True if this call did it. Idempotent."""
        seen: list[Data] = []

        def cancelled(data: Data) -> Outcome:
            seen.append(data)
            return Outcome.cancelled()

        was = self._end(job_id, ACTIVE, cancelled)
        if was is None:
            return False
        if was is State.RUNNING and self._has["bgcb_stop"]:
            # A callback that reports progress may stop by itself at its next report; others are stopped now.
            grace = self.settings["cancel_grace"] if seen and seen[-1].cooperative else 0.0
            self.hook.bgcb_stop(job_id=job_id, after=grace)
        return True

    # -- worker side -----------------------------------------------------------

    def execute(self, job_id: str, *, stop_errors: tuple[type[BaseException], ...] = ()) -> Outcome | None:
        """Claim, run and record one job; the backend's worker loop calls it for each id it takes.

        Returns the outcome, or None when the job was not claimed (cancelled
        or lost before it started, or unknown). ``stop_errors`` are exceptions
        the backend raises inside the callback to stop it for its timeout
        (Celery's ``SoftTimeLimitExceeded``).
        """
        started = self.start(job_id)
        return None if started is None else self.run(started, stop_errors=stop_errors)

    def start(self, job_id: str) -> Started | None:
        """Read ``job_id`` and move it from queued to running; None when it is not to run.

        The first half of :meth:`execute`, for a backend that starts a job in
        the same transaction as its claim (bgcb-diskcache: one commit instead
        of two before the callback runs). Observers hear of the start in :meth:`run`.
        """
        payload = self.hook.bgcb_load(job_id=job_id) if is_job_id(job_id) else None
        if payload is None:
            return None
        try:
            job = Job.from_json(loads(payload))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:  # fail it, keep serving
            log.warning("bgcb: job %s has a record this worker cannot read (%r); failing it", job_id, exc)
            why = "its inputs nest too deeply to be read back here" if isinstance(exc, RecursionError) else "it is corrupt"
            self.reject(job_id, f"bgcb: this job's stored record cannot be run: {why} ({type(exc).__name__}).")
            return None
        if self.abandonment.abandoned(job_id, job):
            self.abandonment.end(job_id, job, running=False)
            return None
        data = Data.starting(job, worker_name(), self.abandonment.after_for(job), self._attempt(job_id, job))
        if not self.cas(job_id, State.QUEUED.value, State.RUNNING, data):
            return None  # cancelled (or declared lost) before it started
        return Started(job_id, job, data)

    def run(self, started: Started, *, stop_errors: tuple[type[BaseException], ...] = ()) -> Outcome:
        """Run a job :meth:`start` moved to running and record how it ended (the second half of :meth:`execute`);
        return the ending that stands (a cancel during the run beats the callback's value)."""
        from .runner import run  # the runner imports Dash: only workers need it

        job_id, job, data = started
        observers.started(job_id, job)
        with observers.running(job_id, job):  # observers' contexts (a tracing span) cover the run and its record
            clock = time.monotonic()
            watching = self.abandonment.watch(job_id, job)
            try:
                outcome = run(job, StoreChannel(self, job_id, job), stop_errors=stop_errors)
            finally:
                if watching is not None:
                    watching()
            outcome, state = self._settle(job_id, job, data, outcome, clock)
            observers.ran(job_id, job, outcome, state)
        return outcome

    def _settle(self, job_id: str, job: Job, data: Data, outcome: Outcome, clock: float) -> tuple[Outcome, State]:
        """Record how a run ended (or queue the job again); return the outcome and the state the job is now in."""
        again = self.retrying.wanted(job, data, outcome)
        if again is not None:
            outcome = self.retrying.again(job_id, job, data, outcome, again)
            if outcome.kind == "retry":
                return outcome, State.QUEUED
        try:
            final = data.ended(outcome).encode()  # the outcome is encoded once, here
        except (TypeError, ValueError) as exc:
            outcome = Outcome.failure(f"bgcb could not store the outcome as JSON: {exc}")
            final = data.ended(outcome).encode()
        seconds = time.monotonic() - clock
        if self.cas(job_id, State.RUNNING.value, outcome.state, final):
            if job.cache and job.cache_key and outcome.succeeded and self._has["bgcb_cache_get"]:
                ttl = job.cache_expire if job.cache_expire else self.settings["job_ttl"]
                self.hook.bgcb_cache_put(cache_key=job.cache_key, outcome=dumps(outcome.to_json()), ttl=ttl)
            observers.finished(job_id, job, outcome, outcome.state, seconds)
            joblog.ran(job_id, job, outcome, seconds)
            return outcome, outcome.state
        stored = self._read(job_id, drain=False)  # another process ended it: a cancel, a timeout, a dead worker
        joblog.ended_elsewhere(job_id, job, stored.state if stored else "expired", seconds)
        if stored is None:
            return outcome, State.UNKNOWN
        try:
            stood = Data.decode(stored.data).result  # the ending that stands
        except (ValueError, TypeError, KeyError):
            stood = None
        return stood or outcome, State(stored.state)

    def _attempt(self, job_id: str, job: Job) -> int | None:
        """Which run this is, read from the record only for a job that may retry failures (the count
        bounds them); a job run again by ``retry_later`` alone is not counted, saving a read per job."""
        if job.retries <= 0:
            return None
        stored = self._read(job_id, drain=False)
        return Data.decode(stored.data).attempt if stored is not None else None

    def lost(self, job_id: str, reason: str, *, stop: bool = False) -> bool:
        """End an active job whose worker died (or that ran past its timeout); True if this call did it.

        A backend's supervisor calls it when a worker process holding the job
        died; the core calls it from a poll that found the worker gone or the
        job overdue. The job ends timed_out when it was past its deadline,
        else lost with ``reason``. With ``stop``, the backend is asked to
        free the worker at once.
        """

        ends: list[Outcome] = []

        def outcome_for(data: Data) -> Outcome:
            past = data.deadline is not None and time.time() >= data.deadline and data.timeout
            ends.append(timeout_outcome(data.timeout or 0) if past else lost_outcome(reason))
            return ends[-1]

        was = self._end(job_id, ACTIVE, outcome_for)
        if was is not None:  # its worker cannot say it: this process does (the supervisor, a poll)
            joblog.ended_here(job_id, ends[-1], reason)
        if was is State.RUNNING and stop and self._has["bgcb_stop"]:
            self.hook.bgcb_stop(job_id=job_id, after=0.0)
        return was is not None

    def end_queued(self, job_id: str, outcome: Outcome) -> bool:
        """End a queued job with ``outcome`` (it could not be queued again); True if this call did."""
        return self._end(job_id, [State.QUEUED.value], lambda data: outcome) is not None

    def reject(self, job_id: str, reason: str) -> bool:
        """End a queued or running job as failed with ``reason``: the worker cannot run it at all
        (for example the app failed to import in the pool). True if this call ended it."""
        return self._end(job_id, ACTIVE, lambda data: Outcome.failure(reason)) is not None

    def _end(self, job_id: str, expect: Sequence[str], outcome_for: Callable[[Data], Outcome]) -> State | None:
        """Move an active job to the terminal state of ``outcome_for(data)``; return the state it left, or None."""
        for _ in range(defaults.CAS_ATTEMPTS):
            stored = self._read(job_id, drain=False)
            if stored is None or stored.state not in expect:
                return None
            data = Data.decode(stored.data)
            outcome = outcome_for(data)
            if self.cas(job_id, stored.state, outcome.state, data.ended(outcome)):
                self._tell_ended(job_id, outcome, data)
                return State(stored.state)
        return None  # another writer keeps changing it: it ended or started meanwhile; the caller did nothing

    def _tell_ended(self, job_id: str, outcome: Outcome, data: Data) -> None:
        started = data.started_at
        seconds = max(0.0, (data.finished_at or time.time()) - started) if started else 0.0
        observers.ended(job_id, lambda: self.hook.bgcb_load(job_id=job_id), outcome, seconds)

    def __repr__(self) -> str:
        return f"<bgcb lifecycle on backend {self.name!r}>"
