"""An in-process backend: dicts for a store, a FIFO queue and worker threads.

Made for tests and for trying bgcb without any service. The core runs the
job lifecycle; this backend only stores text under a lock and runs worker
threads that hand each queued id to ``jobs.execute``. A thread cannot be
killed, so it has no ``bgcb_stop``: a cancelled or timed-out job is ended by
the core at once and its thread stops at the callback's next progress or
set_props call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bgcb import Counts, Stored, hookimpl
from bgcb.hookspecs import Role
from bgcb.lifecycle import Lifecycle
from bgcb.queueing import FairQueue

#: Default number of worker threads.
WORKERS = 2


@dataclass
class _Record:
    state: str
    job: str
    data: str
    expires: float
    updates: list[str] = field(default_factory=list)
    #: Bumped by every change after enqueue, for bgcb_wait.
    version: int = 0


class TestingBackend:
    """The ``testing`` backend. Option: ``workers`` (threads)."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._records: dict[str, _Record] = {}
        self._cache: dict[str, tuple[str, float]] = {}
        self._polled: dict[str, float] = {}  # job id -> when a browser last polled it
        self._queue = FairQueue()  # the core's order: priorities, owners' turns, first in first out
        self._threads: list[threading.Thread] = []
        self._secret: bytes | None = None
        self._stopping = False
        #: Per thread: the version of each record this thread last read (bgcb_wait waits for a newer one).
        self._seen = threading.local()

    @hookimpl
    def bgcb_options(self) -> dict[str, Any]:
        return {"workers": WORKERS}

    @hookimpl
    def bgcb_configure(self, options: dict[str, Any], role: Role, jobs: Lifecycle) -> None:
        if role == "cli":
            return  # bgcb jobs/doctor: storage only (and this store lives in one process)
        for i in range(max(1, int(options["workers"]))):
            thread = threading.Thread(target=self._work, args=(jobs,), name=f"bgcb-testing-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @hookimpl
    def bgcb_touch(self, job_id: str) -> None:
        with self._lock:
            self._polled[job_id] = time.time()

    @hookimpl
    def bgcb_seen(self, job_id: str) -> float | None:
        with self._lock:
            return self._polled.get(job_id)

    @hookimpl
    def bgcb_capabilities(self) -> list[str]:
        return ["ordering", "running_limits", "deferral"]

    @hookimpl
    def bgcb_capacity(self) -> int | None:
        """The worker threads alive in this process."""
        return sum(t.is_alive() for t in self._threads) or None

    @hookimpl
    def bgcb_close(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _work(self, jobs: Lifecycle) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stopping:
                        return
                    job_id = self._queue.pop()
                    if job_id is not None:
                        break
                    due = self._queue.next_due()  # a deferred job, or a lane's cap freeing (cas notifies)
                    self._lock.wait(None if due is None else max(0.0, due - time.time()))
            jobs.execute(job_id)

    def _live(self, job_id: str) -> _Record | None:
        """The record of ``job_id`` unless it expired (caller holds the lock)."""
        record = self._records.get(job_id)
        if record is not None and time.time() > record.expires:
            del self._records[job_id]
            return None
        return record

    # -- storage -----------------------------------------------------------------

    @hookimpl
    def bgcb_enqueue(
        self, job_id: str, job: str, data: str, ttl: float, lane: str | None, priority: int | None, cap: int | None
    ) -> None:
        with self._lock:
            self._records[job_id] = _Record("queued", job, data, time.time() + ttl)
            self._queue.push(job_id, lane, priority, cap)
            self._lock.notify()

    @hookimpl
    def bgcb_defer(self, job_id: str, delay: float, lane: str | None, priority: int | None, cap: int | None) -> None:
        with self._lock:
            self._queue.defer(job_id, time.time() + delay, lane, priority, cap)
            self._lock.notify_all()  # a sleeping worker recomputes its wake-up time

    @hookimpl
    def bgcb_counts(self, lane: str) -> Counts:
        with self._lock:
            return self._queue.counts(lane)

    @hookimpl
    def bgcb_read(self, job_id: str, drain: bool) -> Stored | None:
        with self._lock:
            record = self._live(job_id)
            if record is None:
                return None
            updates, position = [], None
            if drain:
                updates, record.updates = record.updates, []
            if record.state == "queued":
                position = self._queue.position(job_id)
            self._versions()[job_id] = record.version
            return Stored(record.state, record.data, updates, position)

    @hookimpl
    def bgcb_load(self, job_id: str) -> str | None:
        with self._lock:
            record = self._live(job_id)
            return record.job if record else None

    @hookimpl
    def bgcb_cas(self, job_id: str, expect: Sequence[str], state: str, data: str, ttl: float) -> bool:
        with self._lock:
            record = self._live(job_id)
            if record is None or record.state not in expect:
                return False
            record.state, record.data, record.expires = state, data, time.time() + ttl
            if state != "queued":
                self._queue.remove(job_id)
            if state != "running":
                self._queue.finished(job_id)  # its lane's running cap has room again
            self._changed(record)
            return True

    @hookimpl
    def bgcb_append(self, job_id: str, update: str) -> None:
        with self._lock:
            record = self._live(job_id)
            if record is not None:
                record.updates.append(update)
                self._changed(record)

    def _changed(self, record: _Record) -> None:
        """(Caller holds the lock.) Wake the requests waiting on a record."""
        record.version += 1
        self._lock.notify_all()

    def _versions(self) -> dict[str, int]:
        versions: dict[str, int] | None = getattr(self._seen, "versions", None)
        if versions is None or len(versions) > 1024:  # ids read but never waited on: forget them now and then
            versions = self._seen.versions = {}
        return versions

    @hookimpl
    def bgcb_wait(self, job_id: str, seconds: float) -> bool:
        """Until the record changes after this thread's last read of it (at once if it never read it)."""
        deadline = time.monotonic() + seconds
        with self._lock:
            seen = self._versions().pop(job_id, None)
            while True:
                record = self._live(job_id)
                if seen is None or record is None or record.version != seen:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)

    @hookimpl
    def bgcb_cache_put(self, cache_key: str, outcome: str, ttl: float) -> None:
        with self._lock:
            self._cache[cache_key] = (outcome, time.time() + ttl)

    @hookimpl
    def bgcb_cache_get(self, cache_key: str) -> str | None:
        with self._lock:
            outcome, expires = self._cache.get(cache_key, (None, 0.0))
            if outcome is not None and time.time() > expires:
                del self._cache[cache_key]
                return None
            return outcome

    @hookimpl
    def bgcb_active(self) -> list[str]:
        with self._lock:
            running = [i for i, r in self._records.items() if r.state == "running"]
            return running + self._queue.ids()

    @hookimpl
    def bgcb_shared_secret(self, generate: Callable[[], bytes]) -> bytes:
        with self._lock:
            if self._secret is None:
                self._secret = generate()
            return self._secret
