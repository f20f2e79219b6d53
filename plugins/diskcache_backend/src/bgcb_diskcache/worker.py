"""The worker loop, in a process the supervisor forked or spawned: claim the oldest job,
hand it to the core, sleep on the wake-up FIFO when the queue is empty.

A claim pops the id, lists it as held by this pid and lets the core move the
job to running (``jobs.start``), in one transaction: one commit before the
callback runs, and the supervisor can attribute the job to this worker
should it die at any point after the pop. The core (``jobs.run``) then runs
it and records how it ended; the worker only unlists it.
"""

from __future__ import annotations

import os
import signal

from bgcb.lifecycle import Lifecycle, Started

from .store import Store
from .wake import Poller, Sleeper


def _die_with_parent() -> None:
    """Linux: die with the supervisor, so no worker outlives its pool."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: idle workers check their parent instead
        pass


def _reset_signals() -> None:
    """Undo the supervisor's handlers: SIGTERM ends a worker, Ctrl-C is the supervisor's to handle."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGCHLD"):  # not on Windows
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def work(jobs: Lifecycle, store: Store, supervisor: int, broken: str | None = None, portable: bool = False) -> None:
    """Run jobs until the supervisor goes away; ``store`` is one this process opened.

    With ``broken`` (the reason the app could not be imported) every job is
    rejected with it, so the browser shows why instead of waiting forever.
    An error of the store propagates: the worker dies, and the supervisor
    records its job as lost and starts a new one. ``portable``: look at the
    queue every few milliseconds instead of sleeping on the wake-up FIFO.
    """
    _die_with_parent()
    _reset_signals()
    sleeper = Poller() if portable else Sleeper(store.directory)
    pid = os.getpid()
    rung = True  # look at the queue before the first sleep
    while True:
        # A wake-up byte means a job was queued: claim at once. Otherwise first look with a cheap
        # read, so that idle workers do not all take the write lock for nothing.
        job_id, started = _claim(jobs, store, pid, broken is None) if rung or store.has_queued() else (None, None)
        if job_id is not None:
            if broken is not None:
                jobs.reject(job_id, broken)
            elif started is not None:
                jobs.run(started)
            store.unlist(job_id, pid)
            rung = False
            continue
        rung = sleeper.wait()
        if os.getppid() != supervisor:
            return


def _claim(jobs: Lifecycle, store: Store, pid: int, start: bool) -> tuple[str | None, Started | None]:
    """Pop the next id, list it as this worker's and (``start``) move it to running, in one transaction."""
    failed: BaseException | None = None
    started = None
    with store.transaction():
        job_id = store.claim(pid)
        if job_id is not None and start:
            try:
                started = jobs.start(job_id)
            except BaseException as exc:  # commit the claim first, so the supervisor finds the job held when we die
                failed = exc
    if failed is not None:
        raise failed
    return job_id, started
