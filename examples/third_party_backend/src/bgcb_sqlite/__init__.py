"""bgcb-sqlite: Dash background callbacks on one SQLite file (shared by the web and
``bgcb worker`` processes of one machine) and worker threads; everything stored is JSON."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from bgcb import hookimpl
from bgcb.jobs import Job, Outcome, State, Status, Update, is_job_id, new_job_id, progress_update, props_update
from bgcb.runner import run, timeout_outcome

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, job TEXT, state TEXT DEFAULT 'queued',
    submitted REAL, started REAL, finished REAL, pid INTEGER, outcome TEXT);
CREATE TABLE IF NOT EXISTS updates (n INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT, body TEXT);
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, outcome TEXT, expires REAL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
"""
ACTIVE = ("queued", "running")
ADD_UPDATE = "INSERT INTO updates (job, body) VALUES (?, ?)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _Channel:
    def __init__(self, backend: SqliteBackend, job_id: str) -> None:
        self.backend, self.job_id = backend, job_id

    def progress(self, value: list[Any]) -> None:
        self.backend._sql(ADD_UPDATE, self.job_id, json.dumps(progress_update(value)))

    def set_props(self, component_id: str, props: dict[str, Any]) -> None:
        self.backend._sql(ADD_UPDATE, self.job_id, json.dumps(props_update(component_id, props)))

    def cancelled(self) -> bool:
        return self.backend._sql("SELECT state FROM jobs WHERE id = ?", self.job_id)[0][0] != "running"


