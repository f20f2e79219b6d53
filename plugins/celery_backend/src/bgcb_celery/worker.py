"""The worker side of bgcb-celery: the ``bgcb.run_job`` task and the heartbeat of the process running it.

A task message carries a job id, the id of the store it belongs to and the
job's text; the task finds the backend configured for that store in this
process, lists the job in the process's heartbeat, and hands the id to the
core (``jobs.execute``), which loads the job (from the message), claims it,
runs it and records how it ended. Celery's
soft time limit (``SoftTimeLimitExceeded``) is the stop signal the core turns
into a timeout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from bgcb.lifecycle import Lifecycle, worker_name

from . import defaults
from .defaults import TASK_NAME
from .store import RedisStore, StoreUnavailable

if TYPE_CHECKING:
    from .later import Later

log = logging.getLogger("bgcb.celery")

#: The job runners of the backends configured in this process, by store id (what a message names).
_registry: dict[str, JobRunner] = {}
_registry_lock = threading.Lock()


def register_task(celery: Any) -> None:
    """Register the one generic task on ``celery`` (idempotent: every backend registers the same body)."""
    celery.task(
        name=TASK_NAME,
        ignore_result=True,
        acks_late=True,
        reject_on_worker_lost=False,
        serializer="json",
        shared=False,
    )(run_job)


def run_job(
    job_id: str,
    *legacy: Any,
    store: str = "",
    job: str | None = None,
    ordered: bool = False,
    ticket: str | None = None,
    later: list[Any] | None = None,
) -> str:
    """The body of ``bgcb.run_job``: run the job with the backend of ``store``.

    ``job`` is the job's text, carried in the message so that the worker
    need not read it back from Redis. ``legacy`` swallows the payload that
    messages of bgcb-celery 0.1 carried (their jobs have no record in this
    layout and are skipped). Returns how the job ended, for Celery's own log line
    ("succeeded" there means only that the task ran; bgcb logs each outcome itself).
    With ``ordered``, the message is a ticket (its task id is ``ticket``, else the
    job id): the job run is the next in the core's order (:mod:`bgcb_celery.places`),
    which may be another's. ``later`` ([lane, priority, cap]) marks the delayed
    message of a deferred job (:mod:`bgcb_celery.later`): it arrives first.
    """
    runner = _runner_for(store, job_id)
    if later is not None:
        runner.arrive(job_id, later)
    capped = False
    if ordered:
        chosen = runner.next_ordered(ticket or job_id)
        if chosen is None:
            return "nothing to run: every queued job already has a worker, or its owner's limit runs"
        if chosen[0] != job_id:
            job_id, job = chosen[0], None  # its text is in Redis
        capped = chosen[1]
    return runner.run(job_id, job, capped)


def _runner_for(store: str, job_id: str) -> JobRunner:
    with _registry_lock:
        runner = _registry.get(store)
        others = list({id(r): r for r in _registry.values()}.values())
    if runner is not None:
        return runner
    if len(others) == 1:  # the same Redis under another spelling of its URL (localhost vs 127.0.0.1)
        log.warning(
            "bgcb-celery: job %s names store %r but this worker is configured for %r; using that one "
            "(a job it cannot find is skipped). Give web app and workers the same result_url and prefix.",
            job_id,
            store,
            others[0].store_id,
        )
        return others[0]
    raise RuntimeError(
        f"bgcb-celery: this worker has no bgcb backend for store {store!r} (job {job_id}). Start it with "
        "`bgcb worker APP_MODULE` or `celery -A APP_MODULE:celery_app worker`, where APP_MODULE builds "
        "bgcb.manager('celery', ...) with the same options as the web app."
    )


class Heart:
    """The heartbeat of this worker process: ``"count id id ..."``, the jobs it runs, from one thread.

    One key per process, not per job, so that a busy pool pays for heartbeats
    per second rather than per job. A job joins the set before it is claimed
    and the claim records the count of the last beat written; the next beat
    lists it, so a reader that finds it missing from a later beat knows the
    process no longer runs it (see :func:`bgcb_celery.layout.alive_from`). When
    no beat is fresh (the first job of the process, or after an idle spell),
    one is written before the claim, so a running record always has a live
    heartbeat while its worker lives. Ended jobs' payloads are dropped with the
    next beat.
    """

    def __init__(self, store: RedisStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._jobs: set[str] = set()
        self._ended: list[str] = []
        self._count = 0
        self._written = float("-inf")
        self._busy = float("-inf")
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._failing = False

    def start(self, job_id: str) -> int:
        """Add the job; return the count its claim records. Raises StoreUnavailable when a beat
        had to be written first and Redis stayed unreachable (the worker's retry policy)."""
        with self._lock:
            self._jobs.add(job_id)
            self._busy = time.monotonic()
            if self._thread is None or self._pid != os.getpid():  # none yet, or we are a forked pool process
                self._pid = os.getpid()
                self._wake = threading.Event()
                self._written = float("-inf")
                self._thread = threading.Thread(target=self._loop, name="bgcb-heartbeat", daemon=True)
                self._thread.start()
            if time.monotonic() - self._written > self.interval:
                self._beat(patient=True)
            return self._count

    def stop(self, job_id: str, ended: bool) -> None:
        """Stop listing the job; ``ended``: this process claimed it, so its payload may go."""
        with self._lock:
            self._jobs.discard(job_id)
            self._busy = time.monotonic()
            if ended:
                self._ended.append(job_id)

    def close(self) -> None:
        self._wake.set()

    def _beat(self, patient: bool = False) -> None:
        """Write the next beat (the lock is held, so counts and sets are written in order)."""
        self._count += 1
        ended, self._ended = self._ended, []
        try:
            self.store.beat(worker_name(), self._count, sorted(self._jobs), ended, patient)
        except StoreUnavailable:
            self._ended = ended + self._ended
            raise
        self._written = time.monotonic()

    def _loop(self) -> None:
        wake = self._wake
        while not wake.wait(self.interval):
            with self._lock:
                if not self._jobs and not self._ended and time.monotonic() - self._busy > defaults.IDLE_BEATS:
                    continue
                try:
                    self._beat()
                except StoreUnavailable as exc:
                    if not self._failing:
                        log.warning("bgcb-celery: heartbeats failing: %s", exc)
                    self._failing = True
                    continue
            self._failing = False


class JobRunner:
    """What the ``bgcb.run_job`` task does for one backend instance."""

    def __init__(self, store: RedisStore, jobs: Lifecycle, store_id: str) -> None:
        self.store = store
        self.jobs = jobs
        self.store_id = store_id
        self.heart = Heart(store, store.timing.heartbeat)
        #: Jobs this process runs now (their store calls retry through outages), those it
        #: claimed, and those that appended updates; the job texts their messages carried and
        #: the heartbeat count each claim records.
        self.executing: set[str] = set()
        self.payloads: dict[str, str] = {}
        self.beats: dict[str, int] = {}
        self.claimed: set[str] = set()
        self.appended: set[str] = set()
        #: Jobs running here that count against their lane's running cap (bgcb_defer gives their room back);
        #: the deferral and kept-back tickets of this backend (set by it).
        self.capped: set[str] = set()
        self.later: Later | None = None
        self._lock = threading.Lock()

    def register(self) -> None:
        with _registry_lock:
            _registry[self.store_id] = self

    def close(self) -> None:
        with _registry_lock:
            if _registry.get(self.store_id) is self:
                del _registry[self.store_id]
        self.heart.close()

    def next_ordered(self, ticket: str) -> tuple[str, bool] | None:
        """The next job in the core's order (the worker of ``ticket`` asks) and whether it counts against
        its lane's running cap; None when none can start."""
        from celery.exceptions import Reject

        order = self.store.places.order
        if order is None:
            return None
        try:
            return order.pop(ticket)
        except StoreUnavailable as exc:
            log.error("bgcb-celery: cannot take the next job (%s); returning the ticket to the queue", exc)
            raise Reject(str(exc), requeue=True) from exc

    def arrive(self, job_id: str, later: list[Any]) -> None:
        """The delayed message of a deferred job came (:meth:`bgcb_celery.later.Later.arrive`)."""
        from celery.exceptions import Reject

        if self.later is None:
            return
        lane, priority, cap = (list(later) + [None, None, None])[:3]
        try:
            self.later.arrive(job_id, lane, priority, cap)
        except StoreUnavailable as exc:
            log.error("bgcb-celery: cannot queue job %s again (%s); returning its message to the queue", job_id, exc)
            raise Reject(str(exc), requeue=True) from exc

    def _finished(self, job_id: str) -> None:
        """A job that counted against its lane's cap stopped running here: the lane has room (kept-back
        tickets go again). A failure here is repaired by the workers' periodic look."""
        order = self.store.places.order
        if order is None or self.later is None:
            return
        try:
            self.later.tickets(order.leave(job_id, patient=True))
        except StoreUnavailable as exc:
            log.error("bgcb-celery: could not release job %s's place in its owner's running limit (%s)", job_id, exc)

    def run(self, job_id: str, payload: str | None = None, capped: bool = False) -> str:
        from celery.exceptions import Reject, SoftTimeLimitExceeded

        with self._lock:
            if job_id in self.executing:  # a duplicate message (redelivered while the job runs here)
                log.warning("bgcb-celery: job %s is already running in this process; message skipped", job_id)
                return "skipped: already running here"
            self.executing.add(job_id)
            if payload is not None:
                self.payloads[job_id] = payload
        try:
            try:
                self.beats[job_id] = self.heart.start(job_id)
            except StoreUnavailable as exc:
                log.error("bgcb-celery: cannot start job %s (%s); returning it to the queue", job_id, exc)
                raise Reject(str(exc), requeue=True) from exc
            ended = "not run: cancelled, lost or expired before it started"
            again = False  # deferred (bgcb_defer): its payload stays, its cap's room was given back there
            if capped:
                self.capped.add(job_id)
            try:
                outcome = self.jobs.execute(job_id, stop_errors=(SoftTimeLimitExceeded,))
                again = outcome is not None and outcome.kind == "retry"
                if outcome is not None:
                    ended = f"job {outcome.state.value}" if not again else "to run again later"
            except StoreUnavailable as exc:
                if job_id not in self.claimed:
                    log.error("bgcb-celery: cannot claim job %s (%s); returning it to the queue", job_id, exc)
                    raise Reject(str(exc), requeue=True) from exc
                log.error("bgcb-celery: lost Redis while running job %s: %s", job_id, exc)
                ended = "unknown: Redis was lost while it ran"
            except SoftTimeLimitExceeded:
                log.error("bgcb-celery: job %s reached its time limit outside the callback", job_id)
                ended = "timed out outside the callback"
            finally:
                # A run that did not claim the job (cancelled or expired before it started, or a
                # duplicate message of a job another worker runs) leaves its payload alone.
                self.heart.stop(job_id, ended=job_id in self.claimed and not again)
                if capped and not again:
                    self._finished(job_id)
        finally:
            self.capped.discard(job_id)
            self.executing.discard(job_id)
            self.payloads.pop(job_id, None)
            self.beats.pop(job_id, None)
            self.claimed.discard(job_id)
            self.appended.discard(job_id)
        return ended
