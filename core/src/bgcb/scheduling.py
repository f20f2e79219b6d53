"""What the core asks a backend about its queue, beside the job's own life: whether it follows the
core's order, how many jobs it holds and runs, how many its workers run at once, and how long the
callbacks take.

:class:`~bgcb.lifecycle.Lifecycle` inherits it: one instance per configured backend.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import defaults
from .jobs import Job
from .limits import Limits
from .record import Counts
from .waiting import RunTimes

log = logging.getLogger("bgcb.lifecycle")


class Scheduling:
    """Capabilities, ordering and capacity of one backend (``hook``, ``name`` and ``_has`` are the lifecycle's)."""

    hook: Any
    name: str
    _has: dict[str, bool]

    def __init__(self) -> None:
        #: Run times of the jobs this process saw end, per callback: they estimate a queued job's wait.
        self.run_times = RunTimes()
        #: Whether a manager of this process orders jobs (``owner=`` or ``priority=``): then every job
        #: is queued with its lane and priority; else the backend may keep plain first in first out.
        self.ordered = False
        self._capabilities: set[str] | None = None
        self._warned: set[str] = set()
        self._capacity: tuple[float, int | None] = (float("-inf"), None)

    def capabilities(self) -> set[str]:
        """What the backend declares it provides (``bgcb_capabilities``), asked once."""
        if self._capabilities is None:
            declared = self.hook.bgcb_capabilities() if self._has["bgcb_capabilities"] else None
            self._capabilities = set(declared or ())
        return self._capabilities

    def order_jobs(self, why: str) -> None:
        """A manager asks for ordering (``why``: its option); warn once if the backend cannot."""
        if not self.ordered and "ordering" not in self.capabilities():
            log.warning(
                "bgcb: backend %r keeps a first-in-first-out queue: %s has no effect on the order jobs start in", self.name, why
            )
        self.ordered = True

    def expect(self, limits: Limits, retries: int) -> None:
        """A manager's limits and retries: warn once for each the backend cannot honour."""
        wants = []
        if limits.on_queue and not self._has["bgcb_counts"]:
            wants.append(("counts", "max_queued and max_queued_per_owner have no effect: it cannot count its queue"))
        if limits.running_per_owner is not None:
            self.order_jobs("max_running_per_owner=")
            if "running_limits" not in self.capabilities():
                wants.append(("running_limits", "max_running_per_owner has no effect"))
        if retries and not self.can_defer():
            wants.append(("deferral", "retries= cannot run failed jobs again: it cannot queue a job for later"))
        for what, why in wants:
            if what not in self._warned:
                self._warned.add(what)
                log.warning("bgcb: backend %r: %s", self.name, why)

    def place(self, job: Job) -> tuple[str | None, int | None, int | None]:
        """Where ``job`` queues: its lane, priority and its lane's running cap (all None in a plain FIFO)."""
        if not self.ordered:
            return None, None, None
        return job.owner or "", job.priority, job.running_cap

    def can_defer(self) -> bool:
        """Whether the backend can queue a job for later (``retry_later``, ``retries=``)."""
        return self._has["bgcb_defer"] and "deferral" in self.capabilities()

    def counts(self, lane: str) -> Counts | None:
        """The queue's size and ``lane``'s share (``bgcb_counts``), or None when the backend cannot tell."""
        if not self._has["bgcb_counts"]:
            return None
        found = self.hook.bgcb_counts(lane=lane)
        return Counts(*found) if found is not None else None

    def capacity(self) -> int | None:
        """How many jobs the backend's workers run at once (``bgcb_capacity``; None: cannot tell), reread at most
        every ``CAPACITY_FRESH`` seconds."""
        if not self._has["bgcb_capacity"]:
            return None
        at, known = self._capacity
        if time.monotonic() - at >= defaults.CAPACITY_FRESH:
            try:
                known = self.hook.bgcb_capacity()
            except Exception:
                log.warning("bgcb: %s could not tell its capacity", self.name, exc_info=True)
                known = None
            self._capacity = (time.monotonic(), known)
        return known
