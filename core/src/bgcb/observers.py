"""The process-wide observer registry, and hook-call tracing.

Observers (metrics, tracing, logging, audit) live in one plugin manager per
process, shared by every backend instance: an observer registered after the
first :func:`bgcb.manager` hears every later event, and :func:`unregister`
stops it. Entry points of the group ``bgcb.plugins`` are loaded once, the
first time the registry is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from . import defaults, hookspecs
from .errors import BackendLoadError
from .eventlog import EVENT_LOG

if TYPE_CHECKING:
    from .jobs import Job, Outcome, State, Update

OBSERVER_GROUP = "bgcb.plugins"

log = logging.getLogger("bgcb.observers")
trace_log = logging.getLogger("bgcb.hooks")

_pm: pluggy.PluginManager | None = None
_lock = threading.Lock()


def manager() -> pluggy.PluginManager:
    """The process's observer plugin manager (created, and entry points loaded, on first use)."""
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs.ObserverSpec)
            trace(pm, "observers")
            pm.register(EVENT_LOG, name="bgcb.events")  # the structured log of transitions (quiet by default)
            for ep in metadata.entry_points(group=OBSERVER_GROUP):
                try:
                    plugin = ep.load()
                    # a class is made into its instance: registered as a class, its hooks would lack ``self``
                    pm.register(plugin() if isinstance(plugin, type) else plugin, name=ep.name)
                except Exception as exc:  # a broken observer must say which it is
                    dist = getattr(getattr(ep, "dist", None), "name", "?")
                    raise BackendLoadError(
                        f"bgcb: the observer plugin '{ep.name}' ({ep.value}, distribution {dist}; entry-point group "
                        f"'{OBSERVER_GROUP}') failed to load: {exc!r}. Reinstall or uninstall it."
                    ) from exc
            pm.check_pending()
            _pm = pm
        return _pm


def register(plugin: object, name: str | None = None) -> None:
    """Add an observer; it hears every event from now on, of every backend in this process."""
    pm = manager()
    if not pm.is_registered(plugin):
        pm.register(plugin, name=name)
        pm.check_pending()


def unregister(plugin: object) -> None:
    """Remove an observer added with :func:`register` (or by entry point)."""
    pm = manager()
    if pm.is_registered(plugin):
        pm.unregister(plugin)


def _emit(event: str, **kwargs: Any) -> None:
    caller = getattr(manager().hook, event)
    if not caller.get_hookimpls():
        return
    try:
        caller(**kwargs)
    except Exception:  # an observer must never break a job
        log.exception("bgcb: an observer failed on %s for job %s", event, kwargs.get("job_id"))


def wanted(event: str) -> bool:
    """Whether any observer listens to ``event`` (so the core can skip loading the job); the event log
    listens only while its logger is on."""
    impls = getattr(manager().hook, event).get_hookimpls()
    return any(impl.plugin is not EVENT_LOG or EVENT_LOG.enabled() for impl in impls)


def submitted(job_id: str, job: Job) -> None:
    _emit("bgcb_job_submitted", job_id=job_id, job=job)


def started(job_id: str, job: Job) -> None:
    _emit("bgcb_job_started", job_id=job_id, job=job)


def finished(job_id: str, job: Job, outcome: Outcome, state: State, seconds: float) -> None:
    _emit("bgcb_job_finished", job_id=job_id, job=job, outcome=outcome, state=state, seconds=seconds)


def cancelled(job_id: str, job: Job) -> None:
    _emit("bgcb_job_cancelled", job_id=job_id, job=job)


def carry(job: Job) -> None:
    """Merge what observers carry to the worker into ``job.carry`` (web process, submitting request)."""
    caller = manager().hook.bgcb_job_carry
    if not caller.get_hookimpls():
        return
    try:
        for entries in caller(job=job):
            job.carry.update({str(k): str(v) for k, v in dict(entries or {}).items()})
    except Exception:
        log.exception("bgcb: an observer failed to carry data for a job")


def running(job_id: str, job: Job) -> contextlib.AbstractContextManager[object]:
    """The observers' context managers for one run of the callback, entered together (worker)."""
    caller = manager().hook.bgcb_job_running
    if not caller.get_hookimpls():
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    try:
        for context in caller(job_id=job_id, job=job):
            if context is not None:
                stack.enter_context(context)
    except Exception:
        log.exception("bgcb: an observer failed to wrap job %s", job_id)
    return stack


def update(job_id: str, job: Job, change: Update) -> None:
    _emit("bgcb_job_update", job_id=job_id, job=job, update=change)


def ran(job_id: str, job: Job, outcome: Outcome, state: State) -> None:
    _emit("bgcb_job_ran", job_id=job_id, job=job, outcome=outcome, state=state)


def deferred(job_id: str, job: Job, seconds: float, attempt: int) -> None:
    _emit("bgcb_job_deferred", job_id=job_id, job=job, seconds=seconds, attempt=attempt)


def worker_process(metrics_port: int | None) -> None:
    _emit("bgcb_worker_process", metrics_port=metrics_port)


def ended(job_id: str, load: Callable[[], str | None], outcome: Outcome, seconds: float) -> None:
    """A job ended by another process than its worker (a cancel, a timeout, a dead worker): ``load``
    reads its job text, only when an observer listens."""
    if not (wanted("bgcb_job_finished") or wanted("bgcb_job_cancelled")):
        return
    from .jobs import Job
    from .record import loads

    try:
        payload = load()
        job = Job.from_json(loads(payload)) if payload else Job(callback="", args=None)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):  # unreadable here: tell what is known
        job = Job(callback="", args=None)
    if outcome.kind == "cancelled":
        cancelled(job_id, job)
    finished(job_id, job, outcome, outcome.state, seconds)


def trace(pm: pluggy.PluginManager, label: str) -> None:
    """With ``BGCB_TRACE_HOOKS=1``, log every hook call of ``pm`` (arguments, result, milliseconds)."""
    if os.environ.get(defaults.ENV_TRACE, "").strip().lower() not in ("1", "true", "yes", "on"):
        return
    if not trace_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
        trace_log.addHandler(handler)
        trace_log.setLevel(logging.DEBUG)
    started_at: dict[int, float] = {}

    def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        started_at[threading.get_ident()] = time.perf_counter()

    def after(outcome: pluggy.Result[Any], hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        took = (time.perf_counter() - started_at.pop(threading.get_ident(), time.perf_counter())) * 1000
        args = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
        try:
            result = _short(outcome.get_result())
        except BaseException as exc:  # noqa: B036 - report what the hook raised, then let pluggy re-raise it
            result = f"raised {exc!r}"
        trace_log.debug("[%s] %s(%s) -> %s  %.2f ms", label, hook_name, args, result, took)

    pm.add_hookcall_monitoring(before, after)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
