"""The job store and FIFO queue, on one diskcache directory.

Everything is JSON text in a :class:`diskcache.Cache` whose disk refuses to
pickle or unpickle (:class:`JsonOnlyDisk`): a shared directory must not be a
way to run code. Read-modify-write steps happen inside ``cache.transact()``
(an SQLite ``BEGIN IMMEDIATE``), so web processes, the supervisor and workers
can all write at once.

Keys::

    sched        {"queue": [job ids, oldest first (FIFO)],
                  "running": {job_id: {"pid", "started_at", "timeout", "cancel_at"}}}
    r:<id>       the job's record {"job", "status", "updates", "outcome"}; the
                 job is dropped and the record expires result_ttl seconds
                 after the job ended
    c:<key>      an outcome kept for cache_by reuse, with cache_expire
    secret       Dash 4.4's handle-signing secret (bytes; first writer wins)
    pool         the supervisor's heartbeat {"pid", "beat", "workers"}
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from diskcache import Cache, Disk
from diskcache.core import MODE_PICKLE, UNKNOWN

from bgcb.jobs import Job, Outcome, Snapshot, State, Status, Update, is_job_id

SCHED = "sched"
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


def _loads(text: Any, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Store:
    """Jobs, queue and results in ``directory``; safe across processes."""

    def __init__(self, directory: str, result_ttl: float = 3600.0) -> None:
        self.directory = directory
        self.result_ttl = result_ttl
        os.makedirs(directory, exist_ok=True)
        self.cache = Cache(
            directory,
            disk=JsonOnlyDisk,
            eviction_policy="none",  # never drop a queued job to make room
            statistics=0,
            tag_index=0,
            timeout=60,
        )

    def close(self) -> None:
        self.cache.close()

    # -- low level ---------------------------------------------------------------

    def _get(self, key: str, default: Any = None) -> Any:
        return _loads(self.cache.get(key), default)

    def _set(self, key: str, value: Any, expire: float | None = None) -> None:
        self.cache.set(key, _dumps(value), expire=expire)

    def _sched(self) -> dict[str, Any]:
        return self._get(SCHED) or {"queue": [], "running": {}}

    def _end(self, job_id: str, record: dict[str, Any], outcome: Outcome, sched: dict[str, Any]) -> None:
        """Make ``record`` terminal with ``outcome`` (inside a transaction)."""
        record["outcome"] = outcome.to_json()
        record["job"] = None
        record["status"]["state"] = outcome.state.value
        record["status"]["position"] = None
        record["status"]["finished_at"] = time.time()
        self._set("r:" + job_id, record, expire=self.result_ttl)
        sched["running"].pop(job_id, None)

    # -- web side --------------------------------------------------------------------

    def submit(self, job_id: str, job: Job) -> None:
        status = Status(State.QUEUED, submitted_at=time.time())
        record = {"job": job.to_json(), "status": status.to_json(), "updates": [], "outcome": None}
        with self.cache.transact(retry=True):
            self._set("r:" + job_id, record)
            sched = self._sched()
            sched["queue"].append(job_id)
            self._set(SCHED, sched)

    def record(self, job_id: str) -> dict[str, Any] | None:
        if not is_job_id(job_id):
            return None
        return self._get("r:" + job_id)

    def status(self, job_id: str, record: dict[str, Any] | None = None) -> Status:
        record = record if record is not None else self.record(job_id)
        if record is None:
            return Status.unknown()
        status = Status.from_json(record["status"])
        if status.state is State.QUEUED:
            queue = self._sched()["queue"]
            status.position = queue.index(job_id) if job_id in queue else 0
        return status

    def take_updates(self, job_id: str) -> list[Update]:
        """The undelivered updates, removed from the record (delivered)."""
        with self.cache.transact(retry=True):
            record = self.record(job_id)
            if not record or not record["updates"]:
                return []
            updates = record["updates"]
            record["updates"] = []
            expire = self.result_ttl if record["outcome"] is not None else None
            self._set("r:" + job_id, record, expire=expire)
            return updates

    def poll(self, job_id: str) -> Snapshot:
        """One read for a running or ended job (two while it is queued: the
        queue, for its position); a write only when updates wait."""
        record = self.record(job_id)
        if record is None:
            return Snapshot(Status.unknown())
        status = self.status(job_id, record)
        updates = self.take_updates(job_id) if record["updates"] else []
        outcome = Outcome.from_json(record["outcome"]) if record["outcome"] else None
        return Snapshot(status, updates, outcome)

    def cancel(self, job_id: str) -> bool:
        """Queued: removed from the queue, never starts. Running: marked
        cancelled (the worker sees it at its next progress call) and flagged
        for the supervisor, which kills the worker if it does not stop."""
        if not is_job_id(job_id):
            return False
        with self.cache.transact(retry=True):
            record = self.record(job_id)
            if record is None or not State(record["status"]["state"]).active:
                return False
            sched = self._sched()
            if job_id in sched["queue"]:
                sched["queue"].remove(job_id)
            entry = sched["running"].get(job_id)
            self._end(job_id, record, Outcome.cancelled(), sched)
            if entry is not None:  # still listed, for the supervisor to enforce
                entry["cancel_at"] = time.time()
                sched["running"][job_id] = entry
            self._set(SCHED, sched)
            return True

    def fail_if_running(self, job_id: str, outcome: Outcome) -> bool:
        """End a running job with ``outcome`` (a dead pool, seen from the web)."""
        with self.cache.transact(retry=True):
            record = self.record(job_id)
            if record is None or record["status"]["state"] != State.RUNNING.value:
                return False
            sched = self._sched()
            self._end(job_id, record, outcome, sched)
            self._set(SCHED, sched)
            return True

    def cached(self, cache_key: str) -> Outcome | None:
        data = self._get("c:" + cache_key)
        return Outcome.from_json(data) if data else None

    def jobs(self) -> list[tuple[str, Status]]:
        sched = self._sched()
        listing: list[tuple[str, Status]] = []
        for job_id in list(sched["running"]) + sched["queue"]:
            record = self.record(job_id)
            if record is None:
                continue
            status = Status.from_json(record["status"])
            if status.state.active:
                if status.state is State.QUEUED:
                    status.position = sched["queue"].index(job_id)
                listing.append((job_id, status))
        return listing

    def shared_secret(self, generate: Any) -> bytes:
        if self.cache.get(SECRET) is None:
            self.cache.add(SECRET, bytes(generate()))  # atomic: the first writer wins
        secret = self.cache.get(SECRET)
        return secret.encode() if isinstance(secret, str) else bytes(secret)

    def pool(self) -> dict[str, Any] | None:
        return self._get(POOL)

    # -- worker side -----------------------------------------------------------------

    def has_queued(self) -> bool:
        """A cheap read, so that idle workers woken together do not all take
        the write lock for nothing."""
        return bool(self._sched()["queue"])

    def claim(self, pid: int) -> tuple[str, Job] | None:
        """Take the oldest queued job and mark it running in worker ``pid``."""
        with self.cache.transact(retry=True):
            sched = self._sched()
            queue = sched["queue"]
            while queue:
                job_id = queue.pop(0)
                record = self.record(job_id)
                if record is not None and record.get("job") and record["status"]["state"] == State.QUEUED.value:
                    break
            else:
                self._set(SCHED, sched)
                return None
            now = time.time()
            job = record["job"]
            record["status"].update(state=State.RUNNING.value, position=None, started_at=now)
            self._set("r:" + job_id, record)
            sched["running"][job_id] = {"pid": pid, "started_at": now, "timeout": job.get("timeout"), "cancel_at": None}
            self._set(SCHED, sched)
            return job_id, Job.from_json(job)

    def state(self, job_id: str) -> State:
        record = self.record(job_id)
        return State(record["status"]["state"]) if record else State.UNKNOWN

    def append(self, job_id: str, update: Update) -> None:
        with self.cache.transact(retry=True):
            record = self.record(job_id)
            if record is not None and record["status"]["state"] == State.RUNNING.value:
                record["updates"].append(update)
                self._set("r:" + job_id, record)

    def finish(self, job_id: str, job: Job, outcome: Outcome) -> None:
        """Store how the job ended, unless it was cancelled or failed meanwhile."""
        try:
            _dumps(outcome.to_json())
        except (TypeError, ValueError) as exc:
            outcome = Outcome.failure(f"bgcb-diskcache could not store the outcome as JSON: {exc}")
        with self.cache.transact(retry=True):
            sched = self._sched()
            record = self.record(job_id)
            if record is not None and record["status"]["state"] == State.RUNNING.value:
                self._end(job_id, record, outcome, sched)
                if job.cache and outcome.kind in ("value", "no_update") and job.cache_key:
                    self._set("c:" + job.cache_key, outcome.to_json(), expire=job.cache_expire)
            else:
                sched["running"].pop(job_id, None)
            self._set(SCHED, sched)

    # -- supervisor side ---------------------------------------------------------------

    def running(self) -> dict[str, dict[str, Any]]:
        return self._sched()["running"]

    def end_jobs_of(self, pid: int, outcome: Outcome, only: str | None = None, kill: bool = False) -> list[str]:
        """End the jobs worker ``pid`` runs (``only`` that one) with ``outcome``
        when still running, and drop them from ``running``. With ``kill``, the
        worker is SIGKILLed inside the transaction, so it cannot have moved on
        to another job in between."""
        with self.cache.transact(retry=True):
            sched = self._sched()
            mine = [j for j, e in sched["running"].items() if e.get("pid") == pid and (only is None or j == only)]
            if not mine:
                return []
            if kill:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            return self._end_listed(sched, mine, outcome)

    def recover(self, outcome: Outcome) -> list[str]:
        """End every job listed as running: its pool stopped or died before
        this one started."""
        with self.cache.transact(retry=True):
            sched = self._sched()
            return self._end_listed(sched, list(sched["running"]), outcome)

    def _end_listed(self, sched: dict[str, Any], job_ids: list[str], outcome: Outcome) -> list[str]:
        """End ``job_ids`` with ``outcome`` where still running and drop them
        from ``running``; the caller holds the transaction."""
        for job_id in job_ids:
            record = self.record(job_id)
            if record is not None and record["status"]["state"] == State.RUNNING.value:
                self._end(job_id, record, outcome, sched)
            sched["running"].pop(job_id, None)
        self._set(SCHED, sched)
        return job_ids

    def beat(self, workers: int) -> None:
        self._set(POOL, {"pid": os.getpid(), "beat": time.time(), "workers": workers})

    def cleanup(self) -> int:
        """Delete expired records and cached outcomes; return how many."""
        return int(self.cache.expire())
