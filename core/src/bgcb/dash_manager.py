"""The Dash manager: Dash's calls on a background-callback manager, answered
through the active backend.

Dash asks four questions on every poll (progress, result, running, set_props);
the manager answers them from one backend snapshot taken once per request.
Results are per job, so two users with identical inputs both get theirs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from . import _dash_compat as compat
from . import defaults, hold, serve
from .hold import Holding
from .inputs import cache_key as _cache_key
from .inputs import jsonable_context as _jsonable_context
from .jobs import Job, Outcome, Snapshot, State, Status, is_job_id
from .limits import REFUSED_HANDLE, Limits, is_refused, refused_outcome
from .provider import Backend
from .waiting import WAITING_TEXT, Waiting, WaitingDisplay

#: Prefix of the handle given for a result reused from the cache: no job runs.
CACHED_HANDLE = "cached:"

Retrigger = Literal["cancel", "keep"]


class _JobFn:
    """What Dash keeps in ``func_registry``: the callback key and progress flag.

    bgcb never calls the function in the web process; a worker looks it up
    by key (see :func:`bgcb._dash_compat.find_function`).
    """

    def __init__(self, key: str, progress: bool) -> None:
        self.key = key
        self.progress = progress

    def __call__(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover
        raise RuntimeError("bgcb runs background callbacks in its workers, not here")


class DashManager(compat.BaseManager):
    """A Dash background-callback manager backed by a bgcb backend.

    Use :func:`bgcb.manager` to make one.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        cache_by: list[Callable[[], Any]] | Callable[[], Any] | None = None,
        expire: float | None = None,
        timeout: float | None = None,
        on_retrigger: Retrigger = "cancel",
        hold: float = 0.0,
        hold_first: float = defaults.HOLD_FIRST,
        hold_max: int | None = None,
        waiting: Any = None,
        waiting_text: str | Callable[[Waiting], Any] = WAITING_TEXT,
        owner: Callable[[], Any] | None = None,
        priority: int = 0,
        abandon_after: float | None = None,
        max_queued: int | None = None,
        max_queued_per_owner: int | None = None,
        max_running_per_owner: int | None = None,
        retries: int = 0,
        retry_delay: float = 1.0,
    ) -> None:
        from .errors import ConfigurationError
        from .retrying import check_retries

        if on_retrigger not in ("cancel", "keep"):
            raise ConfigurationError(
                f"bgcb: on_retrigger={on_retrigger!r}; use 'cancel' (stop the "
                "previous job when the callback fires again, Dash's default) or "
                "'keep' (let it run to completion)."
            )
        for name, value in (("hold", hold), ("hold_first", hold_first)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"bgcb: {name}={value!r}; give seconds as a number >= 0 (0 turns it off).")
        if hold_max is not None and (not isinstance(hold_max, int) or isinstance(hold_max, bool) or hold_max < 0):
            raise ConfigurationError(f"bgcb: hold_max={hold_max!r}; give a whole number of requests >= 0, or None.")
        if owner is not None and not callable(owner):
            raise ConfigurationError(
                f"bgcb: owner={owner!r}; give a function of no arguments that returns who submits a job "
                "(a session value, a header: bgcb.owner_header('X-User')), called in the web request."
            )
        if not isinstance(priority, int) or isinstance(priority, bool) or not -1000 <= priority <= 1000:
            raise ConfigurationError(
                f"bgcb: priority={priority!r}; give a whole number from -1000 to 1000 (higher starts first)."
            )
        if abandon_after is not None and (not isinstance(abandon_after, (int, float)) or abandon_after < 0):
            raise ConfigurationError(f"bgcb: abandon_after={abandon_after!r}; give seconds >= 0 (0: never), or None.")
        self.limits = Limits.of(max_queued, max_queued_per_owner, max_running_per_owner, owner is not None)
        self.retries, self.retry_delay = check_retries(retries, retry_delay)
        self.owner = owner
        self.priority = priority
        #: Seconds its page may stay silent before a job is cancelled (None: the backend's setting).
        self.abandon_after = None if abandon_after is None else float(abandon_after)
        if owner is not None:
            backend.order_jobs("owner=")
        if priority:
            backend.order_jobs(f"priority={priority}")
        backend.expect(self.limits, retries=self.retries)
        self.backend = backend
        self.expire = expire
        self.timeout = timeout
        self.on_retrigger = on_retrigger
        #: Seconds a poll may wait for news of its job; the first request waits at most ``hold_first``.
        self.hold = float(hold)
        self.hold_first = float(hold_first)
        #: Held requests per process (None: the server's default, see :mod:`bgcb.defaults`).
        self.hold_max = hold_max
        self.holding = Holding(backend.poll, backend.wait)
        #: Where a queued job's place and estimated wait show (``waiting=Output(...)``), if anywhere.
        try:
            self.waiting = WaitingDisplay(waiting, waiting_text) if waiting is not None else None
        except TypeError as exc:
            raise ConfigurationError(str(exc)) from None
        self._gate_by_hook = serve.register()
        super().__init__(cache_by)

    # -- registration ----------------------------------------------------------

    def make_job_fn(self, fn: Callable[..., Any], progress: bool, key: str | None = None) -> _JobFn:
        return _JobFn(key or "", bool(progress))

    def build_cache_key(self, fn: Any, args: Any, cache_args_to_ignore: Any, triggered: Any = None) -> str:
        return _cache_key(fn, args, cache_args_to_ignore, triggered, self.cache_by)

    # -- first request ---------------------------------------------------------

    def call_job_fn(self, key: str, job_fn: _JobFn, args: Any, context: dict[str, Any]) -> str:
        if not self._gate_by_hook:
            serve.install_here()
        visit = hold.current()
        handle = self._start(key, job_fn, args, context, visit)
        if visit is not None:  # the gate answering this request learns what was started
            visit.submitted = handle
        return handle

    def _start(self, key: str, job_fn: _JobFn, args: Any, context: dict[str, Any], visit: hold.Visit | None) -> str:
        """A cached result's handle, or a new job's id (only prepared when the gate queues it off the event loop)."""
        caching = self.cache_by is not None
        if caching and self.backend.cached(key) is not None:
            if visit is not None:
                visit.cached = True
            return CACHED_HANDLE + key[:16]
        owner = self._owner()
        if self.limits.on_queue:
            refused = self.limits.refusal(self.backend.counts(owner or ""), owner)
            if refused is not None:
                return _refuse(visit, refused)
        try:
            plain = json.loads(json.dumps(args, default=str)) if args is not None else []
        except (RecursionError, ValueError):  # JSON Dash accepted, but deeper than Python encodes: fail this callback only
            return _refuse(visit, f"{REFUSED_HANDLE}input:0")
        job = Job(
            callback=job_fn.key,
            args=plain,
            context=_jsonable_context(context),
            cache_key=key,
            progress=job_fn.progress,
            timeout=self.timeout,
            cache=caching,
            cache_expire=self.expire,
            owner=owner,
            priority=self.priority,
            abandon_after=self.abandon_after,
            retries=self.retries,
            retry_delay=self.retry_delay,
            running_cap=self.limits.running_per_owner,
        )
        try:
            return self._queue(job, visit)
        except RecursionError:  # the job's JSON nests deeper than the encoder goes (the context's copy of the inputs)
            return _refuse(visit, f"{REFUSED_HANDLE}input:0")

    def _queue(self, job: Job, visit: hold.Visit | None) -> str:
        if visit is not None and visit.defer:
            queued = self.backend.prepare(job)
            visit.queued.append((self.backend, queued))
            return queued.job_id
        if visit is None or self.hold <= 0:
            return self.backend.submit(job)
        queued = self.backend.prepare(job)
        self.backend.wait(queued.job_id, 0.0)  # listen before it is queued: the held request needs no first read
        self.backend.enqueue(queued)
        return queued.job_id

    def _owner(self) -> str | None:
        """Who submits the job being started: the app's ``owner`` function, in the web request."""
        if self.owner is None:
            return None
        who = self.owner()
        return None if who is None or who == "" else str(who)

    def owns(self, job: str) -> bool:
        """Whether ``job`` is a handle of a job this manager submitted (not a cache hit or a refusal)."""
        return not job.startswith(CACHED_HANDLE) and not is_refused(job)

    # -- polls -----------------------------------------------------------------

    def _snapshot(self, job: str | None, cache_key: str | None = None) -> Snapshot:
        """The backend's view of ``job``, fetched once per request."""
        if not job:
            return Snapshot(Status.unknown())
        if job.startswith(CACHED_HANDLE):
            outcome = self.backend.cached(cache_key) if cache_key else None
            state = State.SUCCEEDED if outcome else State.UNKNOWN
            return Snapshot(Status(state), [], outcome)
        if is_refused(job):
            return Snapshot(Status(State.FAILED), [], refused_outcome(job))
        snap = hold.prefetched(hold.current(), job)
        if snap is not None:
            return snap
        memo = compat.request_memo()
        if memo is not None and job in memo:
            return memo[job]
        snap = self.backend.poll(job)
        if memo is not None:
            memo[job] = snap
        return snap

    def get_progress(self, key: str) -> list[Any] | None:
        return self._snapshot(compat.request_job(), key).latest_progress

    def result_ready(self, key: str) -> bool:  # pragma: no cover - unused by Dash
        return self._snapshot(compat.request_job(), key).outcome is not None

    def get_result(self, key: str, job: str | None) -> Any:
        snap = self._snapshot(job, key)
        if job and snap.outcome is not None:
            self.backend.run_times.learn(job, snap)  # the run times that estimate queued jobs' waits
        if snap.status.state is State.UNKNOWN:
            if job and not job.startswith(CACHED_HANDLE) and compat.request_memo() is not None:
                # A handle bgcb could have issued (its record expired, or another server's): say so.
                # One it never issues is a forgery: no update, as Dash 4.4 answers a bad signature.
                return _to_dash(_unknown_job_outcome() if is_job_id(job) else Outcome.no_update())
            return self.UNDEFINED
        if snap.outcome is None or snap.outcome.kind == "cancelled":
            return self.UNDEFINED
        return _to_dash(snap.outcome)

    def job_running(self, job: str | None) -> bool:
        if not job:
            return False
        return self._snapshot(job).status.state.active

    def get_updated_props(self, key: str) -> dict[str, dict[str, Any]]:
        job = compat.request_job()
        snap = self._snapshot(job, key)
        if self.waiting is None or snap.status.state is State.UNKNOWN or (job and is_refused(job)):
            return snap.props  # a refused job never waited: its on_error may write where the place showed
        return {**self.waiting.props(snap, self.backend.run_times, self.backend.capacity), **snap.props}

    def holds(self, snap: Snapshot) -> bool:
        """Whether a poll answered with ``snap`` should wait for news (``hold``): not when it
        would hide a queued job's place, which the page shows at each poll."""
        if self.hold <= 0 or hold.news(snap):
            return False
        return self.waiting is None or snap.status.state is not State.QUEUED

    # -- cancel ----------------------------------------------------------------

    def terminate_job(self, job: str | None) -> None:
        if not job or not self.owns(str(job)):
            return
        job = str(job)
        if self.on_retrigger == "keep" and not compat.is_explicit_cancel(job):
            return  # a re-triggered callback's old job runs to completion
        self.backend.cancel(job)

    def terminate_unhealthy_job(self, job: str | None) -> bool:
        return False

    # -- Dash 4.4: one signing secret for every web worker -----------------------

    def get_or_create_signing_secret(self, generate: Callable[[], bytes]) -> bytes:
        secret = self.backend.shared_secret(generate)
        if not secret:
            raise NotImplementedError
        return secret

    def close(self) -> None:
        """Release the backend's connections, threads and processes."""
        self.backend.close()

    def __repr__(self) -> str:
        return f"<bgcb.DashManager backend={self.backend.name!r}>"


def _refuse(visit: hold.Visit | None, handle: str) -> str:
    """A refusal's handle; the gate answering the first request carries it at once (nothing runs)."""
    if visit is not None:
        visit.cached = True
    return handle


def _unknown_job_outcome() -> Outcome:
    return Outcome.failure(
        "bgcb: this background job is unknown to the backend: its record "
        "expired or could not be read (the server log says which), or the "
        "handle was not issued by this server. Trigger the callback again."
    )


def _to_dash(outcome: Outcome) -> Any:
    """An outcome as the value Dash expects back from ``get_result``."""
    if outcome.kind == "no_update":
        return dict(compat.NO_UPDATE)
    if outcome.error is not None:  # an error, a timeout or a lost worker
        return {compat.ERROR_KEY: {"msg": outcome.error.get("msg", ""), "tb": outcome.error.get("tb", "")}}
    return outcome.value
