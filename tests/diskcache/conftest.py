"""Fixtures for the diskcache backend: real directories, real processes, real HTTP.

Every server and worker here is a subprocess; each fixture stops its process
tree and checks that nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from bgcb_testing.server import free_port, wait_for  # noqa: F401  (the tests import them from here)

APPS = Path(__file__).parent / "apps"
BIN = Path(sys.executable).parent


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with code {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def env_for(directory: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BGCB_BACKEND="diskcache",
        BGCB_DISKCACHE_DIRECTORY=str(directory),
        BGCB_DISKCACHE_WORKERS="2",
        PYTHONPATH=os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop_tree(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 15.0) -> None:
    """Stop ``proc`` the way a user would (Ctrl-C), then check that its whole
    process tree (web, supervisor, workers) is gone."""
    tree = [psutil.Process(proc.pid), *descendants(proc.pid)] if proc.poll() is None else []
    if proc.poll() is None:
        proc.send_signal(sig)
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    for p in alive:
        p.kill()
    proc.wait(5)
    assert not alive, f"processes left running after stop: {[p.pid for p in alive]}"


@dataclass
class Served:
    """An app served by a subprocess, with its diskcache directory."""

    url: str
    directory: Path
    proc: subprocess.Popen
    log: Path
    extra: list[subprocess.Popen] = field(default_factory=list)
    _jobs: Any = None

    def client(self):
        from bgcb_testing import DashClient

        return DashClient.http(self.url).load()

    def store(self):
        """The raw store (queue, running list), as the supervisor sees it."""
        from bgcb_diskcache.store import Store

        return Store(str(self.directory))

    def jobs(self):
        """The core's view of the directory's jobs (status, positions), from a backend that starts no pool."""
        from bgcb import provider

        if self._jobs is None:
            self._jobs = provider.load("diskcache", fresh=True, directory=str(self.directory), autostart=False)
        return self._jobs

    def pool_processes(self) -> list[psutil.Process]:
        return descendants(self.proc.pid)


def serve_script(script: Path, directory: Path, tmp: Path, **extra: str) -> Served:
    """``python script.py``: the app is ``__main__`` and starts its own workers."""
    port = free_port()
    log = tmp / "jobs.log"
    env = env_for(directory, DC_PORT=str(port), DC_LOG=str(log), **extra)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=script.parent, env=env, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", proc)
    except BaseException:
        stop_tree(proc)
        raise
    return Served(url, directory, proc, log)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """dc_app.py run as a script with two autostarted workers (started by its first job: the pool starts at first use)."""
    from bgcb_testing import DashClient

    tmp = tmp_path_factory.mktemp("dc")
    app = serve_script(APPS / "dc_app.py", tmp / "store", tmp)
    client = DashClient.http(app.url).load()
    warm = client.run([("stamp-out", "children")], [("stamp-btn", "n_clicks", 1)], [("stamp-in", "value", "0")], timeout=60)
    assert warm.final.status == 200, warm.final.text
    yield app
    stop_tree(app.proc)
