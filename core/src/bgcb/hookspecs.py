"""The contract between bgcb and its plugins, as pluggy hook specifications.

There are two kinds of plugin.

**A backend** is a store, a queue and a worker loop. Exactly one is active per
manager, so its hooks are ``firstresult``. A backend is published as a
distribution (``bgcb-<name>`` by convention) with an entry point in the group
``bgcb.backends``; the entry point names a class (or a zero-argument factory)
whose instances carry the hook implementations, marked with
:data:`bgcb.hookimpl`::

    [project.entry-points."bgcb.backends"]
    mine = "bgcb_mine:MineBackend"

One instance is made per :func:`bgcb.manager` call, so a backend keeps its
connections on ``self``. A backend never runs Dash code itself: its worker
loop hands each job to :func:`bgcb.runner.run` with a :class:`Channel`, and
stores what comes back. Required hooks are listed in :data:`REQUIRED`; a
backend lacking one is refused when it is loaded.

**An observer** listens to job events (metrics, logging, audit). Any number
may be installed, through the entry-point group ``bgcb.plugins`` or
:func:`bgcb.provider.register_observer`. Observer hooks are called in the web
process (submitted, cancelled) and in the worker (started, finished), so
observers are loaded in both.

Rules every backend follows (the conformance kit in ``bgcb-testing`` checks
them):

- payloads are JSON; never unpickle anything from the store;
- job ids come from :func:`bgcb.jobs.new_job_id`; ids the backend did not
  create are ``unknown`` and cancelling them does nothing;
- jobs start in FIFO order with bounded concurrency;
- results are kept per job id; with ``job.cache`` they are also kept under
  ``job.cache_key`` (for ``job.cache_expire`` seconds) for :func:`bgcb_cached`;
- every job reaches a terminal state, even when its worker dies;
- a job past ``job.timeout`` seconds is stopped and fails with an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from .jobs import Job, Outcome, Snapshot, Status, Update

PROJECT = "bgcb"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Hooks every backend must implement.
REQUIRED = (
    "bgcb_submit",
    "bgcb_status",
    "bgcb_progress",
    "bgcb_result",
    "bgcb_cancel",
)


class Channel(Protocol):
    """What the runner writes to while a job runs; the backend implements it.

    Each call should reach the store promptly, so that the browser's next
    poll sees it. Values are already JSON-compatible.
    """

    def progress(self, value: list[Any]) -> None:
        """Record a progress update (``set_progress`` in the callback)."""

    def set_props(self, component_id: str, props: dict[str, Any]) -> None:
        """Record a ``set_props`` update; every update is kept, in order."""

    def cancelled(self) -> bool:
        """Whether the job was cancelled: the runner then stops the callback
        at its next progress or set_props call (cooperative cancel)."""


# -- backend: configuration and life cycle ----------------------------------


@hookspec(firstresult=True)
def bgcb_options() -> Mapping[str, Any]:
    """Return the backend's options and their defaults.

    Users set them as keyword arguments of :func:`bgcb.manager` or as
    ``BGCB_<BACKEND>_<OPTION>`` environment variables; values from the
    environment are converted to the type of the default (``int``, ``float``,
    ``bool``; ``str`` when the default is ``None``). Unknown option names are
    refused with the list of known ones. Return ``{}`` for none.
    """


@hookspec
def bgcb_configure(options: dict[str, Any], hook: Any) -> None:
    """Open connections and get ready, once, before any other call.

    ``options`` holds every option from :func:`bgcb_options`, resolved.
    ``hook`` is the plugin manager's hook relay; a worker loop passes it to
    :func:`bgcb.runner.run` so that observers hear about jobs.
    """


@hookspec(firstresult=True)
def bgcb_run_worker(app_module: str, options: dict[str, Any]) -> bool | None:
    """Run a worker for ``bgcb worker APP_MODULE`` until interrupted.

    The worker must import ``app_module`` (so that Dash registers the app's
    callbacks) before it takes jobs. Return True when done; a backend whose
    workers are started otherwise may leave this hook out.
    """


@hookspec
def bgcb_close() -> None:
    """Release connections and stop threads or processes the backend owns."""


# -- backend: jobs -------------------------------------------------------------


@hookspec(firstresult=True)
def bgcb_submit(job: Job) -> str:
    """Queue ``job`` and return its new id (from :func:`bgcb.jobs.new_job_id`).

    Must not run the job in the caller's thread and must not fork per job:
    the caller is a web request.
    """


@hookspec(firstresult=True)
def bgcb_status(job_id: str) -> Status:
    """Return the job's :class:`~bgcb.jobs.Status`; ``State.UNKNOWN`` for ids
    this backend did not create or has forgotten (expired)."""


@hookspec(firstresult=True)
def bgcb_progress(job_id: str) -> list[Update]:
    """Return the progress and set_props updates not delivered yet, oldest
    first, and mark them delivered. ``[]`` when there are none."""


@hookspec(firstresult=True)
def bgcb_result(job_id: str) -> Outcome | None:
    """Return the job's :class:`~bgcb.jobs.Outcome` once it has ended, else
    None. Reading it does not remove it (it expires with the job's record).
    A cancelled job may answer None or ``Outcome.cancelled()``; the browser
    gets no update either way."""


@hookspec(firstresult=True)
def bgcb_cancel(job_id: str) -> bool:
    """Stop the job: a queued job never starts; a running one is asked to stop
    (its channel reports ``cancelled()``) and is forced to stop within a
    bounded time. Return True if this call cancelled it; False when it had
    ended already, was cancelled before, or is unknown. Idempotent."""


# -- backend: optional ---------------------------------------------------------


@hookspec(firstresult=True)
def bgcb_poll(job_id: str) -> Snapshot | None:
    """Optional: status, undelivered updates and outcome in one store round
    trip. Without it the manager calls status, progress and result."""


@hookspec(firstresult=True)
def bgcb_cached(cache_key: str) -> Outcome | None:
    """Optional: the outcome kept under ``cache_key`` by a job submitted with
    ``job.cache``, if it has not expired. Without it nothing is reused."""


@hookspec(firstresult=True)
def bgcb_jobs() -> list[tuple[str, Status]] | None:
    """Optional: the queued and running jobs, for ``bgcb jobs``."""


@hookspec(firstresult=True)
def bgcb_shared_secret(generate: Callable[[], bytes]) -> bytes | None:
    """Optional: the secret Dash 4.4+ signs job handles with, shared by every
    web process through the store. Store ``generate()`` if no secret is
    stored yet (atomically: the first writer wins) and return the stored one."""


# -- observers -----------------------------------------------------------------


@hookspec
def bgcb_job_submitted(job_id: str, job: Job) -> None:
    """A job was queued (called in the web process)."""


@hookspec
def bgcb_job_started(job_id: str, job: Job) -> None:
    """A worker started running the job (called in the worker)."""


@hookspec
def bgcb_job_finished(job_id: str, job: Job, outcome: Outcome, seconds: float) -> None:
    """A job ended with ``outcome`` after ``seconds`` of running (called in the
    worker, or wherever the backend noticed a dead worker)."""


@hookspec
def bgcb_job_cancelled(job_id: str) -> None:
    """A cancel request stopped a job (called in the web process)."""
