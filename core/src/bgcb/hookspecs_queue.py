# mypy: disable-error-code="empty-body"
"""The optional hooks of a backend's queue beyond first in first out: order, limits, deferral, liveness of pages.

Part of the contract of :mod:`bgcb.hookspecs` (:class:`~bgcb.hookspecs.BackendSpec`
inherits them). Each is optional; a backend says which behaviours it provides
with :meth:`QueueSpec.bgcb_capabilities`, and the conformance kit checks those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .record import Counts

hookspec = pluggy.HookspecMarker("bgcb")


class QueueSpec:
    """Optional hooks of a backend's queue."""

    @hookspec(firstresult=True)
    def bgcb_defer(self, job_id: str, delay: float, lane: str | None, priority: int | None, cap: int | None) -> None:
        """Optional (with ``"deferral"`` in :meth:`bgcb_capabilities`): queue ``job_id`` again in ``delay`` seconds.

        Called by the core in the worker, just after the job's run ended and
        the core moved its record back to ``"queued"`` (the callback called
        ``bgcb.retry_later``, or it failed and may retry). Must return at
        once: no worker may wait out the delay. Keep the due time where every
        worker sees it (the store, a broker's delayed message), so that the
        job runs even if this process dies. Once due, the id joins the queue
        as a new arrival with ``lane``, ``priority`` and ``cap`` (as in
        :meth:`~bgcb.hookspecs.BackendSpec.bgcb_enqueue`). A job cancelled
        meanwhile may still come up: the core's claim then fails and skips
        it. While it waits it counts as queued in :meth:`bgcb_counts`, with
        no position.
        """

    @hookspec(firstresult=True)
    def bgcb_counts(self, lane: str) -> Counts | None:
        """Optional: how many jobs are queued in all, queued in ``lane``, and running in ``lane``.

        Called by the core in the web process before it queues a job of a
        manager with queue limits (``max_queued``, ``max_queued_per_owner``),
        so keep it a read or two. Jobs waiting for :meth:`bgcb_defer` count
        as queued. Return a :class:`bgcb.record.Counts` (or a 3-tuple), or
        None when the backend cannot tell: the core then lets the job in and
        has warned that the limits have no effect.
        """

    @hookspec(firstresult=True)
    def bgcb_capabilities(self) -> Sequence[str] | None:
        """Optional: the optional behaviours this backend provides, by name.

        Called by the core once, when the backend is configured, and by the
        conformance kit, which skips (saying so) the checks of a behaviour
        not listed. Names: ``"ordering"`` (the queue follows ``lane`` and
        ``priority`` of ``bgcb_enqueue``, and positions count in that
        order); ``"running_limits"`` (the queue passes over a lane while
        ``cap`` of its jobs run); ``"deferral"`` (:meth:`bgcb_defer`). A
        backend without this hook provides none of them; the core then warns
        when a manager asks for one (``owner=``, ``priority=``,
        ``max_running_per_owner=``), and fails a job that asks to run again
        later with a message naming the backend.
        """

    @hookspec(firstresult=True)
    def bgcb_touch(self, job_id: str, ttl: float) -> None:
        """Optional (with :meth:`bgcb_seen`): note that a browser polled ``job_id`` now.

        Called by the core in the web process, at most every quarter of
        ``abandon_after`` per job and process, so keep it one cheap write
        (a key with ``ttl``, a field of the record). Backends without the
        pair never cancel abandoned jobs.
        """

    @hookspec(firstresult=True)
    def bgcb_seen(self, job_id: str) -> float | None:
        """Optional: when :meth:`bgcb_touch` last noted a poll of ``job_id`` (seconds since the epoch), or None.

        Called by the core in the worker: when it takes a job that waited
        longer than ``abandon_after`` (a queued job whose page is gone is
        cancelled, not run), and every few seconds while a job runs past it.
        """

    @hookspec(firstresult=True)
    def bgcb_capacity(self) -> int | None:
        """Optional: how many jobs the backend's workers run at once now (None: cannot tell).

        Called by the core in the web process, at most once every few seconds
        while a page shows a queued job's estimated wait
        (``bgcb.manager(waiting=...)``): the estimate counts rounds of
        ``capacity`` jobs ahead. Answer from what the workers announce (a
        heartbeat, a registry), not from a configured guess; None makes the
        core assume one job at a time.
        """
