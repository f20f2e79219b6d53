# mypy: disable-error-code="empty-body"
"""The contract between bgcb and its plugins, as pluggy hook specifications.

This module is the reference manual of the contract (version
:data:`CONTRACT_VERSION`). There are two kinds of plugin.

**A backend** is storage, a queue and a worker loop — nothing more. The core
(:class:`bgcb.lifecycle.Lifecycle`) owns a job's life: it mints and checks job
ids, encodes jobs, updates and outcomes as JSON, runs the state machine with
the backend's compare-and-set, writes progress and set_props through the
store, enforces timeouts, declares jobs of dead workers lost and tells
observers, exactly once. A backend stores opaque JSON text by job id, queues
ids in FIFO order, runs a worker loop that hands each id to
``jobs.execute(job_id)``, and can hard-stop a running job.

A backend is a class whose methods are marked with :data:`bgcb.hookimpl`,
published under the entry-point group ``bgcb.backends``::

    [project.entry-points."bgcb.backends"]
    mine = "bgcb_mine:MineBackend"

One instance is made per distinct ``(name, options)`` in a process and shared
by every manager asking for it. When it is loaded the core checks it the way
pluggy hosts do: every hook in :data:`REQUIRED` must be a registered hook
implementation, every ``bgcb_*`` attribute must be a known hook marked with
``@hookimpl``, signatures must match (pluggy's validation) and nothing may be
left unverified (``check_pending()``). :class:`bgcb.contract.BackendPlugin`
is the same contract as a typed Protocol.

Who calls what: the **web process** (Dash's requests, many threads at once)
calls ``enqueue``, ``read``, ``cas``, ``load``, ``stop``, ``cache_get``,
``shared_secret``; the **worker** (the backend's own loop, through
``jobs.execute``) calls ``load``, ``cas``, ``append``, ``read``,
``cache_put``; the **CLI** calls ``active``, ``read`` and ``run_worker``. Every
hook may be called from several threads at once unless it says otherwise.
Before any hook that takes a ``job_id`` runs, the core has checked that it
is an id of the shape :func:`bgcb.jobs.new_job_id` makes: a backend never sees
a forged or malformed handle, though it may see well-formed ids it does not
know (answer as for an expired record).

**An observer** listens to job events (metrics, tracing, logging, audit).
Any number may be installed: through the entry-point group ``bgcb.plugins``,
or :func:`bgcb.observers.register` (at any time; registering after the first
manager works, and :func:`bgcb.observers.unregister` undoes it). Events are
fired by the core, once per job and event, in whichever process saw it happen:
``submitted`` and ``cancelled`` in the web process, ``started`` in the worker,
``finished`` wherever the job reached its terminal state (the worker, or the
process that noticed a cancel, a timeout or a dead worker). An observer that
raises is logged and skipped; it never breaks a job. Events of one job come
from several processes and threads, so their order is not guaranteed (an
in-process worker may start, even finish, a job before ``submitted`` is
delivered), except that ``cancelled`` comes before ``finished``.

Deprecation path: a hook that is renamed or removed keeps its specification
here for one minor version with ``warn_on_impl``, so that a backend still
implementing it gets a :class:`DeprecationWarning` naming the replacement
when it is registered. :data:`V1_HOOKS` are the hooks of contract 1, which
the core no longer calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from .hookspecs_queue import QueueSpec
from .hookspecs_v1 import V1_HOOKS as V1_HOOKS
from .hookspecs_v1 import ContractOneSpec
from .observer_specs import ObserverSpec as ObserverSpec

if TYPE_CHECKING:
    from .checks import Check
    from .lifecycle import Lifecycle
    from .record import Stored

PROJECT = "bgcb"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The contract's version: 2 moved the job lifecycle from the backends to the core.
CONTRACT_VERSION = 2

#: Hooks every backend must implement.
REQUIRED = ("bgcb_enqueue", "bgcb_read", "bgcb_load", "bgcb_cas", "bgcb_append")

#: Hooks a backend implements together or not at all.
PAIRS = (("bgcb_cache_put", "bgcb_cache_get"),)

#: The process a backend instance is configured for (see :func:`BackendSpec.bgcb_configure`).
Role = Literal["web", "worker", "cli"]


class BackendSpec(QueueSpec, ContractOneSpec):
    """Hooks of a backend. All are ``firstresult``: one backend per plugin manager.

    The optional hooks of the queue's order, limits and deferral are inherited from
    :class:`~bgcb.hookspecs_queue.QueueSpec`; the deprecated hooks of contract 1 from
    :class:`~bgcb.hookspecs_v1.ContractOneSpec`."""

    # -- configuration and life ------------------------------------------------

    @hookspec(firstresult=True)
    def bgcb_options(self) -> Mapping[str, Any]:
        """Return the backend's own options and their defaults (``{}`` for none).

        Called once, by the core, when the backend is loaded, before
        :meth:`bgcb_configure`. Defaults must be ``int``, ``float``, ``bool``,
        ``str`` or ``None``: users set options as keyword arguments of
        :func:`bgcb.manager` or as ``BGCB_<BACKEND>_<OPTION>`` variables,
        converted to the default's type (``str`` when it is ``None``). The
        core adds its own lifecycle options (``result_ttl``, ``job_ttl``,
        ``cancel_grace``, ``no_worker_after``; :mod:`bgcb.defaults`) to every backend; a backend
        must not declare them.
        """

    @hookspec
    def bgcb_configure(self, options: dict[str, Any], role: Role, jobs: Lifecycle) -> None:
        """Open connections and get ready; called once, by the core, before any other hook but ``bgcb_options``.

        :param options: every option of :meth:`bgcb_options`, resolved (the
            core's lifecycle options are not included).
        :param role: the process this instance serves: ``"web"`` (a Dash app
            created it; it may start in-process workers if the backend has
            such a mode), ``"worker"`` (``bgcb worker``, or a backend's own
            pool process: never start another pool), ``"cli"`` (``bgcb jobs``,
            ``bgcb doctor``: storage only, start nothing).
        :param jobs: the core's lifecycle for this instance. The worker loop
            calls ``jobs.execute(job_id)`` for each job it takes from the
            queue, and ``jobs.lost(job_id, reason)`` when a worker it
            supervises died while holding a job.
        """

    @hookspec(firstresult=True)
    def bgcb_run_worker(self, app_module: str) -> bool | None:
        """Optional: run the worker loop in this process until interrupted (``bgcb worker APP_MODULE``).

        Called by the CLI, on the backend instance the app's managers
        configured (role ``"worker"``), after ``app_module`` was imported, so
        every callback of the app is registered. Return True when the loop
        ended; leave the hook out if the backend's workers start otherwise.
        """

    @hookspec
    def bgcb_close(self) -> None:
        """Release connections and stop the threads or processes the backend owns.

        Called once by the core (``DashManager.close()``, the CLI, tests);
        no other hook is called afterwards.
        """

    # -- storage: records ----------------------------------------------------------

    @hookspec(firstresult=True)
    def bgcb_enqueue(
        self,
        job_id: str,
        job: str,
        data: str,
        timeout: float | None,
        ttl: float,
        lane: str | None,
        priority: int | None,
        cap: int | None,
    ) -> None:
        """Store a new record in state ``"queued"`` and queue ``job_id``.

        Called by the core in the web process (a Dash request: must return
        quickly; never run the job here or fork per job).

        :param job_id: a fresh id from :func:`bgcb.jobs.new_job_id`.
        :param job: the job as JSON text; returned unchanged by :meth:`bgcb_load`.
        :param data: the core's status data as JSON text; returned unchanged
            by :meth:`bgcb_read` until a :meth:`bgcb_cas` replaces it.
        :param timeout: seconds the job may run once started, or None. The
            core enforces it; a backend that can hard-stop should also stop
            the job's execution ``timeout + cancel_grace`` seconds after it
            started (``jobs.lost`` then records the timeout).
        :param ttl: seconds the record is kept while it is not terminal.
        :param lane: who the job belongs to (its owner's lane; ``""`` for no
            owner), or None when no manager of this process orders jobs: then
            plain first in first out is right.
        :param priority: the job's priority (higher starts first), or None
            with ``lane=None``.
        :param cap: how many jobs of ``lane`` may run at once
            (``max_running_per_owner``), or None for no limit. While that many
            of its jobs run, the lane is passed over and its jobs keep their
            places (:meth:`bgcb.queueing.FairQueue.pop` with the running
            counts); a backend without ``"running_limits"`` in
            :meth:`bgcb_capabilities` ignores it.

        The queue serves jobs in the order of :class:`bgcb.queueing.FairQueue`
        (higher priority first; within a priority, owners' lanes take turns;
        first in first out within a lane); a backend that keeps its queue as
        one value can use that class. A backend that can only keep a plain
        first-in-first-out queue leaves ``"ordering"`` out of
        :meth:`bgcb_capabilities`. Store and queue together (or queue only after storing), so that a
        worker never takes an id without a record; raise an exception with a
        clear message when the store or queue is unreachable.
        """

    @hookspec(firstresult=True)
    def bgcb_read(self, job_id: str, drain: bool) -> Stored | None:
        """Return the record of ``job_id`` as a :class:`bgcb.record.Stored`, or None if unknown or expired.

        Called by the core for every browser poll (``drain=True``), for
        cancel, for ``bgcb jobs``, and by the worker's channel to see a cancel
        (``drain=False``). Ideally one store round trip.

        :param drain: also return the updates appended since the last drain,
            oldest first, and remove them (each update is delivered once).
            Without it, ``updates`` may be left empty.
        :returns: ``Stored(state, data, updates, position, alive, reason)``:
            ``state`` and ``data`` as last written; ``position`` the 0-based
            place in the queue while queued, if the backend knows it; ``alive``
            False when the backend knows the worker running the job is gone (a
            missing heartbeat, a dead pool), True when it knows it is alive,
            None if it cannot tell; ``reason``, with ``alive=False``, why (the
            user sees it in the job's error).
        """

    @hookspec(firstresult=True)
    def bgcb_load(self, job_id: str) -> str | None:
        """Return the job JSON text stored by :meth:`bgcb_enqueue`, or None if the record is gone.

        Called by the core in the worker when it claims a job, and wherever
        an observer needs the job (a cancel, a dead worker).
        """

    @hookspec(firstresult=True)
    def bgcb_cas(self, job_id: str, expect: Sequence[str], state: str, data: str, ttl: float) -> bool:
        """Atomically: if the record's state is one of ``expect``, set ``state`` and ``data``; return whether it did.

        This is the one write of the state machine; the core never writes a
        state without it, so a terminal state is final and exactly one
        process wins each transition. Called by the core in any process.

        :param ttl: seconds to keep the record from now on (the result TTL
            once ``state`` is terminal). Updates and the job payload may be
            dropped together with the record.

        A backend with a queue removes ``job_id`` from it when the new state
        is not ``"queued"``, so that a cancelled job never starts.
        """

    @hookspec(firstresult=True)
    def bgcb_append(self, job_id: str, update: str, ttl: float) -> None:
        """Append one progress or set_props update (JSON text) to the job's list; never drop or merge one.

        Called by the core's channel in the worker, in the order the callback
        made the updates, from the job's thread only. ``ttl`` bounds how long
        undrained updates are kept. An update for a record that no longer
        exists (expired) may be ignored: nobody can read it.
        """

    # -- execution and storage: optional -----------------------------------------

    @hookspec(firstresult=True)
    def bgcb_stop(self, job_id: str, after: float) -> None:
        """Optional: hard-stop the job's execution if it still runs ``after`` seconds from now.

        Called by the core in the web process when a cancel ended a running
        job: with ``after`` = ``cancel_grace`` when the callback reports
        progress (it may stop by itself at its next report), else with
        ``after`` = 0; and with ``after`` = 0 when a poll found a job past its
        timeout or its worker reported gone (``alive=False``). The record is
        already terminal; a backend only frees the worker (kill the process,
        revoke the task), promptly when ``after`` is 0: until then the
        callback's side effects go on. Without it, stopping is cooperative only.
        """

    @hookspec(firstresult=True)
    def bgcb_cache_put(self, cache_key: str, outcome: str, ttl: float) -> None:
        """Optional (with :meth:`bgcb_cache_get`): keep a successful outcome (JSON text) under ``cache_key`` for ``ttl`` s.

        Called by the core in the worker, only for jobs submitted with
        ``cache_by`` that succeeded and won their final compare-and-set (so
        just after the job reads as succeeded: a cancelled job's outcome is
        never cached).
        ``ttl`` is Dash's ``expire``, or the core's ``job_ttl`` when the
        manager sets none. Overwrite an existing entry.
        """

    @hookspec(firstresult=True)
    def bgcb_cache_get(self, cache_key: str) -> str | None:
        """Optional: the outcome JSON text kept under ``cache_key``, or None if absent or expired."""

    @hookspec(firstresult=True)
    def bgcb_active(self) -> list[str] | None:
        """Optional: ids of queued and running jobs, running first, then queued in queue order (``bgcb jobs``).

        Called by the CLI. The core reads each id's record and drops those
        that ended, so an id that ended a moment ago may be listed.
        """

    @hookspec(firstresult=True)
    def bgcb_shared_secret(self, generate: Callable[[], bytes]) -> bytes | None:
        """Optional: the secret Dash 4.4+ signs job handles with, shared by every web process.

        Store ``generate()`` if no secret is stored yet, atomically (the first
        writer wins), and return the stored one. Without it each web process
        has its own secret (set ``server.secret_key`` for several processes).
        """

    @hookspec(firstresult=True)
    def bgcb_describe(self) -> Mapping[str, Any] | None:
        """Optional: where the jobs are kept and the options as they took effect, for ``bgcb jobs`` and ``bgcb doctor``.

        Called by the CLI (role ``"cli"``). Return ``{"where": "..."}`` (a
        directory, a Redis URL without its password) plus any option whose
        effective value differs from the one given (a default of None resolved
        to a path or URL), so that the user sees what the backend really uses.
        """

    @hookspec(firstresult=True)
    def bgcb_check(self) -> list[Check] | None:
        """Optional: check what this backend needs, for ``bgcb doctor``: the store and broker reachable,
        a worker alive. Return :class:`bgcb.checks.Check` items; a failed one's ``detail`` says how to fix it.

        Called by the CLI (role ``"cli"``), once; each check should take at most a second or two.
        """

    @hookspec(firstresult=True)
    def bgcb_wait(self, job_id: str, seconds: float) -> bool | None:
        """Optional: block until ``job_id``'s record may have changed (True) or ``seconds`` pass (False).

        Called by the core in the web process, between reads of a job whose
        request it holds (``bgcb.manager(hold=...)``), from many threads at
        once. Waking early or for nothing is allowed (it costs the core one
        read); so is missing a change (the core bounds every wait). Only an
        end or a new update is news to a held request: a move to ``running``
        need not wake it. The first
        call for a job may return True at once, so that the backend starts
        listening before the core's next read. Return None when it cannot
        wait here: the core then reads on its own schedule, as it does for
        a backend without this hook.
        """
