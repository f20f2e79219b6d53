"""What the core reads from a backend beside a job's life: cached outcomes, the listing of active jobs,
the shared signing secret, and waits for a record's change. :class:`~bgcb.lifecycle.Lifecycle` inherits it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .jobs import Outcome, Status, is_job_id
from .record import loads

log = logging.getLogger("bgcb.lifecycle")


class Lookups:
    """Reads of one backend that change nothing (``hook``, ``_has`` and ``status`` are the lifecycle's)."""

    hook: Any
    _has: dict[str, bool]
    status: Callable[[str], Status]

    def cached(self, cache_key: str) -> Outcome | None:
        if not self._has["bgcb_cache_get"]:
            return None
        text = self.hook.bgcb_cache_get(cache_key=cache_key)
        try:
            return Outcome.from_json(loads(text)) if text else None
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):  # not an outcome bgcb kept: a miss
            log.warning("bgcb: ignoring an unreadable cached outcome under %s", cache_key[:16])
            return None

    def jobs(self) -> list[tuple[str, Status]] | None:
        """Queued and running jobs with their status, for ``bgcb jobs``; None if the backend cannot list them."""
        if not self._has["bgcb_active"]:
            return None
        listing = []
        for job_id in self.hook.bgcb_active() or []:
            status = self.status(job_id)
            if status.state.active:
                listing.append((job_id, status))
        return listing

    def shared_secret(self, generate: Callable[[], bytes]) -> bytes | None:
        return self.hook.bgcb_shared_secret(generate=generate) if self._has["bgcb_shared_secret"] else None

    def wait(self, job_id: str, seconds: float) -> bool | None:
        """Block until ``job_id`` may have changed (True) or ``seconds`` pass (False); None if the backend cannot tell."""
        if not self._has["bgcb_wait"] or not is_job_id(job_id):
            return None
        return self.hook.bgcb_wait(job_id=job_id, seconds=seconds)
