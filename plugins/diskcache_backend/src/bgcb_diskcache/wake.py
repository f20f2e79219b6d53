"""Wake-ups: one byte on a FIFO per queued job, so an idle worker starts it at once.

Workers block reading ``<directory>/wake.fifo``; each enqueue writes one byte.
Linux wakes one blocked reader per byte, so one job wakes one worker within
microseconds instead of on a polling interval. Elsewhere a worker waits with a
timeout, so it also notices when its supervisor has gone. A lost byte costs
nothing: workers look at the queue before they sleep again.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time

from . import defaults


def wake_path(directory: str, name: str = defaults.WAKE_NAME) -> str:
    return os.path.join(directory, name)


def ensure_fifo(directory: str, name: str = defaults.WAKE_NAME) -> None:
    """Make a FIFO (the supervisor does, before it forks workers)."""
    with contextlib.suppress(FileExistsError):
        os.mkfifo(wake_path(directory, name), 0o600)


class Waker:
    """The web side: one byte per queued job (or per stop request, on the supervisor's FIFO), from any thread."""

    def __init__(self, directory: str, name: str = defaults.WAKE_NAME) -> None:
        self.path = wake_path(directory, name)
        self.fd: int | None = None
        self.lock = threading.Lock()  # web servers enqueue from many threads

    def wake(self) -> None:
        with self.lock:
            if self.fd is None:
                try:
                    self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # no FIFO yet, or no pool reading it: workers scan the queue when they start
                    return
            try:
                os.write(self.fd, b"\x01")
            except BlockingIOError:  # the pipe is full: every worker has plenty to wake up for
                pass
            except OSError:  # the pool went away (EPIPE): reopen next time
                self._close()

    def close(self) -> None:
        with self.lock:
            self._close()

    def _close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


class Sleeper:
    """The worker side: wait until a byte arrives (or, off Linux, at most a second)."""

    def __init__(self, directory: str) -> None:
        self.blocking = sys.platform.startswith("linux")
        # RDWR: the FIFO never reads end-of-file when no web process has it open.
        self.fd = os.open(wake_path(directory), os.O_RDWR | (0 if self.blocking else os.O_NONBLOCK))

    def wait(self) -> bool:
        """Sleep; True when a byte (a queued job) woke us."""
        if self.blocking:
            return bool(os.read(self.fd, 1))
        ready, _, _ = select.select([self.fd], [], [], defaults.IDLE_CHECK)
        if ready:
            with contextlib.suppress(BlockingIOError):
                return bool(os.read(self.fd, 1))
        return False


class Poller:
    """The portable path's worker side: no FIFO, so look at the queue again after a short sleep."""

    def wait(self) -> bool:
        time.sleep(defaults.PORTABLE_POLL)
        return False
