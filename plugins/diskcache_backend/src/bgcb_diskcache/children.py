"""The supervisor's worker processes, made one of two ways.

- :class:`Forked` (Linux by default): ``os.fork`` of the supervisor, which
  imported the app once, so a new worker is warm in a millisecond; the
  supervisor sleeps in ``select`` on a pipe that SIGCHLD and the stop FIFO
  write to, so a worker's death or a cancel is handled at once.
- :class:`Spawned` (the portable path: Windows, macOS, or forced with
  ``portable="on"``): a fresh interpreter per worker (``python -m
  bgcb_diskcache worker CONFIG``) that imports the app once itself; no fork,
  FIFO, SIGCHLD or ``select`` on pipes, so the supervisor polls at a short
  tick instead.

Both give the supervisor the same four verbs: start a worker, reap the dead
ones (with how each ended), kill one, and wait for the next tick.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from . import defaults

log = logging.getLogger("bgcb.diskcache")


def describe_status(status: int) -> str:
    """``killed by SIGKILL (9)``, ``exited with code 1``: how a forked worker ended (a ``waitpid`` status)."""
    if os.WIFSIGNALED(status):
        return describe_signal(os.WTERMSIG(status))
    return f"exited with code {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else f"ended (status {status})"


def describe_signal(sig: int) -> str:
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    return f"killed by {name} ({sig})"


def describe_returncode(code: int) -> str:
    """The same for a spawned worker (``Popen.returncode``: negative for a signal on POSIX)."""
    return describe_signal(-code) if code < 0 else f"exited with code {code}"


class Forked:
    """Workers forked from the supervisor; ``run`` is the worker's whole life (it must not return)."""

    portable = False

    def __init__(self, run: Callable[[], None]) -> None:
        self.run = run
        self.pids: dict[int, float] = {}  # pid -> started at
        self._signals = self._stops = -1
        self._wake = -1

    def open(self, stops_fifo: str) -> None:
        """Before the loop: the SIGCHLD pipe and the stop FIFO become what :meth:`sleep` waits on."""
        # RDWR: never end-of-file; a web process writes a byte when a job must stop now (a cancel).
        self._stops = os.open(stops_fifo, os.O_RDWR | os.O_NONBLOCK)
        self._signals, self._wake = os.pipe()
        os.set_blocking(self._wake, False)
        os.set_blocking(self._signals, False)
        signal.set_wakeup_fd(self._wake)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for fd in (self._signals, self._wake, self._stops):
            if fd >= 0:
                os.close(fd)
        self._signals = self._wake = self._stops = -1

    def start(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                self.run()
            except BaseException:  # noqa: B036 - a worker must never return into the supervisor's code
                log.exception("bgcb-diskcache: worker crashed")
                code = 1
            finally:
                os._exit(code)
        self.pids[pid] = time.time()

    def reap(self) -> list[tuple[int, str, float]]:
        """The workers that ended: pid, how, and seconds they lived."""
        ended = []
        for pid in list(self.pids):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                ended.append((pid, describe_status(status), time.time() - self.pids.pop(pid)))
        return ended

    def kill(self, pid: int) -> None:
        self._signal(pid, signal.SIGKILL)

    def terminate(self, pid: int) -> None:
        self._signal(pid, signal.SIGTERM)

    def _signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def sleep(self) -> None:
        """Until the next tick, a worker's death (SIGCHLD) or a stop request, whichever comes first."""
        with contextlib.suppress(InterruptedError):
            select.select([self._signals, self._stops], [], [], defaults.TICK)
        for fd in (self._signals, self._stops):
            with contextlib.suppress(BlockingIOError):
                os.read(fd, 512)


class Spawned:
    """Workers started as fresh interpreters, each importing the app from ``config`` itself."""

    portable = True

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.pids: dict[int, float] = {}  # pid -> started at

    def open(self, stops_fifo: str) -> None:
        pass

    def close(self) -> None:
        pass

    def start(self) -> None:
        config = json.dumps({**self.config, "supervisor": os.getpid()})
        proc = subprocess.Popen(
            [sys.executable, "-m", "bgcb_diskcache", "worker", config],
            env=dict(os.environ, **{defaults.ENV_IN_POOL: "1"}),
            stdin=subprocess.DEVNULL,
        )
        self.procs[proc.pid] = proc
        self.pids[proc.pid] = time.time()

    def reap(self) -> list[tuple[int, str, float]]:
        ended = []
        for pid, proc in list(self.procs.items()):
            code = proc.poll()
            if code is not None:
                del self.procs[pid]
                ended.append((pid, describe_returncode(code), time.time() - self.pids.pop(pid)))
        return ended

    def kill(self, pid: int) -> None:
        proc = self.procs.get(pid)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def terminate(self, pid: int) -> None:
        proc = self.procs.get(pid)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

    def sleep(self) -> None:
        time.sleep(defaults.PORTABLE_TICK)
