"""Records, the FIFO queue and the running list, on one diskcache directory.

Everything is JSON text in a :class:`diskcache.Cache` whose disk refuses to
pickle or unpickle (:class:`JsonOnlyDisk`): a shared directory must not be a
way to run code. Read-modify-write steps happen inside ``cache.transact()``
(an SQLite ``BEGIN IMMEDIATE``), so web processes, the supervisor and workers
can all write at once. The store keeps what the core gives it as opaque text
and decides nothing about a job's life: the one conditional write is
:meth:`Store.cas`, the core's compare-and-set.

Keys::

    r:<id>     {"state", "job", "data", "updates": [...], "timeout"}; expires
               after the ttl of the core's last write
    queue      [job ids, oldest first]
    running    {job_id: {"pid", "started_at", "timeout", "stop_at"}}: who holds
               each claimed job, for the supervisor
    c:<key>    an outcome kept for cache_by reuse, with its own expiry
    secret     Dash 4.4's handle-signing secret (bytes; first writer wins)
    pool       the supervisor's heartbeat {"pid", "beat", "workers"}
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from diskcache import Cache, Disk
from diskcache.core import MODE_PICKLE, UNKNOWN

from bgcb import Stored

from . import defaults

QUEUE = "queue"
RUNNING = "running"
SECRET = "secret"
POOL = "pool"


class JsonOnlyDisk(Disk):
    """A diskcache disk that stores only ``str``/``bytes`` and never unpickles.

    diskcache pickles any other value, and unpickles whatever mode a row says;
    a writer with access to the directory could otherwise plant a pickle.
    """

    def put(self, key: Any) -> Any:
        if not isinstance(key, (str, bytes)):
            raise TypeError(f"bgcb-diskcache keys are text, not {type(key).__name__}")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise ValueError("bgcb-diskcache refuses to unpickle a key found in its store")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> Any:
        if not read and not isinstance(value, (str, bytes)):
            raise TypeError(f"bgcb-diskcache stores JSON text only, not {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode == MODE_PICKLE:
            raise ValueError("bgcb-diskcache refuses to unpickle a value found in its store")
        return super().fetch(mode, filename, value, read)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _left(expire_time: float | None) -> float | None:
    """Seconds until an absolute diskcache expiry time, to keep it when rewriting a key."""
    return None if expire_time is None else max(0.001, expire_time - time.time())


class Store:
    """Jobs, queue and results in ``directory``; safe across processes and threads.

    Open one per process: a forked worker opens its own (SQLite connections
    must not cross a fork).
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        #: The job text the last claim read (id, text): the core loads it next, without a second read.
        self._claimed: tuple[str, str] | None = None
        os.makedirs(directory, exist_ok=True)
        self.cache = Cache(
            directory,
            disk=JsonOnlyDisk,
            eviction_policy="none",  # never drop a queued job to make room
            statistics=0,
            tag_index=0,
            timeout=defaults.SQLITE_TIMEOUT,
        )

    def close(self) -> None:
        self.cache.close()

    # -- low level ---------------------------------------------------------------

    def _get(self, key: str, default: Any = None) -> Any:
        text = self.cache.get(key)
        return default if text is None else json.loads(text)

    def _set(self, key: str, value: Any, expire: float | None = None) -> None:
        self.cache.set(key, _dumps(value), expire=expire)

    def _record(self, job_id: str) -> tuple[dict[str, Any] | None, float | None]:
        """The record and its absolute expiry time."""
        text, expire_time = self.cache.get("r:" + job_id, expire_time=True)
        return (None, None) if text is None else (json.loads(text), expire_time)

    def queue(self) -> list[str]:
        return list(self._get(QUEUE, []))

    def running(self) -> dict[str, dict[str, Any]]:
        """Claimed jobs by id: the worker pid holding each, when it took it, its timeout and stop time."""
        return dict(self._get(RUNNING, {}))

    # -- the storage hooks -----------------------------------------------------------

    def enqueue(self, job_id: str, job: str, data: str, timeout: float | None, ttl: float) -> None:
        """Store the record and queue its id, in one transaction: no worker sees an id without a record."""
        record: dict[str, Any] = {"state": "queued", "job": job, "data": data, "updates": [], "timeout": timeout}
        with self.cache.transact(retry=True):
            self._set("r:" + job_id, record, expire=ttl)
            self._set(QUEUE, [*self.queue(), job_id])

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
            queue = self.queue()
            position = queue.index(job_id) if job_id in queue else 0  # 0: claimed, about to start
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
                queue = self.queue()
                if job_id in queue:
                    queue.remove(job_id)
                    self._set(QUEUE, queue)
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
        text = self.cache.get("c:" + cache_key)
        return None if text is None else str(text)

    def active(self) -> list[str]:
        """Ids listed as running (in the order they were claimed), then queued ones in queue order."""
        return [*self.running(), *self.queue()]

    def shared_secret(self, generate: Callable[[], bytes]) -> bytes:
        if self.cache.get(SECRET) is None:
            self.cache.add(SECRET, bytes(generate()))  # atomic: the first writer wins
        secret = self.cache.get(SECRET)
        return secret.encode() if isinstance(secret, str) else bytes(secret)

    # -- the worker loop and the supervisor --------------------------------------------

    def has_queued(self) -> bool:
        """A cheap read, so that idle workers woken together do not all take the write lock for nothing."""
        return bool(self.queue())

    def claim(self, pid: int) -> str | None:
        """Pop the oldest queued id and list it as held by worker ``pid``, in one transaction.

        Listing it before the worker does anything else means that a worker
        killed right after the pop still has its job attributed to it.
        """
        with self.cache.transact(retry=True):
            queue = self.queue()
            job_id, record = "", None
            while queue and record is None:
                job_id = queue.pop(0)
                record, _ = self._record(job_id)  # None: it expired while queued, drop it
            self._set(QUEUE, queue)
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

    def beat(self, workers: int) -> None:
        self._set(POOL, {"pid": os.getpid(), "beat": time.time(), "workers": workers})

    def pool(self) -> dict[str, Any] | None:
        """The heartbeat of the pool serving this directory, if one beat."""
        info = self._get(POOL)
        return info if isinstance(info, dict) else None

    def forget_pool(self) -> None:
        self.cache.delete(POOL)

    def cleanup(self) -> int:
        """Delete expired records and cached outcomes; return how many."""
        return int(self.cache.expire())
