"""The channel the runner writes progress and set_props to: the backend's store, through the core."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import defaults, observers
from .jobs import Job, State, progress_update, props_update
from .record import dumps

if TYPE_CHECKING:
    from .lifecycle import Lifecycle


class StoreChannel:
    """Writes each update through ``bgcb_append`` and reads the record's state to see a cancel.

    A state read is trusted for :data:`bgcb.defaults.CHANNEL_FRESH` seconds,
    so that a callback reporting progress in a tight loop costs one append
    per update and a state read at most five times a second.
    """

    def __init__(self, jobs: Lifecycle, job_id: str, job: Job | None = None) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.job = job
        #: Whether an observer hears updates (asked once per run: updates may come every millisecond).
        self.heard = job is not None and observers.wanted("bgcb_job_update")
        self.count = 0
        self._state = State.RUNNING
        self._read_at = time.monotonic()  # the claim just saw it start

    def _append(self, update: dict[str, Any]) -> None:
        self.jobs.hook.bgcb_append(job_id=self.job_id, update=dumps(update), ttl=self.jobs.settings["job_ttl"])
        self.count += 1
        if self.heard and self.job is not None:
            observers.update(self.job_id, self.job, update)

    def progress(self, value: list[Any]) -> None:
        self._append(progress_update(value))

    def set_props(self, component_id: str, props: dict[str, Any]) -> None:
        self._append(props_update(component_id, props))

    def cancelled(self) -> bool:
        """Whether the job is no longer running (cancelled, timed out or lost): the runner stops it."""
        now = time.monotonic()
        if now - self._read_at >= defaults.CHANNEL_FRESH:
            stored = self.jobs.hook.bgcb_read(job_id=self.job_id, drain=False)
            self._state = State(stored.state) if stored is not None else State.UNKNOWN
            self._read_at = now
        return self._state is not State.RUNNING
