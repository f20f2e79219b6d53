"""What the page of a queued job shows: its place in the queue and an estimated wait.

``bgcb.manager(waiting=Output("status", "children"))`` names the component
property; at every poll while the job waits, the manager adds the text to the
answer's ``sideUpdate`` (the way Dash delivers ``set_props``), and clears it
once the job runs. The callback's own code does not change.

The estimate (:meth:`RunTimes.eta`): the median of the last
:data:`~bgcb.defaults.RUN_TIMES_KEPT` run times of the same callback that
this web process saw end, times the rounds of work before this job starts
(``ceil((ahead + 1) / capacity)``, with ``capacity`` the jobs the backend's
workers run at once). Without any history there is no estimate, and the
text shows the position alone. It assumes the jobs ahead take as long as this
one's callback usually does, and that the running ones have just started, so
it errs long rather than short.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import defaults
from .jobs import Snapshot, State

#: The default text; ``{position}`` is 1 for the next job to start.
WAITING_TEXT = "Queued: position {position}{eta_text}"
#: The text while a job waits to run again (``bgcb.retry_later``, ``retries=``), with a format string ``waiting_text``.
RETRY_TEXT = "Runs again in about {retry}"


@dataclass(frozen=True)
class Waiting:
    """A queued job's place, as the waiting text's format fields (or a ``waiting_text`` function's argument)."""

    #: 1-based: 1 is the next job to start.
    position: int
    #: Jobs that start before this one.
    ahead: int
    #: Estimated seconds until it starts, or None without run-time history.
    eta: float | None
    #: Seconds until a job that waits to run again is queued again (then ``position`` is 0), else None.
    retry_in: float | None = None

    @property
    def eta_text(self) -> str:
        """`` · about 20 s to start`` (empty without an estimate): the default text's suffix."""
        return f" · about {describe_seconds(self.eta)} to start" if self.eta is not None else ""

    def fields(self) -> dict[str, Any]:
        eta = describe_seconds(self.eta) if self.eta is not None else ""
        return {"position": self.position, "ahead": self.ahead, "eta": eta, "eta_seconds": self.eta, "eta_text": self.eta_text}


def describe_seconds(seconds: float) -> str:
    """``5 s``, ``2 min``, ``1 h 10 min``: a wait as a person reads it."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


class RunTimes:
    """Recent run times per callback, learnt from the jobs this process saw end (thread-safe)."""

    def __init__(self, keep: int = defaults.RUN_TIMES_KEPT) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, deque[float]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()  # jobs already counted (polls repeat)
        self._keep = keep

    def learn(self, job_id: str, snap: Snapshot) -> None:
        """Count ``snap``'s run time once, if it is a job that ran to success."""
        status = snap.status
        if status.state is not State.SUCCEEDED or not status.callback or not status.started_at or not status.finished_at:
            return
        with self._lock:
            if job_id in self._seen:
                return
            self._seen[job_id] = None
            if len(self._seen) > 4 * self._keep * max(1, len(self._times)):
                self._seen.popitem(last=False)
            self._times.setdefault(status.callback, deque(maxlen=self._keep)).append(status.finished_at - status.started_at)

    def median(self, callback: str) -> float | None:
        with self._lock:
            times = list(self._times.get(callback, ()))
        return statistics.median(times) if times else None

    def eta(self, callback: str | None, ahead: int, capacity: int | None) -> float | None:
        typical = self.median(callback) if callback else None
        if typical is None:
            return None
        return math.ceil((ahead + 1) / max(1, capacity or 1)) * typical


class WaitingDisplay:
    """Where and how a manager shows a queued job's place (``waiting=`` and ``waiting_text=``)."""

    def __init__(self, target: Any, text: str | Callable[[Waiting], Any] = WAITING_TEXT) -> None:
        self.component_id, self.prop = _target(target)
        if not (isinstance(text, str) or callable(text)):
            raise TypeError(f"bgcb: waiting_text={text!r}; give a format string or a function of a bgcb.Waiting.")
        self.text = text

    def props(self, snap: Snapshot, run_times: RunTimes, capacity: Callable[[], int | None]) -> dict[str, dict[str, Any]]:
        """The ``sideUpdate`` entry for a poll answered with ``snap``: the text while queued, empty after."""
        status = snap.status
        if status.state is State.QUEUED and status.retry_at is not None:
            waiting = Waiting(0, 0, None, max(0.0, status.retry_at - time.time()))
            retry = describe_seconds(waiting.retry_in or 0)
            value = RETRY_TEXT.format(retry=retry) if isinstance(self.text, str) else self.text(waiting)
        elif status.state is State.QUEUED and status.position is not None:
            ahead = status.position
            waiting = Waiting(ahead + 1, ahead, run_times.eta(status.callback, ahead, capacity()))
            value = self.text.format(**waiting.fields()) if isinstance(self.text, str) else self.text(waiting)
        elif status.state is State.QUEUED:
            return {}  # the backend cannot tell the place
        else:
            value = ""  # running or ended: the callback's own display takes over
        return {self.key: {self.prop: value}}

    @property
    def key(self) -> str:
        """The id as Dash keys ``sideUpdate`` (a dict id as compact JSON with sorted keys)."""
        if isinstance(self.component_id, str):
            return self.component_id
        return json.dumps(self.component_id, sort_keys=True, separators=(",", ":"))


def _target(target: Any) -> tuple[str | dict[str, Any], str]:
    """``Output("status", "children")`` or ``("status", "children")`` as (component id, property)."""
    component_id = getattr(target, "component_id", None)
    prop = getattr(target, "component_property", None)
    if component_id is None and isinstance(target, (tuple, list)) and len(target) == 2:
        component_id, prop = target
    if not isinstance(component_id, (str, dict)) or not isinstance(prop, str) or not prop:
        raise TypeError(
            f"bgcb: waiting={target!r}; name where a queued job's place shows, as "
            'Output("status", "children") or ("status", "children").'
        )
    if isinstance(component_id, dict) and any(not isinstance(v, (str, int, float, bool)) for v in component_id.values()):
        raise TypeError(f"bgcb: waiting={target!r}: a pattern-matching id must be concrete (no MATCH, ALL or ALLSMALLER).")
    return component_id, prop
