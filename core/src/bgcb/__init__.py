"""bgcb: background callbacks for Plotly Dash on pluggable backends.

from dash import Dash
import bgcb

app = Dash(__name__, background_callback_manager=bgcb.manager())
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version as _version
from typing import Any

from . import observers
from .contract import BackendPlugin
from .errors import BackendInvalid, BackendLoadError, BackendNotFound, BgcbError, ConfigurationError
from .hookspecs import CONTRACT_VERSION, hookimpl
from .jobs import Job, Outcome, Snapshot, State, Status, new_job_id
from .record import Counts, Stored
from .retrying import RetryLater, retry_later
from .waiting import WAITING_TEXT, Waiting

__version__ = _version("bgcb")  # the file VERSION at the repository root, through the installed metadata

__all__ = [
    "BackendInvalid",
    "BackendLoadError",
    "BackendNotFound",
    "BackendPlugin",
    "BgcbError",
    "CONTRACT_VERSION",
    "ConfigurationError",
    "Counts",
    "Job",
    "Outcome",
    "RetryLater",
    "Snapshot",
    "State",
    "Status",
    "Stored",
    "Waiting",
    "owner_cookie",
    "owner_header",
    "hookimpl",
    "jobs_page",
    "manager",
    "new_job_id",
    "observers",
    "retry_later",
]


def manager(
    backend: str | None = None,
    *,
    cache_by: list[Callable[[], Any]] | Callable[[], Any] | None = None,
    expire: float | None = None,
    timeout: float | None = None,
    on_retrigger: str = "cancel",
    hold: float = 0.0,
    hold_first: float | None = None,
    hold_max: int | None = None,
    waiting: Any = None,
    waiting_text: str | Callable[[Waiting], Any] | None = None,
    owner: Callable[[], Any] | None = None,
    priority: int = 0,
    abandon_after: float | None = None,
    max_queued: int | None = None,
    max_queued_per_owner: int | None = None,
    max_running_per_owner: int | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    **options: Any,
) -> Any:
    """A Dash background-callback manager on the backend named ``backend``.

    The name comes from ``backend``, else ``$BGCB_BACKEND``, else ``diskcache``.
    ``cache_by`` and ``expire`` work as in Dash's managers; ``timeout`` stops a
    job after that many seconds and reports an error; ``on_retrigger="keep"``
    lets a running job finish when its callback fires again (Dash cancels it).
    ``hold`` (seconds, off by default) lets each poll wait for its job's news
    and answers the first request at once when the job ends within
    ``hold_first`` seconds (0.25): results show as soon as they exist instead
    of at the renderer's next ``interval``; ``hold_max`` bounds the requests
    held at once per process (docs/hold.md).
    ``waiting=Output("status", "children")`` shows a queued job's place and
    estimated wait there at each poll (cleared once it runs); ``waiting_text``
    is a format string (fields ``position``, ``ahead``, ``eta``,
    ``eta_seconds``, ``eta_text``) or a function of a :class:`bgcb.Waiting`.
    ``owner`` is a function of no arguments, called in the web request that
    submits a job, that says who submits it (:func:`owner_header`,
    :func:`owner_cookie`, or your own reading a session): observers,
    ``bgcb jobs`` and the job's status show it, and owners take turns in the
    queue (one owner's burst delays another's job by at most one job per
    worker). ``priority`` (-1000 to 1000, default 0): jobs of a higher
    priority start before queued jobs of a lower one. ``abandon_after``
    (seconds; None: the backend's setting, 120 by default; 0: never): a job
    whose page stopped polling that long is cancelled (a queued one never starts).
    ``max_queued`` and ``max_queued_per_owner`` (with ``owner``): past that
    many waiting jobs, a new one is refused at once with an error for
    ``on_error`` (nothing queued is touched); ``max_running_per_owner``: an
    owner's further jobs wait their turn while that many run. ``retries``
    (default 0: jobs run at most once) runs a callback that raised again,
    ``retry_delay`` seconds later (doubling per retry); a callback may also
    call :func:`bgcb.retry_later` to be run again later. Neither holds a
    worker while it waits (the core's README, 'Limits, retries and running again later').
    Other keyword arguments are the backend's options (``bgcb backends``).
    """
    from . import defaults
    from .dash_manager import DashManager
    from .provider import load

    return DashManager(
        load(backend, **options),
        cache_by=cache_by,
        expire=expire,
        timeout=timeout,
        on_retrigger=on_retrigger,  # type: ignore[arg-type]
        hold=hold,
        hold_first=defaults.HOLD_FIRST if hold_first is None else hold_first,
        hold_max=hold_max,
        waiting=waiting,
        waiting_text=WAITING_TEXT if waiting_text is None else waiting_text,
        owner=owner,
        priority=priority,
        abandon_after=abandon_after,
        max_queued=max_queued,
        max_queued_per_owner=max_queued_per_owner,
        max_running_per_owner=max_running_per_owner,
        retries=retries,
        retry_delay=retry_delay,
    )


def jobs_page(app: Any, path: str = "/bgcb/jobs", allow: Callable[[Any], bool] | None = None) -> None:
    """Serve the live jobs page at ``path`` on the Dash ``app``'s own server (Flask, FastAPI or Quart).

    It lists the queued, running and recent jobs of every bgcb backend this
    process loaded, with plots of the last hour. ``allow(request)`` (a
    :class:`bgcb.routes.Request`: ``remote_addr``, ``headers``) says who may
    cancel jobs from it; by default only requests from this machine. The page
    itself is readable by whoever reaches the path: put it behind the app's
    authentication as you would any admin page.
    """
    from .jobspage import JobsPage
    from .provider import loaded
    from .routes import mount

    mount(app, path, JobsPage(loaded, allow))


def owner_header(name: str) -> Callable[[], str | None]:
    """An ``owner`` function: the request header ``name`` (e.g. set by an authenticating proxy), on any server."""
    from ._dash_compat import request_header

    return lambda: request_header(name)


def owner_cookie(name: str) -> Callable[[], str | None]:
    """An ``owner`` function: the request cookie ``name``, on any server."""
    from ._dash_compat import request_cookie

    return lambda: request_cookie(name)
