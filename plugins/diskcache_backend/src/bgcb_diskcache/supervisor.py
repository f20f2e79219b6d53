"""The supervisor: keeps N warm worker processes for one directory and hard-stops jobs.

It holds the directory's pool lock (:func:`pool_lock`), so one pool serves a
directory however many web processes share it; a second supervisor waits as
a standby. Its workers are forked or spawned (:mod:`.children`), and each
tick (0.2 s forked, or at once on SIGCHLD or a stop request; 0.05 s spawned):

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
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from bgcb.lifecycle import Lifecycle

from . import defaults, worker
from .children import Forked, Spawned
from .store import Store
from .wake import Waker, ensure_fifo, wake_path

log = logging.getLogger("bgcb.diskcache")

#: Why a job ended when its pool stopped, or when a new pool found it still listed.
POOL_STOPPED = "the bgcb-diskcache worker pool stopped (it was shut down)"
PREVIOUS_POOL = "the bgcb-diskcache worker pool that ran it stopped before it finished"


@contextlib.contextmanager
def pool_lock(directory: str, parent: int | None = None, lease: tuple[Store, float] | None = None) -> Iterator[str | None]:
    """Hold the directory's pool lock; wait as a standby while another pool
    holds it (giving up if ``parent`` exits). Yields the lease owner, if any.

    The lock is ``flock`` on ``<directory>/supervisor.lock`` (freed by the
    kernel when its holder dies), or, with ``lease=(store, dead_after)`` (the
    portable path), the pool's heartbeat record itself: taken when absent or
    older than ``dead_after``, renewed by every beat.
    """
    owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}" if lease else None
    fd = -1 if lease else os.open(os.path.join(directory, defaults.LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    announced = False
    try:
        while not (lease[0].take_pool(owner or "", lease[1]) if lease else _flock(fd)):
            if parent is not None and os.getppid() != parent:
                raise SystemExit(0)
            if not announced:
                log.info("bgcb-diskcache: another worker pool serves %s; waiting as a standby", directory)
                announced = True
            time.sleep(defaults.STANDBY_RETRY)
        yield owner
    finally:
        if fd >= 0:
            os.close(fd)


def _flock(fd: int) -> bool:
    import errno
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return False


class Supervisor:
    """Keeps ``workers`` worker processes alive for the store's directory.

    ``reopen`` is called in each forked worker: it gives the backend (and so
    ``jobs``) a store connection of the worker's own. With ``spawn`` (the
    portable path: name, options and app of the backend) workers are fresh
    interpreters instead. With ``broken`` (the app could not be imported)
    workers reject every job with that reason. ``owner`` is the pool's lease
    (see :func:`pool_lock`), renewed by each heartbeat.
    """

    def __init__(
        self,
        jobs: Lifecycle,
        store: Store,
        reopen: Callable[[], Store],
        workers: int,
        parent: int | None = None,
        broken: str | None = None,
        spawn: dict[str, Any] | None = None,
        owner: str | None = None,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.size = max(1, workers)
        self.cancel_grace = float(jobs.settings["cancel_grace"])
        self.parent = parent
        self.me = os.getpid()
        self.owner = owner
        if spawn is None:
            self.children: Forked | Spawned = Forked(lambda: worker.work(jobs, reopen(), self.me, broken))
        else:
            self.children = Spawned(spawn)
        self.killed: dict[int, str] = {}  # pid -> why the supervisor killed it
        self.waker: Waker | None = None  # rings idle workers when a deferred job is due
        self.stopping = False
        self.last_beat = self.last_cleanup = 0.0
        #: Workers that die young (a worker that cannot start) are restarted ever more slowly.
        self.start_after, self.backoff = 0.0, 0.0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def run(self) -> None:
        """Supervise until SIGTERM/SIGINT (or until the parent web process exits)."""
        if not self.children.portable:
            ensure_fifo(self.store.directory)
            ensure_fifo(self.store.directory, defaults.STOP_NAME)
            self.waker = Waker(self.store.directory)
        self.children.open(wake_path(self.store.directory, defaults.STOP_NAME))
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        ended = self.settle(None, PREVIOUS_POOL)
        if ended:
            log.warning("bgcb-diskcache: %d job(s) of a previous pool were still listed as running", len(ended))
        how = "spawned" if self.children.portable else "forked"
        where = self.store.directory
        log.info("bgcb-diskcache: pool of %d %s worker(s) on %s (supervisor pid %d)", self.size, how, where, self.me)
        try:
            while not self.stopping:
                self._tick()
                self.children.sleep()
                self._contained(self._reap)
                if self.parent is not None and os.getppid() != self.parent:
                    log.info("bgcb-diskcache: the web process exited; stopping the pool")
                    break
        finally:
            self._shutdown()
            self.children.close()

    def _tick(self) -> None:
        now = time.time()
        if now - self.last_beat >= defaults.BEAT_EVERY:
            self._contained(self._beat)  # before the first worker: a running job always has a heartbeat
            self.last_beat = now
        while len(self.children.pids) < self.size and not self.stopping and now >= self.start_after:
            self.children.start()
        if now - self.last_cleanup >= defaults.CLEANUP_EVERY:
            self._contained(self.store.cleanup)
            self.last_cleanup = now
        self._contained(self._enforce, now)
        if self.waker is not None:
            self._contained(self._wake_for_due)

    def _wake_for_due(self) -> None:
        """Ring an idle worker when a job waiting to run again is due (``bgcb_defer``): sleeping workers
        see no enqueue for it. Portable workers look at the queue by themselves."""
        if self.waker is not None and self.store.due():
            self.waker.wake()

    def _beat(self) -> None:
        if not self.store.beat(self.size, self.owner):
            where = self.store.directory
            log.warning("bgcb-diskcache: another pool took over %s (this one missed its heartbeats); stopping", where)
            self.stopping = True

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
            if not isinstance(pid, int) or pid not in self.children.pids or pid in self.killed:
                continue
            stop_at, timeout = entry.get("stop_at"), entry.get("timeout")
            if stop_at is not None and now >= stop_at:
                why = f"its worker process (pid {pid}) was stopped: the job had ended or was overdue"
            elif timeout and now >= entry["started_at"] + timeout + self.cancel_grace:
                why = f"its worker process (pid {pid}) was stopped: it ran past its timeout of {timeout:g} s"
            else:
                continue
            if self.store.kill_holder(job_id, pid, self.children.kill):
                self.killed[pid] = why

    def _reap(self) -> None:
        for pid, how, lived in self.children.reap():
            if lived < defaults.DIED_YOUNG and pid not in self.killed and not self.stopping:
                self.backoff = min(max(defaults.RESTART_BACKOFF, 2 * self.backoff), defaults.RESTART_BACKOFF_MAX)
                self.start_after = time.time() + self.backoff
            else:
                self.backoff = 0.0
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
        for pid in list(self.children.pids):
            self.children.terminate(pid)
        deadline = time.time() + defaults.SHUTDOWN_WAIT
        while self.children.pids and time.time() < deadline:
            self._reap()
            time.sleep(0.02)
        for pid in list(self.children.pids):
            self.children.kill(pid)
        while self.children.pids:
            for pid, _, _ in self.children.reap():
                self.settle(pid, POOL_STOPPED)
            time.sleep(0.01)
        self.settle(None, POOL_STOPPED)
        with contextlib.suppress(Exception):
            self.store.forget_pool(self.owner)
        if self.waker is not None:
            self.waker.close()
        log.info("bgcb-diskcache: pool on %s stopped", self.store.directory)
