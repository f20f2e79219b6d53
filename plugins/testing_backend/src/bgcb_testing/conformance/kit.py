"""The conformance kit's configuration and the helper the checks drive a backend with.

Kept apart from the checks (:mod:`.suite`) so that a backend's own tests can
reuse :class:`Kit` to write further checks in the same style.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgcb.jobs import Job, Outcome, State, Status, Update
from bgcb.provider import Backend, load

from . import callbacks

#: ``kill_worker(backend, job_id, pid)``: make the worker process running
#: ``job_id`` die abruptly. ``pid`` is the process the job reported running in.
KillWorker = Callable[[Backend, str, int], None]

ENV_PREFIX = "BGCB_CONFORMANCE_"


def kill_pid(backend: Backend, job_id: str, pid: int) -> None:
    """The usual ``kill_worker``: SIGKILL the process the job runs in."""
    if pid == os.getpid():
        raise RuntimeError("the job runs in the test process itself: there is no worker process to kill")
    os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    try:  # reap it when it is our own child (a spawned worker), or it lingers as a zombie that looks alive
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


@dataclass
class KitConfig:
    """What the kit needs to know about a backend beyond its name.

    ``workers`` is the concurrency bound the backend promises (default: its
    ``workers`` or ``concurrency`` option); checks that need a full queue are
    skipped without it. ``app_option`` names the backend option that tells
    its workers which module to import; the kit sets it to
    :data:`callbacks.APP_MODULE`. ``spawn_workers`` starts that many
    ``bgcb worker`` processes for backends whose workers are started apart.
    ``kill_worker`` opts in to the dead-worker check.
    """

    backend: str = "testing"
    options: dict[str, Any] = field(default_factory=dict)
    plugin: Callable[[], object] | None = None
    workers: int | None = None
    fifo: bool = True
    app_option: str | None = None
    spawn_workers: int = 0
    #: Options for spawned workers only, over ``options`` (e.g. ``workers=0`` here, 2 there).
    worker_options: dict[str, Any] = field(default_factory=dict)
    kill_worker: KillWorker | None = None
    #: Seconds any kit job may take to end (queueing and worker start-up included).
    job_timeout: float = 20.0
    #: Seconds a cancelled, timed-out or killed job may take to reach its terminal state.
    stop_timeout: float = 10.0
    #: Seconds a killed worker's job may take to turn into a failed job.
    crash_timeout: float = 30.0

    def load_options(self) -> dict[str, Any]:
        options = dict(self.options)
        if self.app_option:
            options.setdefault(self.app_option, callbacks.APP_MODULE)
        return options

    @classmethod
    def from_env(cls, backend: str | None = None, environ: Mapping[str, str] | None = None) -> KitConfig:
        """The configuration of a by-name run, from ``BGCB_CONFORMANCE_*`` variables."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        name = backend or get("BACKEND") or env.get("BGCB_BACKEND", "").strip() or "testing"
        options = json.loads(get("OPTIONS") or "{}")
        worker_options = json.loads(get("WORKER_OPTIONS") or "{}")
        if not isinstance(options, dict) or not isinstance(worker_options, dict):
            raise ValueError(f"{ENV_PREFIX}OPTIONS and {ENV_PREFIX}WORKER_OPTIONS must be JSON objects")
        kill = get("KILL_WORKER")
        config = cls(
            backend=name,
            options=options,
            workers=int(get("WORKERS")) if get("WORKERS") else None,
            fifo=(get("FIFO") or "1").lower() not in ("0", "false", "no"),
            app_option=get("APP_OPTION"),
            spawn_workers=int(get("SPAWN_WORKERS") or 0),
            worker_options=worker_options,
            kill_worker=_resolve_kill(kill) if kill else None,
        )
        for attr in ("job_timeout", "stop_timeout", "crash_timeout"):
            if get(attr.upper()):
                setattr(config, attr, float(get(attr.upper()) or 0))
        return config


def _resolve_kill(spec: str) -> KillWorker:
    """``pid`` (SIGKILL the reported pid) or ``module:callable``."""
    if spec == "pid":
        return kill_pid
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_backend(config: KitConfig) -> Backend:
    """Load the backend the way :func:`bgcb.manager` does (a fresh instance)."""
    options = config.load_options()
    if config.plugin is not None:
        return Backend.from_plugin(config.backend, config.plugin(), options)
    return load(config.backend, fresh=True, **options)


class Workers:
    """``bgcb worker`` processes for the kit's callbacks, for backends whose
    workers run apart from the web process."""

    def __init__(self, config: KitConfig) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        env = dict(os.environ)
        prefix = f"BGCB_{config.backend.upper().replace('-', '_')}_"
        for option, value in {**config.load_options(), **config.worker_options}.items():
            if value is None:
                continue  # the default applies
            env[prefix + option.upper()] = value if isinstance(value, str) else json.dumps(value)
        for _ in range(config.spawn_workers):
            # import the callbacks before the CLI loads the backend, so no job is taken before they are registered
            code = f"import {callbacks.APP_MODULE}, sys; from bgcb.cli import main; sys.exit(main(sys.argv[1:]))"
            cmd = [sys.executable, "-c", code, "--backend", config.backend, "worker", callbacks.APP_MODULE]
            self.procs.append(subprocess.Popen(cmd, env=env))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


