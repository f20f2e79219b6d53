"""bgcb-sqlite: a bgcb backend on one SQLite file, shared by the web and ``bgcb worker`` processes of one machine."""

from __future__ import annotations

from bgcb.contract import built_for

built_for("bgcb-sqlite", 2)  # a core of another backend contract is refused here, at import
# ruff: noqa: E402 (the imports below come after the contract check)

import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bgcb import Stored, hookimpl
from bgcb.contract import built_for
from bgcb.lifecycle import Lifecycle

SCHEMA = """PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY, id UNIQUE, state DEFAULT 'queued', job, data, expires, pid);
CREATE TABLE IF NOT EXISTS updates (n INTEGER PRIMARY KEY, job, body);
CREATE TRIGGER IF NOT EXISTS gone AFTER DELETE ON jobs BEGIN DELETE FROM updates WHERE job = old.id; END;
CREATE TABLE IF NOT EXISTS kv (key PRIMARY KEY, value, expires);"""
# A worker thread takes the oldest queued job no live process took (once); the core's compare-and-set then claims it.
TAKE = "UPDATE jobs SET pid = ? WHERE seq = (SELECT MIN(seq) FROM jobs WHERE state = 'queued' AND NOT alive(pid)) RETURNING id"
READ = "SELECT state, data, pid, (SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND seq < j.seq) FROM jobs j WHERE id = ?"


def _alive(pid: int) -> bool:
    try:
        return os.getpgid(pid) >= 0  # any user's process, and no signal sent
    except ProcessLookupError:
        return False


class SqliteBackend:
    """Options: ``path`` (the database file; a temporary one if empty), ``workers`` (threads per process)."""

    @hookimpl
    def bgcb_options(self) -> dict[str, Any]:
        return {"path": "", "workers": 2}

    @hookimpl
    def bgcb_configure(self, options: dict[str, Any], role: str, jobs: Lifecycle) -> None:
        self.path = options["path"] or os.path.join(tempfile.mkdtemp(prefix="bgcb-sqlite-"), "jobs.db")
        self.role, self.jobs, self.workers, self.threads = role, jobs, int(options["workers"]), list[threading.Thread]()
        self.local, self.stop, self.lock = threading.local(), threading.Event(), threading.Lock()
        sqlite3.connect(self.path, timeout=30).executescript(SCHEMA).connection.close()

    def _sql(self, query: str, *args: Any) -> list[Any]:
        if getattr(self.local, "db", None) is None:  # one connection per thread, autocommit: each statement is atomic
            self.local.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.local.db.create_function("alive", 1, lambda pid: pid is not None and _alive(pid))
        return self.local.db.execute(query, args).fetchall()  # fetch all: the statement ends and commits

    # Threads start at the first job of a web process, or in `bgcb worker`: the app's callbacks are registered by then.
    def _start(self) -> None:
        with self.lock:
            while len(self.threads) < self.workers and not self.stop.is_set():
                self.threads.append(threading.Thread(target=self._work, name="bgcb-sqlite", daemon=True))
                self.threads[-1].start()

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                taken = self._sql(TAKE, os.getpid())
                self.jobs.execute(taken[0][0]) if taken else self.stop.wait(0.02)
            except Exception:  # a locked file must not end the thread
                logging.getLogger(__name__).exception("bgcb-sqlite: worker thread error")
                self.stop.wait(0.5)

    @hookimpl
    def bgcb_run_worker(self, app_module: str) -> bool:
        self._start()
        return self.stop.wait()  # True, after bgcb_close (or Ctrl-C)

    @hookimpl
    def bgcb_close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)

    @hookimpl
    def bgcb_enqueue(self, job_id: str, job: str, data: str, ttl: float) -> None:
        self._sql("DELETE FROM jobs WHERE expires < ?", time.time())  # and their updates (trigger)
        self._sql("INSERT INTO jobs (id, job, data, expires) VALUES (?, ?, ?, ?)", job_id, job, data, time.time() + ttl)
        if self.role == "web":
            self._start()

    @hookimpl
    def bgcb_read(self, job_id: str, drain: bool) -> Stored | None:
        for state, data, pid, ahead in self._sql(READ + " AND expires > ?", job_id, time.time()):  # at most one row
            # the updates after the state: a terminal state comes with every update the job made
            drained = self._sql("DELETE FROM updates WHERE job = ? RETURNING n, body", job_id) if drain else []
            alive = _alive(pid) if state == "running" and pid else None  # False: the core declares the job lost
            return Stored(state, data, [body for _, body in sorted(drained)], ahead if state == "queued" else None, alive)
        return None

    @hookimpl
    def bgcb_load(self, job_id: str) -> str | None:
        return (self._sql("SELECT job FROM jobs WHERE id = ? AND expires > ?", job_id, time.time()) or [[None]])[0][0]

    @hookimpl
    def bgcb_cas(self, job_id: str, expect: Sequence[str], state: str, data: str, ttl: float) -> bool:
        # The process that moves a job to running runs it: bgcb_read checks that pid. Leaving 'queued' leaves the queue.
        query = f"""UPDATE jobs SET state = ?, data = ?, expires = ?, pid = CASE WHEN ? = 'running' THEN ? ELSE pid END
            WHERE id = ? AND expires > ? AND state IN ({",".join("?" * len(expect))}) RETURNING id"""
        return bool(self._sql(query, state, data, time.time() + ttl, state, os.getpid(), job_id, time.time(), *expect))

    @hookimpl
    def bgcb_append(self, job_id: str, update: str) -> None:  # kept as long as the job's record
        self._sql("INSERT INTO updates (job, body) VALUES (?, ?)", job_id, update)

    @hookimpl
    def bgcb_cache_put(self, cache_key: str, outcome: str, ttl: float) -> None:
        self._sql("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", cache_key, outcome, time.time() + ttl)

    @hookimpl
    def bgcb_cache_get(self, cache_key: str) -> str | None:  # Dash's cache keys are hashes: never 'secret'
        return (self._sql("SELECT value FROM kv WHERE key = ? AND expires > ?", cache_key, time.time()) or [[None]])[0][0]

    @hookimpl
    def bgcb_active(self) -> list[str]:
        query = "SELECT id FROM jobs WHERE state IN ('running', 'queued') AND expires > ? ORDER BY state = 'queued', seq"
        return [job_id for (job_id,) in self._sql(query, time.time())]

    @hookimpl
    def bgcb_shared_secret(self, generate: Callable[[], bytes]) -> bytes:
        upsert = "INSERT INTO kv VALUES ('secret', ?, NULL) ON CONFLICT DO UPDATE SET value = value RETURNING value"
        return self._sql(upsert, generate())[0][0]  # the first writer wins
