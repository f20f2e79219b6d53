"""Limits on the queue: how many jobs may wait in all and per owner, and how many of one owner may run at once.

``bgcb.manager(max_queued=..., max_queued_per_owner=..., max_running_per_owner=...)``.
The queue limits are checked in the web request that would queue a job
(one ``bgcb_counts`` read): past one, no job is queued, nothing already queued
is touched, and the callback ends at once with an error that says which limit
and what to do: the app's ``on_error`` gets it, else Dash shows it. The
refusal travels as a job handle of its own (``refused:<limit>:<n>``), so any
web process answers its polls without a store. The running limit is the
queue's: a lane with that many jobs running is passed over, its jobs keeping
their places (see :mod:`bgcb.queueing`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .errors import ConfigurationError
from .jobs import Outcome
from .record import Counts

log = logging.getLogger("bgcb.limits")

#: Prefix of the handle of a job refused by a limit: nothing runs, polls answer with the refusal.
REFUSED_HANDLE = "refused:"

_MESSAGES = {
    "queue": (
        "bgcb: the queue is full: {n} jobs are waiting, the most this app lets wait at once. "
        "Nothing was started and no waiting job was touched; try again in a minute."
    ),
    "input": (
        "bgcb: this callback's inputs cannot be stored for a worker (nested deeper than JSON can be encoded "
        "here, or not JSON data). Nothing was started; send flatter data to a background callback."
    ),
    "owner": (
        "bgcb: you already have {n} jobs waiting, the most one user may queue. "
        "Nothing was started; try again when one of them has started, or cancel one."
    ),
}


def _count(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"bgcb: {name}={value!r}; give a whole number of jobs >= 1, or None for no limit.")
    return value


@dataclass(frozen=True)
class Limits:
    """A manager's limits (None: no limit)."""

    queued: int | None = None
    queued_per_owner: int | None = None
    running_per_owner: int | None = None

    @classmethod
    def of(cls, queued: object, queued_per_owner: object, running_per_owner: object, has_owner: bool) -> Limits:
        """Checked manager options; per-owner limits need the manager's ``owner=``."""
        limits = cls(
            _count("max_queued", queued),
            _count("max_queued_per_owner", queued_per_owner),
            _count("max_running_per_owner", running_per_owner),
        )
        if not has_owner and (limits.queued_per_owner or limits.running_per_owner):
            raise ConfigurationError(
                "bgcb: max_queued_per_owner and max_running_per_owner count jobs per owner: also give owner= "
                "(for example bgcb.owner_header('X-User'), or a function reading the session)."
            )
        return limits

    @property
    def on_queue(self) -> bool:
        """Whether a submit must count the queue first."""
        return self.queued is not None or self.queued_per_owner is not None

    def refusal(self, counts: Counts | None, owner: str | None) -> str | None:
        """The handle that refuses a job when ``counts`` are at a limit, else None (also when unknown)."""
        if counts is None:
            return None
        if self.queued is not None and counts.queued >= self.queued:
            log.warning("bgcb: refused a job of %s: %d jobs queued (max_queued)", owner or "no owner", counts.queued)
            return f"{REFUSED_HANDLE}queue:{self.queued}"
        if self.queued_per_owner is not None and counts.lane_queued >= self.queued_per_owner:
            log.warning("bgcb: refused a job of %s: %d of theirs queued (max_queued_per_owner)", owner, counts.lane_queued)
            return f"{REFUSED_HANDLE}owner:{self.queued_per_owner}"
        return None


def is_refused(handle: str) -> bool:
    return handle.startswith(REFUSED_HANDLE)


def refused_outcome(handle: str) -> Outcome:
    """The error a refused job's polls answer with (the handle comes from the browser: read it warily)."""
    _, _, rest = handle.partition(":")
    which, _, n = rest.partition(":")
    template = _MESSAGES.get(which)
    if template is None or not (n.isascii() and n.isdigit()) or len(n) > 9:  # (the input refusal's n is 0)
        return Outcome.failure("bgcb: this job was refused by a queue limit and did not run; try again later.")
    return Outcome.failure(template.format(n=int(n)))
