"""The supervisor: keeps N warm worker processes for one directory and hard-stops jobs.

It holds an exclusive lock on ``<directory>/supervisor.lock`` (:func:`pool_lock`),
so one pool serves a directory however many web processes share it; a second
supervisor waits as a standby. It forks the workers (cheap: it imported the
app and holds no web data) and, each tick (0.2 s, or at once on SIGCHLD):

- reaps dead workers and tells the core (``jobs.lost``) about the job each one
  held, with how it died; a new worker takes its place;
- kills the worker of a job whose stop time passed (``bgcb_stop``: a cancel
  it did not obey, a job the web found overdue) or that ran past its timeout
  plus ``cancel_grace``; the core then records the timeout or the loss;
- writes the pool's heartbeat and deletes expired records now and then.

Which state a job ends in is the core's decision; the supervisor only reports
that a worker is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

from bgcb.lifecycle import Lifecycle

from . import defaults, worker
from .store import Store
from .wake import ensure_fifo, wake_path

log = logging.getLogger("bgcb.diskcache")

#: Why a job ended when its pool stopped, or when a new pool found it still listed.
POOL_STOPPED = "the bgcb-diskcache worker pool stopped (it was shut down)"
PREVIOUS_POOL = "the bgcb-diskcache worker pool that ran it stopped before it finished"


@contextlib.contextmanager
def pool_lock(directory: str, parent: int | None = None) -> Iterator[None]:
    """Hold the directory's supervisor lock; wait as a standby while another
    pool holds it (giving up if ``parent`` exits)."""
    fd = os.open(os.path.join(directory, defaults.LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    announced = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if parent is not None and os.getppid() != parent:
                raise SystemExit(0)
            if not announced:
                log.info("bgcb-diskcache: another worker pool serves %s; waiting as a standby", directory)
                announced = True
            time.sleep(defaults.STANDBY_RETRY)
        yield
    finally:
        os.close(fd)


def describe_exit(status: int) -> str:
    """``killed by SIGKILL (9)``, ``exited with code 1``: how a worker ended, for the job's error."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name} ({sig})"
    return f"exited with code {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else f"ended (status {status})"


