"""The ``diskcache`` backend: hooks for the web process, and the pool starter.

The web process only writes to and reads from the store (``store.py``) and
pokes the wake-up FIFO; worker processes run the jobs (``pool.py``). With
``autostart`` (the default) the first manager in a process starts the pool as
a subprocess; every other manager and backend instance in that process that
uses the same directory shares it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from bgcb import hookimpl
from bgcb.errors import ConfigurationError
from bgcb.jobs import Job, Outcome, Snapshot, State, Status, Update, new_job_id

from . import pool as pool_mod
from .store import Store

log = logging.getLogger("bgcb.diskcache")

#: Modules whose frames are skipped when looking for the app module.
_FRAMEWORK = ("bgcb", "bgcb_diskcache", "pluggy", "importlib", "_frozen_importlib", "runpy", "dash", "flask")


def default_directory() -> str:
    """``<tmp>/bgcb-diskcache-<uid>-<hash of the working directory>``: private
    to the user, and the same for the web process and ``bgcb worker`` started
    from the same project directory."""
    digest = hashlib.sha1(os.getcwd().encode()).hexdigest()[:10]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"bgcb-diskcache-{uid}-{digest}")


def _module_of(frame: Any) -> str:
    return str(frame.f_globals.get("__name__", ""))


def _is_framework(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in _FRAMEWORK)


def called_from_cli() -> bool:
    """Whether the ``bgcb`` command is loading us (``bgcb worker``/``jobs``/``doctor``)."""
    frame = sys._getframe(1)
    while frame is not None:
        if _module_of(frame) == "bgcb.cli":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def detect_app() -> str | None:
    """The app module to import in workers: the module whose import created
    the manager, followed out through enclosing imports (``python app.py`` that
    imports ``managers.py`` gives ``app.py``). A script run as ``__main__`` is
    given by path; None when there is no importable module (REPL, notebook)."""
    frame = sys._getframe(1)
    found: str | None = None
    file: str | None = None
    spec_name: str | None = None
    while frame is not None:
        name = _module_of(frame)
        if _is_framework(name) or frame.f_code.co_filename.startswith("<frozen"):
            frame = frame.f_back  # type: ignore[assignment]
            continue
        if frame.f_code.co_name != "<module>" and found is not None:
            break  # the module was imported by a function (pytest, gunicorn): stop here
        found = name
        file = frame.f_globals.get("__file__")
        spec = frame.f_globals.get("__spec__")
        spec_name = getattr(spec, "name", None)
        frame = frame.f_back  # type: ignore[assignment]
    if found in ("__main__", "__mp_main__"):
        if spec_name and spec_name not in ("__main__", "__mp_main__"):
            return spec_name  # python -m pkg.app
        return os.path.abspath(file) if file else None
    return found


class _AutoPool:
    """A pool subprocess this process started, shared by its backends."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.users = 0

    def stop(self, wait: float = 5.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_pools: dict[str, _AutoPool] = {}
_pools_lock = threading.Lock()


@atexit.register
def _stop_pools() -> None:
    with _pools_lock:
        for pool in _pools.values():
            pool.stop()
        _pools.clear()


class DiskcacheBackend:
    """The ``diskcache`` backend: a real queue and warm worker processes on a
    local directory, with no server to run. See the README for the design."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}
        self.store: Store | None = None
        self.waker: pool_mod.Waker | None = None
        self.directory = ""
        self._hook: Any = None
        self._pool_key: str | None = None
        self._pool_alive_at = 0.0

    # -- configuration -------------------------------------------------------------

    @hookimpl
    def bgcb_options(self) -> dict[str, Any]:
        return {
            "directory": None,
            "workers": os.cpu_count() or 1,
            "result_ttl": 3600.0,
            "autostart": True,
            "app": None,
            "cancel_grace": 0.5,
            "dead_after": 10.0,
        }

    @hookimpl
    def bgcb_configure(self, options: dict[str, Any], hook: Any) -> None:
        self._check(options)
        self.options = options
        self._hook = hook
        self.directory = os.path.abspath(os.path.expanduser(options["directory"] or default_directory()))
        try:
            self.store = Store(self.directory, float(options["result_ttl"]))
        except OSError as exc:
            raise ConfigurationError(
                f"bgcb-diskcache: cannot use directory {self.directory!r} ({exc}). "
                "Choose a writable local directory with directory=... or BGCB_DISKCACHE_DIRECTORY."
            ) from exc
        self.waker = pool_mod.Waker(self.directory)
        if options["autostart"] and not os.environ.get(pool_mod.ENV_IN_POOL) and not called_from_cli():
            self._autostart(options["app"] or detect_app())

    @staticmethod
    def _check(options: dict[str, Any]) -> None:
        if int(options["workers"]) < 1:
            raise ConfigurationError(f"bgcb-diskcache: workers={options['workers']!r}; give at least 1 worker process.")
        for name in ("result_ttl", "cancel_grace", "dead_after"):
            if float(options[name]) <= 0:
                raise ConfigurationError(f"bgcb-diskcache: {name}={options[name]!r} must be a positive number of seconds.")

    def _autostart(self, app: str | None) -> None:
        if not app:
            log.warning(
                "bgcb-diskcache: cannot tell which module defines the app, so no workers were started. "
                "Pass bgcb.manager(app='mypkg.app') or run `bgcb worker APP_MODULE`."
            )
            return
        with _pools_lock:
            pool = _pools.get(self.directory)
            if pool is None or pool.proc.poll() is not None:
                config = {
                    "directory": self.directory,
                    "workers": int(self.options["workers"]),
                    "result_ttl": float(self.options["result_ttl"]),
                    "cancel_grace": float(self.options["cancel_grace"]),
                    "app": app,
                    "parent": os.getpid(),
                    "sys_path": [os.path.abspath(p) if p else os.getcwd() for p in sys.path],
                }
                env = dict(os.environ, **{pool_mod.ENV_IN_POOL: "1"})
                proc = subprocess.Popen(
                    [sys.executable, "-m", "bgcb_diskcache", "pool", json.dumps(config)],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    close_fds=True,
                )
                users = pool.users if pool else 0
                pool = _pools[self.directory] = _AutoPool(proc)
                pool.users = users
            pool.users += 1
            self._pool_key = self.directory

    @hookimpl
    def bgcb_run_worker(self, app_module: str, options: dict[str, Any]) -> bool:
        """``bgcb worker APP_MODULE``: this process becomes the pool's supervisor
        (the command imported the app already)."""
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        os.environ[pool_mod.ENV_IN_POOL] = "1"
        pool_mod.serve(
            self.directory,
            int(options["workers"]),
            float(options["result_ttl"]),
            float(options["cancel_grace"]),
            None,
            None,
        )
        return True

    @hookimpl
    def bgcb_close(self) -> None:
        if self._pool_key is not None:
            with _pools_lock:
                pool = _pools.get(self._pool_key)
                if pool is not None:
                    pool.users -= 1
                    if pool.users <= 0:
                        pool.stop()
                        del _pools[self._pool_key]
            self._pool_key = None
        if self.waker is not None:
            self.waker.close()
        if self.store is not None:
            self.store.close()

    # -- jobs -------------------------------------------------------------------------

    def _store(self) -> Store:
        if self.store is None:
            raise RuntimeError("bgcb-diskcache: the backend is not configured")
        return self.store

    @hookimpl
    def bgcb_submit(self, job: Job) -> str:
        job = Job.from_json(json.loads(json.dumps(job.to_json())))  # JSON only, checked here in the request
        job_id = new_job_id()
        self._store().submit(job_id, job)
        if self.waker is not None:
            self.waker.wake()
        return job_id

    def _pool_dead(self) -> bool:
        """Whether the pool's heartbeat stopped (read at most once a second)."""
        now = time.time()
        if now - self._pool_alive_at < 1.0:
            return False
        info = self._store().pool()
        if info is not None and now - float(info.get("beat", 0)) < float(self.options["dead_after"]):
            self._pool_alive_at = now
            return False
        return True

    @hookimpl
    def bgcb_poll(self, job_id: str) -> Snapshot:
        store = self._store()
        snap = store.poll(job_id)
        if snap.status.state is State.RUNNING and self._pool_dead():
            if store.fail_if_running(job_id, pool_mod.pool_stopped_outcome()):
                rest = store.poll(job_id)
                rest.updates = snap.updates + rest.updates
                return rest
        return snap

    @hookimpl
    def bgcb_status(self, job_id: str) -> Status:
        return self._store().status(job_id)

    @hookimpl
    def bgcb_progress(self, job_id: str) -> list[Update]:
        return self._store().take_updates(job_id)

    @hookimpl
    def bgcb_result(self, job_id: str) -> Outcome | None:
        record = self._store().record(job_id)
        return Outcome.from_json(record["outcome"]) if record and record["outcome"] else None

    @hookimpl
    def bgcb_cancel(self, job_id: str) -> bool:
        return self._store().cancel(job_id)

    @hookimpl
    def bgcb_cached(self, cache_key: str) -> Outcome | None:
        return self._store().cached(cache_key)

    @hookimpl
    def bgcb_jobs(self) -> list[tuple[str, Status]]:
        return self._store().jobs()

    @hookimpl
    def bgcb_shared_secret(self, generate: Callable[[], bytes]) -> bytes:
        return self._store().shared_secret(generate)
