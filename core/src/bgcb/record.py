"""What the core stores for a job, and the shape a backend hands it back in.

A backend keeps three things per job id: the state (a short string it can
compare atomically), the job (JSON text, written once) and the core's status
data (JSON text, replaced with each state change). Only the core reads the
data; a backend stores it as it is.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from .jobs import Job, Outcome, State, Status, Update

__all__ = ["Counts", "Data", "Queued", "Started", "Stored", "dumps", "loads"]


def dumps(value: Any, allow_nan: bool = False) -> str:
    """Compact JSON text, the only encoding that crosses into a backend (NaN and Infinity only where asked:
    a callback's inputs, as Dash passes them)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=allow_nan)


def loads(text: str) -> Any:
    return json.loads(text)


@dataclass
class Stored:
    """A record as :func:`bgcb.hookspecs.BackendSpec.bgcb_read` returns it."""

    state: str
    data: str
    #: Updates drained by this read (JSON text each), oldest first.
    updates: list[str] = field(default_factory=list)
    #: 0-based place in the queue while queued, when the backend knows it.
    position: int | None = None
    #: Running: whether the worker running the job is alive. Queued: whether any worker serves
    #: the queue. False = known gone (none), None = cannot tell.
    alive: bool | None = None
    #: With ``alive=False``: the backend's words for why, and what to start, shown to the user
    #: (e.g. "the worker pool stopped: no heartbeat for 10 s").
    reason: str | None = None


class Counts(NamedTuple):
    """What :func:`bgcb.hookspecs.BackendSpec.bgcb_counts` returns: the queue's size, and one lane's share."""

    #: Jobs in state queued, in every lane (those waiting to be run again included).
    queued: int
    #: Of those, the jobs of the lane asked about.
    lane_queued: int
    #: Jobs of that lane running now.
    lane_running: int


@dataclass
class Data:
    """The core's status data of one job (the ``data`` JSON text)."""

    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: Wall-clock time after which the running job is past its timeout.
    deadline: float | None = None
    timeout: float | None = None
    #: Who runs it (``host:pid``, as the backend's worker loop names itself).
    worker: str | None = None
    outcome: dict[str, Any] | None = None
    #: True when the callback reports progress: it can stop by itself at its next report, so a
    #: cancel waits ``cancel_grace`` before the hard stop (a job that never reports is stopped at once).
    cooperative: bool | None = None
    #: The callback's key, so that a poll can tell which callback's run times estimate the wait.
    callback: str | None = None
    #: Who submitted it (``bgcb.manager(owner=...)``).
    owner: str | None = None
    #: Seconds of silence from its page after which it is cancelled as abandoned (None: never).
    abandon_after: float | None = None
    #: Which run this is, from 2 on (None: the first).
    attempt: int | None = None
    #: While it waits to be run again: when it is queued again (seconds since the epoch).
    retry_at: float | None = None

    @classmethod
    def starting(cls, job: Job, worker: str, abandon_after: float | None, attempt: int | None) -> Data:
        """The data of ``job`` as ``worker`` starts it now."""
        now = time.time()
        deadline = now + job.timeout if job.timeout else None
        return cls(
            job.submitted_at,
            now,
            None,
            deadline,
            job.timeout,
            worker,
            None,
            job.progress or None,
            job.callback,
            job.owner,
            abandon_after,
            attempt,
        )

    def encode(self) -> str:
        return dumps({k: v for k, v in vars(self).items() if v is not None})

    @classmethod
    def decode(cls, text: str) -> Data:
        raw = loads(text) if text else {}
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})

    def ended(self, outcome: Outcome) -> Data:
        """A copy for the terminal state ``outcome`` puts the job in."""
        return replace(self, finished_at=time.time(), deadline=None, outcome=outcome.to_json(), cooperative=None)

    def status(self, state: State, position: int | None = None) -> Status:
        place = position if state is State.QUEUED else None
        retry_at = self.retry_at if state is State.QUEUED else None
        return Status(
            state,
            place,
            self.submitted_at,
            self.started_at,
            self.finished_at,
            self.callback,
            self.owner,
            self.abandon_after,
            self.attempt or 1,
            retry_at,
        )

    @property
    def result(self) -> Outcome | None:
        return Outcome.from_json(self.outcome) if self.outcome else None


def decode_updates(texts: list[str]) -> list[Update]:
    """Drained update texts as dicts; one the core cannot read is dropped, not fatal."""
    out: list[Update] = []
    for text in texts:
        try:
            update = loads(text)
        except ValueError:
            continue
        if isinstance(update, dict):
            out.append(update)
    return out


class Queued(NamedTuple):
    """A job ready to be queued: its id, and its JSON text and first data as stored."""

    job_id: str
    job: Job
    payload: str
    data: str


class Started(NamedTuple):
    """A job :meth:`bgcb.lifecycle.Lifecycle.start` moved to running: its id, the job and the data written with it."""

    job_id: str
    job: Job
    data: Data
