"""Starting a pool from the web process: which app module to import, and one pool per directory.

With ``autostart`` a web process (role ``"web"``) starts ``python -m
bgcb_diskcache pool CONFIG`` as a subprocess. Every backend instance of the
process that uses the same directory shares that pool; it stops when the last
one closes, or when the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

from . import defaults

#: Modules whose frames are skipped when looking for the app module.
_FRAMEWORK = ("bgcb", "bgcb_diskcache", "pluggy", "importlib", "_frozen_importlib", "runpy", "dash", "flask")


def _is_framework(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in _FRAMEWORK)


def detect_app() -> str | None:
    """The app module for the pool to import: the module whose import created
    the manager, followed out through enclosing imports (``python app.py`` that
    imports ``managers.py`` gives ``app.py``). A script run as ``__main__`` is
    given by path; None when there is no importable module (REPL, notebook)."""
    frame: Any = sys._getframe(1)
    found: str | None = None
    file: str | None = None
    spec_name: str | None = None
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if _is_framework(name) or frame.f_code.co_filename.startswith("<frozen"):
            frame = frame.f_back
            continue
        if frame.f_code.co_name != "<module>" and found is not None:
            break  # the module was imported by a function (pytest, gunicorn): stop here
        found = name
        file = frame.f_globals.get("__file__")
        spec_name = getattr(frame.f_globals.get("__spec__"), "name", None)
        frame = frame.f_back
    if found in ("__main__", "__mp_main__"):
        if spec_name and spec_name not in ("__main__", "__mp_main__"):
            return spec_name  # python -m pkg.app
        return os.path.abspath(file) if file else None
    return found


class _Pool:
    """A pool subprocess this process started, and how many backends use it."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.users = 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(defaults.POOL_STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def sys_path() -> list[str]:
    """This process's import path, absolute: a pool or worker process imports the app as this one did."""
    return [os.path.abspath(p) if p else os.getcwd() for p in sys.path]


_pools: dict[str, _Pool] = {}
_lock = threading.Lock()


def start(name: str, directory: str, options: dict[str, Any], app: str) -> None:
    """Use this process's pool on ``directory``, starting it (again, if it died) when needed.

    ``options`` are what the pool loads backend ``name`` with (the backend's
    own and the core's lifecycle settings); each call must be paired with
    :func:`release`.
    """
    with _lock:
        pool = _pools.get(directory)
        if pool is None or pool.proc.poll() is not None:
            config = {
                "name": name,
                "options": options,
                "app": app,
                "parent": os.getpid(),
                "sys_path": sys_path(),
            }
            proc = subprocess.Popen(
                [sys.executable, "-m", "bgcb_diskcache", "pool", json.dumps(config)],
                env=dict(os.environ, **{defaults.ENV_IN_POOL: "1"}),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
            users = pool.users if pool else 0
            pool = _pools[directory] = _Pool(proc)
            pool.users = users
        pool.users += 1


def release(directory: str) -> None:
    """One user fewer of the pool on ``directory``; the last one stops it."""
    with _lock:
        pool = _pools.get(directory)
        if pool is not None:
            pool.users -= 1
            if pool.users <= 0:
                pool.stop()
                del _pools[directory]


@atexit.register
def _stop_all() -> None:
    with _lock:
        for pool in _pools.values():
            pool.stop()
        _pools.clear()
