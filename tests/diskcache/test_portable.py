"""The portable path needs nothing POSIX-only: checked in a process from which fork, FIFOs,
flock and the POSIX-only signals are removed, and which says it runs on Windows."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from bgcb.errors import ConfigurationError

WITHOUT_POSIX = """
import os, signal, sys
import subprocess, select, socket, multiprocessing, dash, diskcache  # the standard library and dependencies as they are
for name in ("fork", "mkfifo", "getuid", "killpg", "getpgid", "setsid", "WNOHANG"):
    if hasattr(os, name):
        delattr(os, name)
for name in ("SIGKILL", "SIGCHLD", "SIGHUP", "SIGUSR1"):
    if hasattr(signal, name):
        delattr(signal, name)
sys.modules["fcntl"] = None  # import fcntl now raises ImportError
sys.platform = "win32"
"""

CHECK = """
import time

from bgcb import provider
from bgcb.jobs import Job, State
from bgcb_diskcache import children, pool, portable, supervisor, worker  # every module imports
from bgcb_diskcache.store import Store

backend = provider.load("diskcache", fresh=True, directory=DIRECTORY, autostart=False)
plugin = backend.plugin
assert plugin.portable and plugin.waker is None and plugin.bell is None and plugin.ringer is None
job_id = backend.submit(Job(callback="k", args=[1]))
assert backend.status(job_id).state is State.QUEUED
with plugin.pool_lock() as owner:  # the lease: no flock
    assert owner and Store(DIRECTORY).pool()["owner"] == owner
    assert not Store(DIRECTORY).take_pool("someone-else", 10.0)  # a second pool waits as a standby
    sup = plugin.supervisor(app="no_such_app", owner=owner)
    assert isinstance(sup.children, children.Spawned)
    assert sup.store.beat(1, owner) and not sup.store.beat(1, "someone-else")
assert children.describe_returncode(3) == "exited with code 3"
backend.close()
print("portable ok")
"""


def test_the_portable_path_imports_and_runs_without_posix_parts(tmp_path) -> None:
    code = WITHOUT_POSIX + CHECK.replace("DIRECTORY", repr(str(tmp_path / "store")))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "portable ok" in done.stdout, done.stderr[-3000:]


def test_the_option_is_checked() -> None:
    from bgcb_diskcache.portable import use_portable

    assert use_portable("on") is True and use_portable("OFF") is False
    assert use_portable("auto") is (not sys.platform.startswith("linux"))
    with pytest.raises(ConfigurationError, match="give 'auto', 'on' or 'off'"):
        use_portable("sometimes")
