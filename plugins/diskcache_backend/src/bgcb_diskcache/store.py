"""Records, the queue and the running list, on one diskcache directory.

Everything is JSON text in a :class:`diskcache.Cache` whose disk refuses to
pickle or unpickle (:class:`JsonOnlyDisk`): a shared directory must not be a
way to run code. Read-modify-write steps happen inside ``cache.transact()``
(an SQLite ``BEGIN IMMEDIATE``), so web processes, the supervisor and workers
can all write at once. The store keeps what the core gives it as opaque text
and decides nothing about a job's life: the one conditional write is
:meth:`Store.cas`, the core's compare-and-set.

Keys::

    r:<id>     {"state", "job", "data", "updates": [...], "timeout", "at"}; expires
               after the ttl of the core's last write ("at": when it was queued)
    queue      the core's FairQueue state (ids with lane and priority, in arrival order)
    running    {job_id: {"pid", "started_at", "timeout", "stop_at"}}: who holds
               each claimed job, for the supervisor
    c:<key>    an outcome kept for cache_by reuse, with its own expiry
    secret     Dash 4.4's handle-signing secret (bytes; first writer wins)
    s:<id>     when a browser last polled the job (for abandoned jobs)
    pool       the supervisor's heartbeat {"pid", "beat", "workers", "owner"} (owner: the portable lock's lease)

A value bgcb cannot have written (a planted pickle, bytes that are not JSON,
another shape) is logged and read as absent: a record as an unknown job,
the queue as rebuilt from the queued records, the running list as empty.
One bad key never stops the pool.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from diskcache import Cache

from bgcb import Stored

from . import defaults
from .jsondisk import JsonOnlyDisk
from .lease import PoolRecord
from .queue_record import QUEUE, QueueRecord

RUNNING = "running"
SECRET = "secret"
#: Fields of a record and their types: anything else in an ``r:`` key was not written by bgcb.
RECORD_FIELDS = {"state": str, "job": str, "data": str, "updates": list}

log = logging.getLogger("bgcb.diskcache")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _left(expire_time: float | None) -> float | None:
    """Seconds until an absolute diskcache expiry time, to keep it when rewriting a key."""
    return None if expire_time is None else max(0.001, expire_time - time.time())


class Store(QueueRecord, PoolRecord):
    """Jobs, queue and results in ``directory``; safe across processes and threads.

    Open one per process: a forked worker opens its own (SQLite connections
    must not cross a fork).
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        #: The job text the last claim read (id, text): the core loads it next, without a second read.
        self._claimed: tuple[str, str] | None = None
        self._warned: set[str] = set()
        os.makedirs(directory, exist_ok=True)
        self.cache = Cache(
            directory,
            disk=JsonOnlyDisk,
            eviction_policy="none",  # never drop a queued job to make room
            # Every value in SQLite, inside its transactions: diskcache keeps values of 32 KB and more in files,
            # and a read racing a rewrite of such a record found it absent (an "unknown" job that was running).
            disk_min_file_size=2**40,
            statistics=0,
            tag_index=0,
            cull_limit=0,  # no look for expired keys in every write: the supervisor's cleanup() removes them
            timeout=defaults.SQLITE_TIMEOUT,
        )

    def close(self) -> None:
        self.cache.close()

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        """One SQLite transaction around several of this store's calls (they nest in it), from this thread."""
        return self.cache.transact(retry=True)

    # -- low level ---------------------------------------------------------------

    def _load(self, key: str, kind: type) -> tuple[Any, float | None, bool]:
        """The JSON value under ``key`` and its expiry time; ``bad`` when a value is there but is not
        one bgcb wrote (diskcache refused a pickle, the text is not JSON of type ``kind``)."""
        try:
            text, expire_time = self.cache.get(key, expire_time=True)
            if text is None:
                return None, None, False
            value = json.loads(text)
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            self._warn(key, f"it is unreadable ({exc})")
            return None, None, True
        if not isinstance(value, kind):
            self._warn(key, "it is not a value bgcb writes there")
            return None, None, True
        return value, expire_time, False

    def _warn(self, key: str, why: str) -> None:
        """Log a bad key once per process (polls read it again and again)."""
        if key not in self._warned and len(self._warned) < 10_000:
            self._warned.add(key)
            log.warning("bgcb-diskcache: ignoring %r in %s: %s", key, self.directory, why)

    def _get(self, key: str, default: Any, kind: type) -> Any:
        value, _, _ = self._load(key, kind)
        return default if value is None else value

    def _set(self, key: str, value: Any, expire: float | None = None) -> None:
        self.cache.set(key, _dumps(value), expire=expire)

    def _record(self, job_id: str) -> tuple[dict[str, Any] | None, float | None]:
        """The record and its absolute expiry time; (None, None) when absent or unreadable."""
        record, expire_time, _ = self._load("r:" + job_id, dict)
        if record is not None and not all(isinstance(record.get(f), t) for f, t in RECORD_FIELDS.items()):
            self._warn("r:" + job_id, "it is not a record bgcb wrote")
            record = None
        return (None, None) if record is None else (record, expire_time)

    def running(self) -> dict[str, dict[str, Any]]:
        """Claimed jobs by id: the worker pid holding each, when it took it, its timeout and stop time."""
        entries = self._get(RUNNING, {}, dict)
        return {j: e for j, e in entries.items() if isinstance(e, dict) and isinstance(e.get("pid"), int)}

    # -- the storage hooks -----------------------------------------------------------

    def enqueue(
        self,
        job_id: str,
        job: str,
        data: str,
        timeout: float | None,
        ttl: float,
        lane: str | None = None,
        priority: int | None = None,
        cap: int | None = None,
    ) -> None:
        """Store the record and queue its id, in one transaction: no worker sees an id without a record."""
        record: dict[str, Any] = {"state": "queued", "job": job, "data": data, "updates": [], "timeout": timeout}
        record.update(at=time.time(), lane=lane, priority=priority, cap=cap)  # to rebuild the queue from, should its key be lost
        with self.cache.transact(retry=True):
            self._set("r:" + job_id, record, expire=ttl)
            fair = self.fair()
            fair.push(job_id, lane, priority, cap)
            self._set(QUEUE, fair.to_json())

    def read(self, job_id: str, drain: bool) -> Stored | None:
        """State, data, drained updates and queue position; one read unless queued or updates wait."""
        record, _ = self._record(job_id)
        if record is None:
            return None
        updates: list[str] = []
        if drain and record["updates"]:
            with self.cache.transact(retry=True):
                record, expire_time = self._record(job_id)
                if record is None:
                    return None
                updates, record["updates"] = record["updates"], []
                self._set("r:" + job_id, record, expire=_left(expire_time))
        position = None
        if record["state"] == "queued":
            fair = self.fair()
            position = fair.position(job_id)
            if position is None and job_id not in fair:
                position = 0  # claimed, about to start (one waiting to be queued again has no place)
        return Stored(record["state"], record["data"], updates, position)

    def load(self, job_id: str) -> str | None:
        claimed, self._claimed = self._claimed, None
        if claimed is not None and claimed[0] == job_id:
            return claimed[1]
        record, _ = self._record(job_id)
        return None if record is None else str(record["job"])

    def cas(self, job_id: str, expect: Sequence[str], state: str, data: str, ttl: float) -> bool:
        """If the state is one of ``expect``, write ``state`` and ``data`` (expiring in ``ttl``), atomically.

        A job leaving ``queued`` for any other state leaves the queue in the
        same transaction, so a cancelled queued job is never claimed.
        """
        with self.cache.transact(retry=True):
            record, _ = self._record(job_id)
            if record is None or record["state"] not in expect:
                return False
            was = record["state"]
            record["state"], record["data"] = state, data
            self._set("r:" + job_id, record, expire=ttl)
            if was == "queued" and state != "queued":
                fair = self.fair()
                if fair.remove(job_id):
                    self._set(QUEUE, fair.to_json())
            elif was == "running" and state != "running" and record.get("cap") is not None:
                fair = self.fair()  # a job of a capped lane stopped running: the lane has room again
                fair.finished(job_id)
                self._set(QUEUE, fair.to_json())
            return True

    def append(self, job_id: str, update: str, ttl: float) -> None:
        """Add one update at the end of the record's list, keeping the record's expiry."""
        with self.cache.transact(retry=True):
            record, expire_time = self._record(job_id)
            if record is None:
                return
            record["updates"].append(update)
            left = _left(expire_time)
            self._set("r:" + job_id, record, expire=ttl if left is None else left)

    def cache_put(self, cache_key: str, outcome: str, ttl: float) -> None:
        """Keep (or replace) the outcome under ``cache_key`` for ``ttl`` seconds."""
        self.cache.set("c:" + cache_key, outcome, expire=ttl)

    def cache_get(self, cache_key: str) -> str | None:
        try:
            text = self.cache.get("c:" + cache_key)
        except ValueError as exc:  # a planted pickle: diskcache refused it
            log.warning("bgcb-diskcache: ignoring the unreadable cached outcome %r (%s)", cache_key, exc)
            return None
        return text if isinstance(text, str) else None

    def active(self) -> list[str]:
        """Ids listed as running (in the order they were claimed), then queued ones in queue order."""
        return [*self.running(), *self.queue()]

    def shared_secret(self, generate: Callable[[], bytes]) -> bytes:
        for _ in range(2):
            try:
                if self.cache.get(SECRET) is None:
                    self.cache.add(SECRET, bytes(generate()))  # atomic: the first writer wins
                secret = self.cache.get(SECRET)
            except ValueError as exc:  # not a value bgcb writes: replace it
                log.warning("bgcb-diskcache: replacing the unreadable shared secret in %s (%s)", self.directory, exc)
                self.cache.delete(SECRET)
                continue
            if isinstance(secret, (str, bytes)) and secret:
                return secret.encode() if isinstance(secret, str) else bytes(secret)
            self.cache.delete(SECRET)
        raise RuntimeError(f"bgcb-diskcache: cannot keep a shared secret in {self.directory}")

    # -- the worker loop and the supervisor --------------------------------------------

    def claim(self, pid: int) -> str | None:
        """Pop the next queued id and list it as held by worker ``pid``, in one transaction.

        Listing it before the worker does anything else means that a worker
        killed right after the pop still has its job attributed to it.
        """
        with self.cache.transact(retry=True):
            fair = self.fair()
            job_id, record = "", None
            while record is None:
                popped = fair.pop()  # None: empty, or only lanes with their running cap reached
                if popped is None:
                    break
                job_id = popped
                record, _ = self._record(job_id)  # None: it expired while queued, drop it
            self._set(QUEUE, fair.to_json())
            if record is None:
                return None
            running = self.running()
            entry = {"pid": pid, "started_at": time.time(), "timeout": record.get("timeout"), "stop_at": None}
            running[job_id] = entry
            self._set(RUNNING, running)
        self._claimed = (job_id, str(record["job"]))
        return job_id

    def unlist(self, job_id: str, pid: int | None = None) -> None:
        """Drop ``job_id`` from the running list (only if ``pid`` holds it, when given)."""
        with self.cache.transact(retry=True):
            running = self.running()
            entry = running.get(job_id)
            if entry is not None and (pid is None or entry["pid"] == pid):
                del running[job_id]
                self._set(RUNNING, running)

    def request_stop(self, job_id: str, after: float) -> None:
        """Ask the supervisor to kill the worker holding ``job_id`` if it still does ``after`` s from now."""
        with self.cache.transact(retry=True):
            running = self.running()
            entry = running.get(job_id)
            if entry is None:
                return  # not held by a worker (any more)
            at = time.time() + after
            entry["stop_at"] = at if entry.get("stop_at") is None else min(entry["stop_at"], at)
            self._set(RUNNING, running)

    def kill_holder(self, job_id: str, pid: int, kill: Callable[[int], None]) -> bool:
        """``kill(pid)`` if ``pid`` still holds ``job_id``, inside a transaction: the
        worker cannot have moved on to another job in between. True if it did."""
        with self.cache.transact(retry=True):
            entry = self.running().get(job_id)
            if entry is None or entry["pid"] != pid:
                return False
            kill(pid)
            return True

    def touch(self, job_id: str, ttl: float) -> None:
        self._set("s:" + job_id, time.time(), expire=ttl)

    def seen(self, job_id: str) -> float | None:
        return self._get("s:" + job_id, None, float)

    def cleanup(self) -> int:
        """Delete expired records and cached outcomes; return how many."""
        return int(self.cache.expire())