class Supervisor:
    """Keeps ``workers`` worker processes alive for the store's directory.

    ``reopen`` is called in each forked worker: it gives the backend (and so
    ``jobs``) a store connection of the worker's own. With ``broken`` (the
    app could not be imported) workers reject every job with that reason.
    """

    def __init__(
        self,
        jobs: Lifecycle,
        store: Store,
        reopen: Callable[[], Store],
        workers: int,
        parent: int | None = None,
        broken: str | None = None,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.reopen = reopen
        self.size = max(1, workers)
        self.cancel_grace = float(jobs.settings["cancel_grace"])
        self.parent = parent
        self.broken = broken
        self.me = os.getpid()
        self.children: dict[int, float] = {}  # pid -> forked at
        self.killed: dict[int, str] = {}  # pid -> why the supervisor killed it
        self.stopping = False
        self.last_beat = self.last_cleanup = 0.0

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                worker.work(self.jobs, self.reopen(), self.me, self.broken)
            except BaseException:  # noqa: B036 - a worker must never return into the supervisor's code
                log.exception("bgcb-diskcache: worker crashed")
                code = 1
            finally:
                os._exit(code)
        self.children[pid] = time.time()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def run(self) -> None:
        """Supervise until SIGTERM/SIGINT (or until the parent web process exits)."""
        ensure_fifo(self.store.directory)
        ensure_fifo(self.store.directory, defaults.STOP_NAME)
        # RDWR: never end-of-file; a web process writes a byte when a job must stop now (a cancel).
        stops = os.open(wake_path(self.store.directory, defaults.STOP_NAME), os.O_RDWR | os.O_NONBLOCK)
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        os.set_blocking(rfd, False)
        signal.set_wakeup_fd(wfd)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        ended = self.settle(None, PREVIOUS_POOL)
        if ended:
            log.warning("bgcb-diskcache: %d job(s) of a previous pool were still listed as running", len(ended))
        log.info("bgcb-diskcache: pool of %d worker(s) on %s (supervisor pid %d)", self.size, self.store.directory, self.me)
        try:
            while not self.stopping:
                self._tick()
                with contextlib.suppress(InterruptedError):
                    select.select([rfd, stops], [], [], defaults.TICK)
                for fd in (rfd, stops):
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 512)
                self._contained(self._reap)
                if self.parent is not None and os.getppid() != self.parent:
                    log.info("bgcb-diskcache: the web process exited; stopping the pool")
                    break
        finally:
            self._shutdown()
            signal.set_wakeup_fd(-1)
            for fd in (rfd, wfd, stops):
                os.close(fd)

    def _tick(self) -> None:
        now = time.time()
        if now - self.last_beat >= defaults.BEAT_EVERY:
            self._contained(self.store.beat, self.size)  # before the first fork: a running job always has a heartbeat
            self.last_beat = now
        while len(self.children) < self.size:
            self._spawn()
        if now - self.last_cleanup >= defaults.CLEANUP_EVERY:
            self._contained(self.store.cleanup)
            self.last_cleanup = now
        self._contained(self._enforce, now)

    def _contained(self, step: Callable[..., Any], *args: Any) -> None:
        """Run one step of the tick; an error is logged and the pool goes on (the next tick retries)."""
        try:
            step(*args)
        except Exception:
            log.exception("bgcb-diskcache: the supervisor's %s failed; the pool goes on", getattr(step, "__name__", step))

    def _enforce(self, now: float) -> None:
        """Kill workers holding a job whose stop time passed, or that ran past timeout + cancel_grace."""
        for job_id, entry in self.store.running().items():
            pid = entry.get("pid")
            if not isinstance(pid, int) or pid not in self.children or pid in self.killed:
                continue
            stop_at, timeout = entry.get("stop_at"), entry.get("timeout")
            if stop_at is not None and now >= stop_at:
                why = f"its worker process (pid {pid}) was stopped: the job had ended or was overdue"
            elif timeout and now >= entry["started_at"] + timeout + self.cancel_grace:
                why = f"its worker process (pid {pid}) was stopped: it ran past its timeout of {timeout:g} s"
            else:
                continue
            if self.store.kill_holder(job_id, pid, lambda p: os.kill(p, signal.SIGKILL)):
                self.killed[pid] = why

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            del self.children[pid]
            how = describe_exit(status)
            killed = self.killed.pop(pid, None)
            if killed is not None:
                self.settle(pid, killed)
            elif self.stopping:
                self.settle(pid, POOL_STOPPED)
            else:
                ended = self.settle(pid, f"its worker process (pid {pid}) died: {how}")
                held = f" while running {ended}" if ended else ""
                log.warning("bgcb-diskcache: worker %d %s%s; starting a new one", pid, how, held)

    def settle(self, pid: int | None, reason: str) -> list[str]:
        """Tell the core that the jobs ``pid`` held (any pid's, when None) lost their worker; unlist them."""
        held = [j for j, e in self.store.running().items() if pid is None or e.get("pid") == pid]
        for job_id in held:
            self.jobs.lost(job_id, reason)  # a no-op for a job that already ended
            self.store.unlist(job_id, pid)
        return held

    def _shutdown(self) -> None:
        self.stopping = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + defaults.SHUTDOWN_WAIT
        while self.children and time.time() < deadline:
            self._reap()
            time.sleep(0.02)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.settle(pid, POOL_STOPPED)
            del self.children[pid]
        self.settle(None, POOL_STOPPED)
        with contextlib.suppress(Exception):
            self.store.forget_pool()
        log.info("bgcb-diskcache: pool on %s stopped", self.store.directory)