class SqliteBackend:
    """Options: ``path`` (database file; a temporary one if empty), ``workers`` (threads), ``result_ttl`` (s)."""

    @hookimpl
    def bgcb_options(self) -> dict[str, Any]:
        return {"path": "", "workers": 2, "result_ttl": 3600.0}

    @hookimpl
    def bgcb_configure(self, options: dict[str, Any], hook: Any) -> None:
        self.path = options["path"] or os.path.join(tempfile.mkdtemp(prefix="bgcb-sqlite-"), "jobs.db")
        self.ttl, self.hook, self.workers, self.threads = float(options["result_ttl"]), hook, int(options["workers"]), []
        self.local, self.stop, self.lock = threading.local(), threading.Event(), threading.Lock()
        self._db().executescript(SCHEMA)

    # Threads start at the first job (or in `bgcb worker`): by then the app's callbacks are registered.
    def _start(self) -> None:
        with self.lock:
            while len(self.threads) < self.workers:
                self.threads.append(threading.Thread(target=self._work, daemon=True))
                self.threads[-1].start()

    def _db(self) -> sqlite3.Connection:
        """One connection per thread; autocommit, with explicit write transactions."""
        if getattr(self.local, "db", None) is None:
            self.local.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.local.db.row_factory = sqlite3.Row
            self.local.db.execute("PRAGMA journal_mode=WAL")
        return self.local.db

    def _sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        return self._db().execute(query, args).fetchall()

    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._db() as db:  # one write transaction (SQLite serialises writers); commits or rolls back
            db.execute("BEGIN IMMEDIATE")
            return fn(db)

    def _end(self, db: sqlite3.Connection, job_id: str, outcome: Outcome, states: tuple[str, ...]) -> bool:
        cur = db.execute(
            f"UPDATE jobs SET state = ?, outcome = ?, finished = ? WHERE id = ? AND state IN ({','.join('?' * len(states))})",
            (outcome.state.value, json.dumps(outcome.to_json()), time.time(), job_id, *states),
        )
        return cur.rowcount == 1

    # -- the worker loop -------------------------------------------------------------

    def _claim(self, db: sqlite3.Connection) -> tuple[str, Job] | None:
        row = db.execute("SELECT id, job FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1").fetchone()
        if row:
            db.execute("UPDATE jobs SET state = 'running', started = ?, pid = ? WHERE id = ?", (time.time(), os.getpid(), row[0]))
        return row and (row[0], Job.from_json(json.loads(row[1])))

    def _work(self) -> None:
        while not self.stop.is_set():
            claimed = self._tx(self._claim)
            if claimed is None:
                self.stop.wait(0.02)
            else:
                outcome = run(claimed[1], _Channel(self, claimed[0]), self.hook, claimed[0])
                self._tx(lambda db, c=claimed, o=outcome: self._store(db, *c, o))

    def _store(self, db: sqlite3.Connection, job_id: str, job: Job, outcome: Outcome) -> None:
        if self._end(db, job_id, outcome, ("running",)) and job.cache and outcome.kind in ("value", "no_update"):
            expires = time.time() + job.cache_expire if job.cache_expire else None
            db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)", (job.cache_key, json.dumps(outcome.to_json()), expires))

    @hookimpl
    def bgcb_run_worker(self, app_module: str, options: dict[str, Any]) -> bool:
        self._start()
        self.stop.wait()  # until bgcb_close, or Ctrl-C
        return True

    @hookimpl
    def bgcb_close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)

    # -- jobs ------------------------------------------------------------------------

    @hookimpl
    def bgcb_submit(self, job: Job) -> str:
        job_id, now = new_job_id(), time.time()
        self._start()
        self._sql("DELETE FROM jobs WHERE finished < ?", now - self.ttl)
        self._sql("INSERT INTO jobs (id, job, submitted) VALUES (?, ?, ?)", job_id, json.dumps(job.to_json()), now)
        return job_id

    # The job's row, after failing it if it timed out or its worker process died.
    def _check(self, db: sqlite3.Connection, job_id: str) -> tuple[Any, ...] | None:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone() if is_job_id(job_id) else None
        if row and row["state"] == "running":
            timeout = Job.from_json(json.loads(row["job"])).timeout
            if timeout and time.time() - row["started"] > timeout:
                self._end(db, job_id, timeout_outcome(timeout), ("running",))
            elif row["pid"] != os.getpid() and not _alive(row["pid"]):
                self._end(db, job_id, Outcome.failure("The worker running this job died."), ("running",))
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row

    @hookimpl
    def bgcb_status(self, job_id: str) -> Status:
        row = self._tx(lambda db: self._check(db, job_id))
        if row is None:
            return Status.unknown()
        position = self._sql("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND seq < ?", row["seq"])[0][0]
        queued = row["state"] == "queued"
        return Status(State(row["state"]), position if queued else None, row["submitted"], row["started"], row["finished"])

    @hookimpl
    def bgcb_progress(self, job_id: str) -> list[Update]:
        def read(db: sqlite3.Connection) -> list[Update]:  # delivered updates are deleted
            rows = db.execute("SELECT n, body FROM updates WHERE job = ? ORDER BY n", (job_id,)).fetchall()
            db.execute("DELETE FROM updates WHERE job = ? AND n <= ?", (job_id, rows[-1][0] if rows else 0))
            return [json.loads(body) for _, body in rows]

        return self._tx(read)

    @hookimpl
    def bgcb_result(self, job_id: str) -> Outcome | None:
        row = self._tx(lambda db: self._check(db, job_id))
        return Outcome.from_json(json.loads(row["outcome"])) if row and row["outcome"] else None

    @hookimpl
    def bgcb_cancel(self, job_id: str) -> bool:
        return is_job_id(job_id) and self._tx(lambda db: self._end(db, job_id, Outcome.cancelled(), ACTIVE))

    @hookimpl
    def bgcb_cached(self, cache_key: str) -> Outcome | None:
        rows = self._sql("SELECT outcome FROM cache WHERE key = ? AND (expires IS NULL OR expires > ?)", cache_key, time.time())
        return Outcome.from_json(json.loads(rows[0][0])) if rows else None

    @hookimpl
    def bgcb_jobs(self) -> list[tuple[str, Status]]:
        return [(i, self.bgcb_status(i)) for (i,) in self._sql("SELECT id FROM jobs WHERE state IN (?, ?) ORDER BY seq", *ACTIVE)]

    @hookimpl
    def bgcb_shared_secret(self, generate: Callable[[], bytes]) -> bytes:
        self._sql("INSERT OR IGNORE INTO meta VALUES ('secret', ?)", generate())
        return self._sql("SELECT value FROM meta WHERE key = 'secret'")[0][0]
