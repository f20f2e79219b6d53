"""The worker side of bgcb-celery: the ``bgcb.run_job`` task and the heartbeats of the jobs it runs.

A task message carries a job id and the id of the store it belongs to; the
task finds the backend configured for that store in this process, writes the
job's heartbeat, and hands the id to the core (``jobs.execute``), which loads
the job from the store, claims it, runs it and records how it ended. Celery's
soft time limit (``SoftTimeLimitExceeded``) is the stop signal the core turns
into a timeout.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from bgcb.lifecycle import Lifecycle, worker_name

from .defaults import TASK_NAME
from .store import RedisStore, StoreUnavailable

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


def run_job(job_id: str, *legacy: Any, store: str = "") -> None:
    """The body of ``bgcb.run_job``: run the job with the backend of ``store``.

    ``legacy`` swallows the payload that messages of bgcb-celery 0.1 carried
    (their jobs have no record in this layout and are skipped).
    """
    _runner_for(store, job_id).run(job_id)


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
    """Keeps the heartbeat keys of the jobs this process runs alive, from one thread.

    The first beat of a job is written before the job is claimed, so a running
    record always has a heartbeat while its worker lives; the key is removed
    when the job returns and expires ``heartbeat_ttl`` after a worker died.
    """

    def __init__(self, store: RedisStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._jobs: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._failing = False

    def start(self, job_id: str) -> None:
        """First beat (retried like every worker write; raises StoreUnavailable), then keep it alive."""
        self.store.beat([job_id], worker_name(), patient=True)
        with self._lock:
            self._jobs.add(job_id)
            if self._thread is None or self._pid != os.getpid():  # none yet, or we are a forked pool process
                self._pid = os.getpid()
                self._wake = threading.Event()
                self._thread = threading.Thread(target=self._loop, name="bgcb-heartbeat", daemon=True)
                self._thread.start()

    def stop(self, job_id: str, remove: bool) -> None:
        """Stop beating; ``remove`` the key when this process ran the job (else it may be another's)."""
        with self._lock:  # no beat of the loop can bring the key back after this
            self._jobs.discard(job_id)
            if remove:
                self.store.unbeat(job_id)

    def close(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        wake = self._wake
        while not wake.wait(self.interval):
            with self._lock:
                if not self._jobs:
                    continue
                try:
                    self.store.beat(sorted(self._jobs), worker_name())
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
        #: claimed, and those that appended updates.
        self.executing: set[str] = set()
        self.claimed: set[str] = set()
        self.appended: set[str] = set()
        self._lock = threading.Lock()

    def register(self) -> None:
        with _registry_lock:
            _registry[self.store_id] = self

    def close(self) -> None:
        with _registry_lock:
            if _registry.get(self.store_id) is self:
                del _registry[self.store_id]
        self.heart.close()

    def run(self, job_id: str) -> None:
        from celery.exceptions import Reject, SoftTimeLimitExceeded

        with self._lock:
            if job_id in self.executing:  # a duplicate message (redelivered while the job runs here)
                log.warning("bgcb-celery: job %s is already running in this process; message skipped", job_id)
                return
            self.executing.add(job_id)
        try:
            try:
                self.heart.start(job_id)
            except StoreUnavailable as exc:
                log.error("bgcb-celery: cannot start job %s (%s); returning it to the queue", job_id, exc)
                raise Reject(str(exc), requeue=True) from exc
            try:
                self.jobs.execute(job_id, stop_errors=(SoftTimeLimitExceeded,))
            except StoreUnavailable as exc:
                if job_id not in self.claimed:
                    log.error("bgcb-celery: cannot claim job %s (%s); returning it to the queue", job_id, exc)
                    raise Reject(str(exc), requeue=True) from exc
                log.error("bgcb-celery: lost Redis while running job %s: %s", job_id, exc)
            except SoftTimeLimitExceeded:
                log.error("bgcb-celery: job %s reached its time limit outside the callback", job_id)
            finally:
                # A run that did not claim the job (cancelled or expired before it started, or a
                # duplicate message of a job another worker runs) leaves the key to expire.
                self.heart.stop(job_id, remove=job_id in self.claimed)
        finally:
            self.executing.discard(job_id)
            self.claimed.discard(job_id)
            self.appended.discard(job_id)
