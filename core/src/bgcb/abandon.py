"""Jobs nobody waits for any more: a page that stopped polling (tab closed, navigated away).

Each poll tells the backend that someone still watches the job
(``bgcb_touch``), at most every quarter of ``abandon_after`` per job and web
process, so that short jobs cost nothing. A queued job whose last poll (or
its submission) is older than ``abandon_after`` is cancelled instead of
started; a running one is watched by one thread per worker process and
cancelled once its page has been silent that long. Both end ``cancelled``, the way a
click on a cancel button ends them, and the job log says why.

The default (120 s) outlasts what a live page can do: the renderer's
interval (1 s by default), a held poll (``hold``), and browsers' throttling
of timers in background tabs (about one a minute in Chrome after a while).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from .jobs import Job, Status

if TYPE_CHECKING:
    from .lifecycle import Lifecycle

log = logging.getLogger("bgcb.jobs")

#: Jobs whose last touch a web process remembers.
_REMEMBERED = 4096
#: Seconds between the worker's looks at its running jobs.
_WATCH_EVERY = 0.5


class Abandonment:
    """The web side's touches and the worker side's checks, for one backend."""

    def __init__(self, jobs: Lifecycle) -> None:
        self.jobs = jobs
        self.after = float(jobs.settings.get("abandon_after", 0) or 0)
        self._touched: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        #: The worker side: jobs running in this process, and the one thread that watches them.
        self._running: dict[str, Job] = {}
        self._watcher: threading.Thread | None = None

    @property
    def supported(self) -> bool:
        return bool(self.jobs._has["bgcb_touch"] and self.jobs._has["bgcb_seen"])

    def after_for(self, job: Job) -> float | None:
        """The job's own ``abandon_after`` (its manager's), else the backend's; None: never abandoned."""
        after = job.abandon_after if job.abandon_after is not None else self.after
        return after if after > 0 and self.supported else None

    def polled(self, job_id: str, status: Status) -> None:
        """A browser polled ``job_id``: tell the backend, unless this process did less than a quarter of
        the job's ``abandon_after`` ago (or the job was submitted that recently)."""
        after = status.abandon_after
        if not after or not status.state.active or not self.supported:
            return
        now = time.time()
        with self._lock:
            last = max(status.submitted_at or 0.0, self._touched.get(job_id, 0.0))
            if now - last < after / 4:
                return
            self._touched[job_id] = now
            self._touched.move_to_end(job_id)
            while len(self._touched) > _REMEMBERED:
                self._touched.popitem(last=False)
        self.jobs.hook.bgcb_touch(job_id=job_id, ttl=self.jobs.settings["job_ttl"])

    def silence(self, job_id: str, submitted_at: float) -> float:
        """Seconds since a browser last polled the job (or it was submitted)."""
        seen = self.jobs.hook.bgcb_seen(job_id=job_id)
        return time.time() - max(submitted_at, float(seen or 0.0))

    def abandoned(self, job_id: str, job: Job) -> bool:
        """Whether the job's page has been silent for its ``abandon_after`` (read only once it could be)."""
        after = self.after_for(job)
        if after is None or time.time() - job.submitted_at < after:
            return False
        return self.silence(job_id, job.submitted_at) >= after

    def end(self, job_id: str, job: Job, running: bool) -> None:
        if self.jobs.cancel(job_id):
            where = "while it ran" if running else "before it started"
            silent = self.after_for(job) or 0.0
            log.info("bgcb: job %s (%s) cancelled %s: its page stopped polling %g s ago", job_id, job.callback, where, silent)

    def watch(self, job_id: str, job: Job) -> Callable[[], None] | None:
        """In the worker: have the process's one watch thread cancel the running job once its page is
        silent for its ``abandon_after``; call the returned function when the job ends."""
        if self.after_for(job) is None:
            return None
        with self._lock:
            self._running[job_id] = job
            if self._watcher is None or not self._watcher.is_alive():  # none yet, or a fork left it behind
                self._watcher = threading.Thread(target=self._watch, name="bgcb-abandon", daemon=True)
                self._watcher.start()
        return lambda: self._forget(job_id)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._running.pop(job_id, None)

    def _watch(self) -> None:
        """Twice a second, look at the running jobs old enough to be abandoned (no I/O for the others)."""
        while True:
            time.sleep(_WATCH_EVERY)
            with self._lock:
                running = list(self._running.items())
            for job_id, job in running:
                try:
                    if self.abandoned(job_id, job):
                        self._forget(job_id)
                        self.end(job_id, job, running=True)
                except Exception:  # the store is away: the next look retries
                    log.debug("bgcb: could not check whether job %s was abandoned", job_id, exc_info=True)
