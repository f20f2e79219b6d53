"""An in-process backend: a dict for a store, a FIFO queue and worker threads.

Made for tests and for trying bgcb without any service. It keeps the same
promises as the real backends (FIFO, bounded concurrency, JSON payloads,
per-job results, cache by key, expiry, cancel, timeout), except that a
thread cannot be killed: a cancelled or timed-out job is marked at once and
its thread stops at the callback's next progress or set_props call.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bgcb import hookimpl
from bgcb.jobs import Job, Outcome, Snapshot, State, Status, Update, is_job_id, new_job_id, progress_update, props_update
from bgcb.runner import run, timeout_outcome

_STOP = object()


def _json_copy(value: Any) -> Any:
    """Round-trip through JSON, as a real store would: refuses non-JSON data."""
    return json.loads(json.dumps(value))


@dataclass
class _Record:
    job: Job
    status: Status
    updates: list[Update] = field(default_factory=list)
    delivered: int = 0
    outcome: Outcome | None = None


class _Channel:
    def __init__(self, backend: TestingBackend, job_id: str) -> None:
        self.backend = backend
        self.job_id = job_id

    def progress(self, value: list[Any]) -> None:
        self.backend._append(self.job_id, progress_update(_json_copy(value)))

    def set_props(self, component_id: str, props: dict[str, Any]) -> None:
        self.backend._append(self.job_id, props_update(component_id, _json_copy(props)))

    def cancelled(self) -> bool:
        return self.backend._state(self.job_id) is not State.RUNNING


class TestingBackend:
    """The ``testing`` backend. Options: ``workers`` (threads), ``result_ttl``
    (seconds a finished job's record is kept)."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._records: dict[str, _Record] = {}
        self._cache: dict[str, tuple[dict[str, Any], float | None]] = {}
        self._queue: queue.Queue[Any] = queue.Queue()
        self._order: list[str] = []  # queued ids, FIFO
        self._threads: list[threading.Thread] = []
        self._secret: bytes | None = None
        self._hook: Any = None
        self.result_ttl = 3600.0

    # -- configuration -----------------------------------------------------------

    @hookimpl
    def bgcb_options(self) -> dict[str, Any]:
        return {"workers": 2, "result_ttl": 3600.0}

    @hookimpl
    def bgcb_configure(self, options: dict[str, Any], hook: Any) -> None:
        self._hook = hook
        self.result_ttl = float(options.get("result_ttl", 3600.0))
        for i in range(max(1, int(options.get("workers", 2)))):
            thread = threading.Thread(target=self._work, name=f"bgcb-testing-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @hookimpl
    def bgcb_close(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    # -- the worker loop ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is _STOP:
                return
            with self._lock:
                if job_id in self._order:
                    self._order.remove(job_id)
                record = self._records.get(job_id)
                if record is None or record.status.state is not State.QUEUED:
                    continue  # cancelled while queued: never starts
                record.status.state = State.RUNNING
                record.status.position = None
                record.status.started_at = time.time()
                job = record.job
            outcome = run(job, _Channel(self, job_id), self._hook, job_id)
            self._finish(job_id, outcome)

    def _finish(self, job_id: str, outcome: Outcome) -> None:
        try:
            stored = Outcome.from_json(_json_copy(outcome.to_json()))
        except (TypeError, ValueError) as exc:
            stored = Outcome.failure(f"bgcb-testing could not store the outcome: {exc}")
        with self._lock:
            record = self._records.get(job_id)
            if record is None or record.status.state is not State.RUNNING:
                return  # cancelled or timed out meanwhile: that state stands
            record.outcome = stored
            record.status.state = stored.state
            record.status.finished_at = time.time()
            if record.job.cache and stored.kind in ("value", "no_update"):
                expire = record.job.cache_expire
                self._cache[record.job.cache_key] = (stored.to_json(), time.time() + expire if expire else None)

    def _append(self, job_id: str, update: Update) -> None:
        with self._lock:
            record = self._records.get(job_id)
            if record is not None and record.status.state is State.RUNNING:
                record.updates.append(update)

    def _state(self, job_id: str) -> State:
        with self._lock:
            record = self._record(job_id)
            return record.status.state if record else State.UNKNOWN

    def _record(self, job_id: str) -> _Record | None:
        """The live record of ``job_id``, after expiry and timeout checks."""
        if not is_job_id(job_id):
            return None
        record = self._records.get(job_id)
        if record is None:
            return None
        now = time.time()
        st = record.status
        if st.finished_at and now - st.finished_at > self.result_ttl:
            del self._records[job_id]
            return None
        timeout = record.job.timeout
        if st.state is State.RUNNING and timeout and st.started_at and now - st.started_at > timeout:
            record.outcome = timeout_outcome(timeout)
            st.state, st.finished_at = State.FAILED, now
        return record

    # -- jobs -------------------------------------------------------------------------

    @hookimpl
    def bgcb_submit(self, job: Job) -> str:
        job = Job.from_json(_json_copy(job.to_json()))
        job_id = new_job_id()
        with self._lock:
            self._records[job_id] = _Record(job, Status(State.QUEUED, submitted_at=time.time()))
            self._order.append(job_id)
        self._queue.put(job_id)
        return job_id

    @hookimpl
    def bgcb_status(self, job_id: str) -> Status:
        with self._lock:
            record = self._record(job_id)
            if record is None:
                return Status.unknown()
            status = Status(**vars(record.status))
            if status.state is State.QUEUED:
                status.position = self._order.index(job_id) if job_id in self._order else 0
            return status

    @hookimpl
    def bgcb_progress(self, job_id: str) -> list[Update]:
        with self._lock:
            record = self._record(job_id)
            if record is None:
                return []
            fresh = record.updates[record.delivered :]
            record.delivered = len(record.updates)
            return [dict(u) for u in fresh]

    @hookimpl
    def bgcb_result(self, job_id: str) -> Outcome | None:
        with self._lock:
            record = self._record(job_id)
            return None if record is None or record.outcome is None else Outcome.from_json(record.outcome.to_json())

    @hookimpl
    def bgcb_poll(self, job_id: str) -> Snapshot:
        with self._lock:
            status = self.bgcb_status(job_id)
            return Snapshot(status, self.bgcb_progress(job_id), self.bgcb_result(job_id))

    @hookimpl
    def bgcb_cancel(self, job_id: str) -> bool:
        with self._lock:
            record = self._record(job_id)
            if record is None or not record.status.state.active:
                return False
            record.status.state = State.CANCELLED
            record.status.finished_at = time.time()
            record.outcome = Outcome.cancelled()
            if job_id in self._order:
                self._order.remove(job_id)
            return True

    @hookimpl
    def bgcb_cached(self, cache_key: str) -> Outcome | None:
        with self._lock:
            entry = self._cache.get(cache_key)
            if entry is None:
                return None
            data, expires = entry
            if expires is not None and time.time() > expires:
                del self._cache[cache_key]
                return None
            return Outcome.from_json(data)

    @hookimpl
    def bgcb_jobs(self) -> list[tuple[str, Status]]:
        with self._lock:
            ids = [i for i, r in self._records.items() if r.status.state.active]
            return [(i, self.bgcb_status(i)) for i in ids]

    @hookimpl
    def bgcb_shared_secret(self, generate: Callable[[], bytes]) -> bytes:
        with self._lock:
            if self._secret is None:
                self._secret = generate()
            return self._secret
