"""The data that crosses between the Dash manager, a backend and the runner.

Everything here is plain data that turns into JSON and back
(``to_json``/``from_json``), because payloads cross process boundaries as JSON
and never as pickle: a shared store must not be a way to run code.
"""

from __future__ import annotations

import enum
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = [
    "Job",
    "Outcome",
    "Snapshot",
    "State",
    "Status",
    "Update",
    "new_job_id",
    "is_job_id",
]

_ID_BYTES = 18  # 144 random bits: unguessable, and 24 URL-safe characters
_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{24}")  # ASCII only: str.isalnum() would let "é" * 24 through


def new_job_id() -> str:
    """A fresh opaque job id: random, URL-safe, never a pid or a counter."""
    return secrets.token_urlsafe(_ID_BYTES)


def _fields(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, values as they are: ``asdict`` would copy (and recurse through)
    the callback's arguments and values, failing on nesting JSON itself accepts."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def is_job_id(value: object) -> bool:
    """Whether ``value`` has the shape of an id from :func:`new_job_id`.

    Backends use it to refuse forged handles before touching their store.
    """
    return isinstance(value, str) and _ID_SHAPE.fullmatch(value) is not None


class State(str, enum.Enum):
    """Where a job is in its life: queued -> running -> one terminal state.

    A queued job may also end cancelled or lost (its worker died after taking
    it); ``unknown`` is not a state of a record but the answer for an id with
    no record (never issued, or expired).
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"
    UNKNOWN = "unknown"

    @property
    def active(self) -> bool:
        """Queued or running: the browser should keep polling."""
        return self in (State.QUEUED, State.RUNNING)

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


#: States a record never leaves.
TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED, State.TIMED_OUT, State.LOST})


@dataclass
class Job:
    """What a backend queues: everything a worker needs to run one callback.

    ``callback`` is Dash's key for the decorated function; a worker that
    imported the app module knows the function under the same key.
    """

    callback: str
    args: Any
    context: dict[str, Any] = field(default_factory=dict)
    cache_key: str = ""
    progress: bool = False
    #: Seconds after which the job is stopped and reported as an error.
    timeout: float | None = None
    #: Keep the result under ``cache_key`` for reuse (Dash's ``cache_by``).
    cache: bool = False
    #: Seconds a cached result stays reusable; ``None`` keeps it until cleanup.
    cache_expire: float | None = None
    submitted_at: float = field(default_factory=time.time)
    #: Who submitted it, as the app's ``owner`` function said (None: not known).
    owner: str | None = None
    #: Higher starts first (``bgcb.manager(priority=...)``).
    priority: int = 0
    #: Seconds its page may stay silent before the job is cancelled as abandoned (None: never).
    abandon_after: float | None = None
    #: Times a failed run is run again (``bgcb.manager(retries=...)``); 0: at most once.
    retries: int = 0
    #: Seconds before the first retry of a failed run; each later one waits twice as long.
    retry_delay: float = 1.0
    #: Jobs of its owner that may run at once (``max_running_per_owner``), or None: no limit.
    running_cap: int | None = None
    #: What observers carry from the submitting request to the worker (``bgcb_job_carry``: a trace context).
    carry: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return _fields(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


OutcomeKind = Literal["value", "no_update", "error", "cancelled", "timeout", "lost", "retry"]
#: Outcome kinds by the state they put a job in (``retry``: queued again, see :mod:`bgcb.retrying`).
_STATE_OF = {
    "retry": State.QUEUED,
    "value": State.SUCCEEDED,
    "no_update": State.SUCCEEDED,
    "error": State.FAILED,
    "cancelled": State.CANCELLED,
    "timeout": State.TIMED_OUT,
    "lost": State.LOST,
}


@dataclass
class Outcome:
    """How a job ended: a value, no_update (PreventUpdate), an error, cancelled,
    a timeout, or lost (its worker died).

    ``value`` is JSON-compatible; ``error`` is ``{"msg": str, "tb": str}`` for
    the three kinds the browser shows as an error (error, timeout, lost).
    """

    kind: OutcomeKind
    value: Any = None
    error: dict[str, str] | None = None

    @classmethod
    def of_value(cls, value: Any) -> Outcome:
        return cls("value", value)

    @classmethod
    def no_update(cls) -> Outcome:
        return cls("no_update")

    @classmethod
    def failure(cls, msg: str, tb: str = "") -> Outcome:
        return cls("error", error={"msg": msg, "tb": tb})

    @classmethod
    def cancelled(cls) -> Outcome:
        return cls("cancelled")

    @classmethod
    def timed_out(cls, msg: str) -> Outcome:
        return cls("timeout", error={"msg": msg, "tb": ""})

    @classmethod
    def retry(cls, seconds: float, reason: str = "") -> Outcome:
        """Not an end: run the job again in ``seconds`` (``bgcb.retry_later``)."""
        return cls("retry", seconds, {"msg": reason, "tb": ""} if reason else None)

    @classmethod
    def lost(cls, msg: str) -> Outcome:
        return cls("lost", error={"msg": msg, "tb": ""})

    @property
    def state(self) -> State:
        """The terminal state a job with this outcome ends in."""
        return _STATE_OF[self.kind]

    @property
    def succeeded(self) -> bool:
        """A value or no_update: the only outcomes kept for ``cache_by`` reuse."""
        return self.state is State.SUCCEEDED

    def to_json(self) -> dict[str, Any]:
        return _fields(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(data["kind"], data.get("value"), data.get("error"))


@dataclass
class Status:
    """A job's state, its place in the queue, and when things happened."""

    state: State
    #: 0-based place in the queue while queued (0 = next to start), else None.
    position: int | None = None
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: The callback's key (what estimates a queued job's wait), when the record names it.
    callback: str | None = None
    #: Who submitted the job (``bgcb.manager(owner=...)``), when known.
    owner: str | None = None
    #: Seconds its page may stay silent before the job is cancelled as abandoned (None: never).
    abandon_after: float | None = None
    #: Which run of a job with ``retries=`` this is (1: the first). Runs asked for by ``retry_later``
    #: alone are not counted: counting them would cost every job a store read.
    attempt: int = 1
    #: When a job waiting to be run again is queued again (seconds since the epoch), else None.
    retry_at: float | None = None

    @classmethod
    def unknown(cls) -> Status:
        return cls(State.UNKNOWN)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Status:
        return cls(
            State(data["state"]),
            data.get("position"),
            data.get("submitted_at"),
            data.get("started_at"),
            data.get("finished_at"),
            data.get("callback"),
            data.get("owner"),
            data.get("abandon_after"),
            data.get("attempt") or 1,
            data.get("retry_at"),
        )


#: One progress or set_props update, in the order the callback made it:
#: ``{"type": "progress", "value": [...]}`` or
#: ``{"type": "props", "id": "<component id>", "props": {...}}``.
Update = dict[str, Any]


def progress_update(value: list[Any]) -> Update:
    return {"type": "progress", "value": value}


def props_update(component_id: str, props: dict[str, Any]) -> Update:
    return {"type": "props", "id": component_id, "props": props}


@dataclass
class Snapshot:
    """Everything one browser poll needs, read from the store at once."""

    status: Status
    #: Updates not delivered before, oldest first; reading them delivers them.
    updates: list[Update] = field(default_factory=list)
    #: The outcome once the job has ended, else None.
    outcome: Outcome | None = None

    @property
    def latest_progress(self) -> list[Any] | None:
        for update in reversed(self.updates):
            if update.get("type") == "progress":
                return update["value"]
        return None

    @property
    def props(self) -> dict[str, dict[str, Any]]:
        """set_props updates merged in order: later values of a prop win."""
        merged: dict[str, dict[str, Any]] = {}
        for update in self.updates:
            if update.get("type") == "props":
                merged.setdefault(update["id"], {}).update(update["props"])
        return merged
