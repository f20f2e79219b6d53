"""The ``diskcache`` backend's hooks: storage on a local directory, a FIFO queue, warm worker processes.

Storage is :mod:`.store`; the wake-up FIFO :mod:`.wake`; the pool of workers
:mod:`.supervisor` and :mod:`.worker`. The core runs every job's lifecycle
through these hooks. A web process (role ``"web"``) with ``autostart`` (the
default) starts a pool subprocess (:mod:`.autostart`, :mod:`.pool`) shared by
every backend instance of the process on the same directory; ``bgcb worker``
runs the pool in its own process instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bgcb import Counts, Stored, hookimpl
from bgcb.errors import ConfigurationError
from bgcb.hookspecs import Role
from bgcb.lifecycle import Lifecycle

from . import autostart, defaults
from .bell import Bell, Ringer
from .command_line import CommandLine
from .portable import use_portable
from .store import Store
from .supervisor import Supervisor, pool_lock
from .wake import Waker

log = logging.getLogger("bgcb.diskcache")


def default_directory() -> str:
    """``<tmp>/bgcb-diskcache-<uid>-<hash of the working directory>``: private
    to the user, and the same for the web process and ``bgcb worker`` started
    from the same project directory."""
    digest = hashlib.sha1(os.getcwd().encode()).hexdigest()[:10]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"bgcb-diskcache-{uid}-{digest}")


class DiskcacheBackend(CommandLine):
    """The ``diskcache`` backend: a real queue and warm worker processes on a
    local directory, with no server to run. See the README for the design."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}
        self.directory = ""
        self._store: Store | None = None
        self._jobs: Lifecycle | None = None
        self.waker: Waker | None = None
        self.stopper: Waker | None = None
        self.bell: Bell | None = None
        self.ringer: Ringer | None = None
        self.portable = False
        self._autostarted = False
        #: Autostart: the app module for the pool, and whether it is still to be started (at first use).
        self._pool_app: str | None = None
        self._pool_wanted = False
        self._pool_lock = threading.Lock()
        self._alive_at = 0.0
        #: Connections opened before a fork: kept, never used or closed, in the worker.
        self._inherited: list[Store] = []

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("bgcb-diskcache: the backend is not configured")
        return self._store

    @property
    def jobs(self) -> Lifecycle:
        if self._jobs is None:
            raise RuntimeError("bgcb-diskcache: the backend is not configured")
        return self._jobs

    # -- configuration and life --------------------------------------------------------

    @hookimpl
    def bgcb_options(self) -> dict[str, Any]:
        return {
            "directory": None,
            "workers": defaults.WORKERS,
            "autostart": True,
            "app": None,
            "dead_after": defaults.DEAD_AFTER,
            "portable": defaults.PORTABLE,
        }

    @hookimpl
    def bgcb_configure(self, options: dict[str, Any], role: Role, jobs: Lifecycle) -> None:
        if int(options["workers"]) < 1:
            raise ConfigurationError(f"bgcb-diskcache: workers={options['workers']!r}; give at least 1 worker process.")
        if float(options["dead_after"]) <= 0:
            raise ConfigurationError(
                f"bgcb-diskcache: dead_after={options['dead_after']!r} must be a positive number of seconds."
            )
        self.options = options
        self._jobs = jobs
        self.directory = os.path.abspath(os.path.expanduser(options["directory"] or default_directory()))
        if role == "cli" and not os.path.exists(os.path.join(self.directory, defaults.DB_NAME)):
            raise ConfigurationError(  # reading must not leave an empty store behind
                f"bgcb-diskcache: no job store at {self.directory}: no app has run with this directory. Run the "
                "command in the app's directory, name the app (bgcb jobs APP_MODULE), or set BGCB_DISKCACHE_DIRECTORY."
            )
        try:
            self._store = Store(self.directory)
        except OSError as exc:
            raise ConfigurationError(
                f"bgcb-diskcache: cannot use directory {self.directory!r} ({exc}). "
                "Choose a writable local directory with directory=... or BGCB_DISKCACHE_DIRECTORY."
            ) from exc
        self.portable = use_portable(options["portable"])
        if hasattr(os, "mkfifo"):
            # Ring whatever FIFOs exist (a job wakes an idle worker, a cancel the supervisor, a change a held
            # request), whichever path this process takes: a process of the other path may share the directory.
            self.waker = Waker(self.directory)
            self.stopper = Waker(self.directory, defaults.STOP_NAME)
            self.ringer = Ringer(self.directory)
        if not self.portable:
            self.bell = Bell(self.directory)
        # "worker" (bgcb worker, the pool) and "cli" never start a pool; nor does
        # any process started from a pool (its environment says so).
        if role == "web" and options["autostart"] and not os.environ.get(defaults.ENV_IN_POOL):
            self._pool_app = options["app"] or autostart.detect_app()  # found now: the importing frames are here
            self._pool_wanted = True

    def _ensure_pool(self) -> None:
        """Start the pool at this process's first use of the store, not when the app is imported.

        A process that imports the app but never serves it starts none: the
        reloader of ``app.run(debug=True)`` imports the app and then only
        watches files, restarting a server child at each edit; a pool of its
        own would keep serving jobs with the code of the first import.
        """
        with self._pool_lock:
            if not self._pool_wanted:
                return
            self._pool_wanted = False
            app = self._pool_app
        if not app:
            log.warning(
                "bgcb-diskcache: cannot tell which module defines the app, so no workers were started. "
                "Pass bgcb.manager(app='mypkg.app') or run `bgcb worker APP_MODULE`."
            )
            return
        autostart.start(self.jobs.name, self.directory, self.pool_options(), app)
        self._autostarted = True

    def pool_options(self) -> dict[str, Any]:
        """What a pool or worker process loads this backend with: its options and the core's lifecycle settings."""
        return {**self.options, "directory": self.directory, **self.jobs.settings}

    def _release_pool(self) -> None:
        if self._autostarted:
            self._autostarted = False
            autostart.release(self.directory)

    def supervisor(
        self, parent: int | None = None, broken: str | None = None, app: str | None = None, owner: str | None = None
    ) -> Supervisor:
        """A supervisor of ``workers`` processes running this instance's jobs (the caller holds the pool
        lock, as ``owner`` on the portable path, whose workers import ``app`` themselves)."""
        spawn = None
        if self.portable:
            spawn = {"name": self.jobs.name, "options": self.pool_options(), "app": app, "sys_path": autostart.sys_path()}
        workers = int(self.options["workers"])
        return Supervisor(self.jobs, self.store, self.reopen_store, workers, parent, broken, spawn, owner)

    def pool_lock(self) -> contextlib.AbstractContextManager[str | None]:
        lease = (self.store, float(self.options["dead_after"])) if self.portable else None
        return pool_lock(self.directory, None, lease)

    def reopen_store(self) -> Store:
        """In a forked worker: a store connection of its own (SQLite connections must not cross a fork)."""
        if self._store is not None:
            self._inherited.append(self._store)  # closing it here could disturb the parent's connection
        self._store = Store(self.directory)
        return self._store

    @hookimpl
    def bgcb_run_worker(self, app_module: str) -> bool:
        """``bgcb worker APP_MODULE``: this process becomes the pool's supervisor (the app is imported)."""
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        os.environ[defaults.ENV_IN_POOL] = "1"
        self._release_pool()  # this process is the pool now
        with self.pool_lock() as owner:
            self.supervisor(app=app_module, owner=owner).run()
        return True

    @hookimpl
    def bgcb_close(self) -> None:
        self._release_pool()
        for waker in (self.waker, self.stopper):
            if waker is not None:
                waker.close()
        if self.ringer is not None:
            self.ringer.close()
        if self._store is not None:
            self._store.close()

    # -- storage -------------------------------------------------------------------------

    @hookimpl
    def bgcb_enqueue(
        self,
        job_id: str,
        job: str,
        data: str,
        timeout: float | None,
        ttl: float,
        lane: str | None,
        priority: int | None,
        cap: int | None,
    ) -> None:
        if self._pool_wanted:
            self._ensure_pool()
        self.store.enqueue(job_id, job, data, timeout, ttl, lane, priority, cap)
        if self.waker is not None:
            self.waker.wake()

    @hookimpl
    def bgcb_defer(self, job_id: str, delay: float, lane: str | None, priority: int | None, cap: int | None) -> None:
        """The due time lives in the queue's record; a worker queues the job in its next claim once due,
        woken by the supervisor's tick (or at once when there is no delay)."""
        self.store.defer(job_id, delay, lane, priority, cap)
        if delay <= 0 and self.waker is not None:
            self.waker.wake()

    @hookimpl
    def bgcb_counts(self, lane: str) -> Counts:
        return self.store.counts(lane)

    @hookimpl
    def bgcb_read(self, job_id: str, drain: bool) -> Stored | None:
        if self._pool_wanted:
            self._ensure_pool()
        stored = self.store.read(job_id, drain)
        if stored is not None and stored.state in ("running", "queued"):
            stored.alive = self._pool_alive()  # queued: whether any worker serves the queue
            if not stored.alive:
                silent = f"(no heartbeat for {self.options['dead_after']:g} s)"
                stored.reason = (
                    f"the bgcb-diskcache worker pool on {self.directory} stopped {silent}. "
                    "Start it again (`bgcb worker APP_MODULE`, or restart the app)"
                    if stored.state == "running"
                    else f"no bgcb-diskcache worker pool runs on {self.directory} {silent}. Start one from the app's "
                    "directory with `bgcb worker APP_MODULE`, or let the app start it (autostart=True, with "
                    "bgcb.manager(app='package.module') if the log says it cannot tell the app's module)"
                )
        return stored

    def _pool_alive(self) -> bool:
        """Whether the pool's heartbeat is younger than ``dead_after`` (read at most once a second while it is)."""
        now = time.time()
        if now - self._alive_at < defaults.ALIVE_FRESH:
            return True
        info = self.store.pool()
        if info is not None and now - float(info.get("beat", 0)) < float(self.options["dead_after"]):
            self._alive_at = now
            return True
        return False

    @hookimpl
    def bgcb_load(self, job_id: str) -> str | None:
        return self.store.load(job_id)

    @hookimpl
    def bgcb_cas(self, job_id: str, expect: Sequence[str], state: str, data: str, ttl: float) -> bool:
        changed = self.store.cas(job_id, expect, state, data, ttl)
        if changed and self.ringer is not None and state != "running":  # a start is no news to a held request
            self.ringer.ring(job_id)
        return changed

    @hookimpl
    def bgcb_append(self, job_id: str, update: str, ttl: float) -> None:
        self.store.append(job_id, update, ttl)
        if self.ringer is not None:
            self.ringer.ring(job_id)

    @hookimpl
    def bgcb_wait(self, job_id: str, seconds: float) -> bool | None:
        return self.bell.wait(job_id, seconds) if self.bell is not None else None

    @hookimpl
    def bgcb_touch(self, job_id: str, ttl: float) -> None:
        self.store.touch(job_id, ttl)

    @hookimpl
    def bgcb_seen(self, job_id: str) -> float | None:
        return self.store.seen(job_id)

    @hookimpl
    def bgcb_capabilities(self) -> list[str]:
        return ["ordering", "running_limits", "deferral"]

    @hookimpl
    def bgcb_capacity(self) -> int | None:
        """The workers of the pool serving the directory, as its heartbeat says (None without a live pool)."""
        info = self.store.pool()
        if info is None or time.time() - float(info["beat"]) >= float(self.options["dead_after"]):
            return None
        workers = info.get("workers")
        return workers if isinstance(workers, int) and workers > 0 else None

    @hookimpl
    def bgcb_stop(self, job_id: str, after: float) -> None:
        self.store.request_stop(job_id, after)
        if after <= 0 and self.stopper is not None:
            self.stopper.wake()  # the supervisor kills the worker now, not at its next tick

    @hookimpl
    def bgcb_cache_put(self, cache_key: str, outcome: str, ttl: float) -> None:
        self.store.cache_put(cache_key, outcome, ttl)

    @hookimpl
    def bgcb_cache_get(self, cache_key: str) -> str | None:
        return self.store.cache_get(cache_key)

    @hookimpl
    def bgcb_active(self) -> list[str]:
        return self.store.active()

    @hookimpl
    def bgcb_shared_secret(self, generate: Callable[[], bytes]) -> bytes:
        if self._pool_wanted:  # Dash 4.4 asks for it while serving its first requests: workers are warm by the first click
            self._ensure_pool()
        return self.store.shared_secret(generate)