class Kit:
    """Drives one backend for one check, and cleans up after it."""

    def __init__(self, backend: Backend, config: KitConfig, tmp_path: Path) -> None:
        self.backend = backend
        self.config = config
        self.tmp_path = tmp_path
        self.submitted: list[str] = []

    @property
    def workers(self) -> int | None:
        """The concurrency bound the backend promises, if it says."""
        if self.config.workers:
            return self.config.workers
        for option in ("workers", "concurrency"):
            value = self.backend.options.get(option)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    @property
    def has_poll(self) -> bool:
        return bool(self.backend.hook.bgcb_poll.get_hookimpls())

    def has_hook(self, name: str) -> bool:
        return bool(getattr(self.backend.hook, name).get_hookimpls())

    # -- jobs --------------------------------------------------------------------

    def job(self, name: str, arg: Any, **fields: Any) -> Job:
        """A :class:`Job` running the kit callback ``name`` with one argument."""
        progress = name in ("sleep", "report_pid", "progress", "mixed")
        return Job(callback=callbacks.key(name), args=[arg], cache_key=fields.pop("cache_key", ""), progress=progress, **fields)

    def submit(self, name: str, arg: Any, **fields: Any) -> str:
        job_id = self.backend.submit(self.job(name, arg, **fields))
        self.submitted.append(job_id)
        return job_id

    def sleeper(self, seconds: float, **spec: Any) -> str:
        return self.submit("sleep", {"seconds": seconds, **spec})

    def fill(self, seconds: float) -> list[str]:
        """Occupy every worker with a sleeping job and wait until all run."""
        assert self.workers, "the kit needs the backend's concurrency bound (KitConfig.workers)"
        ids = [self.sleeper(seconds) for _ in range(self.workers)]
        for job_id in ids:
            self.wait(job_id, {State.RUNNING}, what="start running while workers are free")
        return ids

    def wait(self, job_id: str, states: Iterable[State] | None = None, timeout: float | None = None, what: str = "end") -> Status:
        """Poll ``bgcb_status`` until the job is in one of ``states`` (default: terminal)."""
        wanted = set(states) if states is not None else {State.SUCCEEDED, State.FAILED, State.CANCELLED}
        limit = self.config.job_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        status = self.backend.status(job_id)
        while status.state not in wanted:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} did not {what} within {limit:g} s: its status is still {status.state.value!r} "
                    f"(wanted {sorted(s.value for s in wanted)}). Every job must progress queued -> running -> a "
                    "terminal state; check that workers run and can import "
                    f"{callbacks.APP_MODULE} (see hookspecs.bgcb_status, bgcb_run_worker)."
                )
            time.sleep(0.01)
            status = self.backend.status(job_id)
        return status

    def outcome(self, job_id: str, timeout: float | None = None) -> Outcome:
        """Wait for the job to end and return its outcome."""
        status = self.wait(job_id, timeout=timeout)
        outcome = self.backend.result(job_id)
        assert outcome is not None, (
            f"bgcb_result returned None for job {job_id} whose status is {status.state.value!r}: once a job has "
            "ended its outcome must be returned (see hookspecs.bgcb_result)."
        )
        return outcome

    def value(self, job_id: str) -> Any:
        outcome = self.outcome(job_id)
        assert outcome.kind == "value", f"the kit callback should have succeeded with a value, got {outcome!r}"
        return outcome.value

    def drain(self, job_id: str, via_poll: bool = False) -> list[Update]:
        """Every update of the job, read as a browser would until it ends."""
        seen: list[Update] = []
        deadline = time.monotonic() + self.config.job_timeout
        while True:
            if via_poll:
                snap = self.backend.poll(job_id)
                seen.extend(snap.updates)
                state = snap.status.state
            else:
                state = self.backend.status(job_id).state
                seen.extend(self.backend.hook.bgcb_progress(job_id=job_id) or [])
            if state.terminal or state is State.UNKNOWN:
                # what arrived between the last read and the end
                seen.extend(self.backend.hook.bgcb_progress(job_id=job_id) or [])
                return seen
            assert time.monotonic() < deadline, f"job {job_id} did not end within {self.config.job_timeout:g} s"
            time.sleep(0.005)

    def cleanup(self) -> None:
        """Cancel what this check left running, so the next one finds idle workers."""
        for job_id in self.submitted:
            try:
                if self.backend.status(job_id).state.active:
                    self.backend.cancel(job_id)
            except Exception:  # the check's own failure is the one to report
                pass
