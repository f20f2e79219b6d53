"""The worker loop, in a process the supervisor forked or spawned: claim the oldest job,
hand it to the core, sleep on the wake-up FIFO when the queue is empty.

A claim pops the id and lists it as held by this pid in one transaction, so
the supervisor can attribute the job to this worker should it die at any
point after the pop. The core (``jobs.execute``) then moves the job to
running, runs it and records how it ended; the worker only unlists it.
"""

from __future__ import annotations

import os
import signal

from bgcb.lifecycle import Lifecycle

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
    while True:
        job_id = store.claim(pid) if store.has_queued() else None
        if job_id is not None:
            if broken is None:
                jobs.execute(job_id)
            else:
                jobs.reject(job_id, broken)
            store.unlist(job_id, pid)
            continue
        sleeper.wait()
        if os.getppid() != supervisor:
            return
