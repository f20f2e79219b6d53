"""What the conformance kit needs to know about a backend beyond its name, from class attributes or the environment."""

from __future__ import annotations

import importlib
import json
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import callbacks

if TYPE_CHECKING:
    from bgcb.provider import Backend

#: ``kill_worker(backend, job_id, pid)``: make the worker process running
#: ``job_id`` die abruptly. ``pid`` is the process the job reported running in.
KillWorker = Callable[["Backend", str, int], None]

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
    #: Seconds a killed worker's job may take to be declared lost.
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
            workers=int(get("WORKERS") or 0) or None,
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
