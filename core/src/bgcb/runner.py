"""Run one job inside a worker, the same way for every backend.

The core's :meth:`bgcb.lifecycle.Lifecycle.execute` calls :func:`run` with
the job and a channel to the store; the runner rebuilds Dash's callback
context, calls the user's function (awaiting coroutine functions), streams
progress and set_props through the channel, and returns the :class:`Outcome`.
Backends never call it themselves.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import time
import traceback
from typing import Any, Protocol

from plotly.io.json import to_json_plotly

from . import _dash_compat as compat
from .endings import timeout_outcome
from .jobs import Job, Outcome
from .retrying import RetryLater

__all__ = ["Channel", "JobStopped", "run", "timeout_outcome", "to_jsonable", "unregistered_outcome"]


class Channel(Protocol):
    """Where the runner writes while a job runs (:class:`bgcb.channel.StoreChannel` in workers)."""

    def progress(self, value: list[Any]) -> None: ...

    def set_props(self, component_id: str, props: dict[str, Any]) -> None: ...

    def cancelled(self) -> bool:
        """Whether the job stopped running (cancelled, timed out, lost): the callback is stopped."""
        ...


class JobStopped(BaseException):
    """Raised inside the callback to stop it; a BaseException so that a user's
    ``except Exception`` does not swallow it."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.kind)
        self.outcome = outcome


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data, encoded the way Dash encodes outputs
    (Plotly's encoder: figures, numpy arrays, pandas objects, dates).

    Plain data (most callback values and the whole callback context) takes the
    standard library's encoder, which gives the same JSON about twice as fast.
    """
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):  # not plain data, or NaN/inf (Plotly's encoder writes null)
        return json.loads(to_json_plotly(value))


def unregistered_outcome(key: str) -> Outcome:
    """The error for a job whose callback this worker does not know."""
    return Outcome.failure(
        f"Background callback {key[:12]}... is not registered in this worker. "
        "The worker must import the module that defines it: start it with "
        "`bgcb worker APP_MODULE` (with pages or imported modules, make sure "
        "importing APP_MODULE imports them too), and restart workers after "
        "changing callback code."
    )


class _Guard:
    """Checks cancel and timeout at each progress/set_props call."""

    def __init__(self, job: Job, channel: Channel) -> None:
        self.channel = channel
        self.timeout = job.timeout
        self.deadline = time.monotonic() + job.timeout if job.timeout else None

    def check(self) -> None:
        self.check_time()
        if self.channel.cancelled():
            raise JobStopped(Outcome.cancelled())

    def check_time(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise JobStopped(timeout_outcome(self.timeout or 0))


def run(job: Job, channel: Channel, *, stop_errors: tuple[type[BaseException], ...] = ()) -> Outcome:
    """Run ``job`` and return how it ended; never raises for the callback's sake.

    ``stop_errors`` are exceptions a backend raises inside the callback to
    stop it at its timeout (Celery's ``SoftTimeLimitExceeded``): the job
    then ends timed out, not failed.
    """
    found = compat.find_function(job.callback)
    if found is None:
        return unregistered_outcome(job.callback)
    fn, wants_progress = found
    guard = _Guard(job, channel)

    def set_progress(value: Any) -> None:
        guard.check()
        if not isinstance(value, (list, tuple)):
            value = [value]
        channel.progress(to_jsonable(list(value)))

    def on_set_props(component_id: Any, props: dict[str, Any]) -> None:
        guard.check()
        channel.set_props(str(component_id), to_jsonable(props))

    leading = [set_progress] if wants_progress else []
    args = job.args

    def call() -> Any:
        compat.install_context(job.context, on_set_props)
        if isinstance(args, dict):
            result = fn(*leading, **args)
        elif isinstance(args, (list, tuple)):
            result = fn(*leading, *args)
        else:
            result = fn(*leading, args)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return result

    try:
        # A fresh context: each job sees only its own callback_context.
        value = contextvars.copy_context().run(call)
    except JobStopped as stop:
        return stop.outcome
    except compat.PreventUpdate:
        return Outcome.no_update()
    except stop_errors:
        return timeout_outcome(job.timeout or 0)
    except RetryLater as again:  # the core queues it again (bgcb.retrying)
        return Outcome.retry(again.seconds, again.reason)
    except Exception as exc:  # the user's error, reported to the browser
        return Outcome.failure(str(exc) or type(exc).__name__, traceback.format_exc())
    try:
        # The clock only: a cancel or a loss during the run already moved the record on, so the core's
        # compare-and-set of this outcome fails and the record keeps that ending (no read needed here).
        guard.check_time()
    except JobStopped as stop:
        return stop.outcome
    try:
        return Outcome.of_value(to_jsonable(value))
    except Exception as exc:
        return Outcome.failure(
            f"The background callback returned a value that cannot be sent to "
            f"the browser as JSON ({type(value).__name__}: {exc}). Return JSON "
            f"types, Dash components, Plotly figures, numpy or pandas data.",
            traceback.format_exc(),
        )


async def _await(awaitable: Any) -> Any:
    return await awaitable
