"""The course of one callback request through the gate, for the app's bgcb managers.

A poll: read its job off the event loop, wait (bounded) for news if the
manager holds, then let Dash answer from that read. A first request: let
Dash submit the job, wait up to the first wait for news, then let Dash answer
the poll the renderer would have sent, carrying the first answer's handles.

While a first request is held the page cannot name its job, so the gate
itself ends such a job when the same page clicks one of its ``cancel``
inputs or fires its callback again (what ``cancelJob``/``oldJob`` would do).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from . import _dash_compat as compat
from . import defaults
from .hold import FIRST_KEYS, Call, Flow, Io, Query, Reply, Visit, json_object, news, with_handles
from .jobs import Snapshot

if TYPE_CHECKING:
    from .dash_manager import DashManager


@dataclass
class HeldFirst:
    """A first request being held: its page, callback, job and cancel inputs."""

    end_id: str | None
    output: str
    job: str
    cancel: list[Any]
    manager: DashManager
    stop: threading.Event = field(default_factory=threading.Event)


class Gate:
    """One Dash app's callback requests, held where its bgcb manager asks for it.

    ``limit_default`` bounds held requests when the manager sets no
    ``hold_max``: a few on threaded servers (each held request keeps a
    thread), many on async ones, none on single-threaded servers.
    """

    def __init__(self, app: Any, limit_default: int, defer: bool = False) -> None:
        self.app = app
        self.limit_default = limit_default
        #: Queue new jobs off the event loop (async servers).
        self.defer = defer
        self._firsts: list[HeldFirst] = []
        self._lock = threading.Lock()
        #: Seconds from submit to end of the last few jobs of each callback (by output id).
        self._recent: dict[str, collections.deque[float]] = {}

    def flow(self, query: Query, body: bytes) -> Flow:
        """The request's course: effects out (:class:`Call`, :class:`Io`), the reply back."""
        query = ascii_handles(query)
        payload = json_object(body)
        args = dict(query)
        end_id = args.get("endId")
        if end_id and payload is not None:
            for held in self.ended_by(end_id, payload, first=not args.get("cacheKey")):
                try:
                    yield Io(held.manager.backend.cancel, (held.job,))
                finally:
                    held.stop.set()
        manager = compat.bgcb_manager_of(self.app, payload, _manager_type())
        if manager is None or payload is None:
            return (yield Call(query, None))
        if args.get("cacheKey") and args.get("job"):
            return (yield from self._poll(manager, query, args, payload["output"]))
        return (yield from self._first(manager, query, end_id, payload["output"]))

    def _limit(self, manager: DashManager) -> int:
        return manager.hold_max if manager.hold_max is not None else self.limit_default

    def _poll(self, manager: DashManager, query: Query, args: dict[str, str], output: str) -> Flow:
        visit = Visit()
        try:
            job, snap = yield Io(self._read, (manager, args))
        except Exception:  # the store failed: Dash asks the manager, which reports it as usual
            job = snap = None
        if job is not None and snap is not None:
            if manager.holds(snap):
                try:
                    snap = yield Io(manager.holding.wait, (job, manager.hold, self._limit(manager), None, snap))
                except Exception:
                    pass  # keep what was read
            self._learn(output, snap)
            visit.prefetched[job] = snap
        return (yield Call(query, visit))

    def _read(self, manager: DashManager, args: dict[str, str]) -> tuple[str | None, Snapshot | None]:
        job = compat.verified_job(self.app, args)
        if job is None or not manager.owns(job):
            return None, None
        return job, manager.backend.poll(job)

    def _first(self, manager: DashManager, query: Query, end_id: str | None, output: str) -> Flow:
        visit = Visit(defer=self.defer)
        reply = yield Call(query, visit)
        for backend, queued in visit.queued if reply.status == 200 else []:  # a failed answer names no job
            try:
                yield Io(backend.enqueue, (queued,))
            except Exception as exc:  # as Dash answers a failed submit: an error, and no job
                return Reply(500, "Internal Server Error", [("Content-Type", "text/plain")], f"{exc}".encode())
        first = json_object(reply.body) if reply.status == 200 and not reply.header("content-encoding") else None
        if visit.submitted is None or first is None or "job" not in first or "cacheKey" not in first:
            return reply
        job = visit.submitted
        if visit.cached:
            return (yield from self._answer(query, first, Visit()))
        # Without a page identity (endId, Dash 4.4+) a cancel click could not reach a held job.
        if manager.hold <= 0 or (not end_id and first.get("cancel")):
            return reply
        held = self._hold_first(HeldFirst(end_id, output, job, list(first.get("cancel") or []), manager))
        try:
            seconds, limit = self.first_wait(manager, output), self._limit(manager)
            if self.defer:  # async servers: wait off the event loop, then let Dash answer from that read
                try:
                    snap = yield Io(manager.holding.wait, (job, seconds, limit, held.stop))
                except Exception:
                    return reply
                again = Visit(prefetched={job: snap})
            else:  # threaded: Dash parses and checks the poll while the job runs; the wait is where it reads
                again = Visit(late=(job, partial(_waited, manager, job, seconds, limit, held.stop)))
            final = yield from self._answer(query, first, again)
        finally:
            with self._lock:
                self._firsts.remove(held)
        snap = again.prefetched.get(job)
        self._learn(output, snap)
        return final if snap is not None and news(snap) else reply

    def _answer(self, query: Query, first: dict[str, Any], visit: Visit) -> Flow:
        """Dash's answer to the poll the renderer would send next, carrying the first answer's handles."""
        handles = [("cacheKey", first["cacheKey"]), ("job", first["job"])]
        final = yield Call([(k, v) for k, v in query if k not in ("cacheKey", "job", "oldJob")] + handles, visit)
        return with_handles(final, {k: first[k] for k in FIRST_KEYS if k in first})

    def first_wait(self, manager: DashManager, output: str) -> float:
        """``hold_first``, stretched up to :data:`~bgcb.defaults.HOLD_FIRST_STRETCH` when this
        callback's recent jobs all ended within the stretch: those are then seen in one request."""
        base = min(manager.hold_first, manager.hold)
        recent = self._recent.get(output)
        if recent:
            expected = max(recent) * 1.25 + defaults.HOLD_FIRST_SLACK
            if expected <= defaults.HOLD_FIRST_STRETCH:
                return min(manager.hold, max(base, expected))
        return base

    def _learn(self, output: str, snap: Snapshot | None) -> None:
        status = snap.status if snap is not None else None
        if status is None or status.state.active or status.submitted_at is None or status.finished_at is None:
            return
        with self._lock:
            recent = self._recent.setdefault(output, collections.deque(maxlen=defaults.HOLD_RECENT))
            recent.append(max(0.0, status.finished_at - status.submitted_at))

    def _hold_first(self, held: HeldFirst) -> HeldFirst:
        with self._lock:
            self._firsts.append(held)
        return held

    def ended_by(self, end_id: str, payload: dict[str, Any], first: bool) -> list[HeldFirst]:
        """Held first requests of this page that this request ends: a click on one of
        their cancel inputs, or (``first``) their callback fired again."""
        with self._lock:
            if not self._firsts:
                return []
            inputs = [(i.get("id"), i.get("property")) for i in _flat(payload.get("inputs")) if isinstance(i, dict)]
            out = []
            for held in self._firsts:
                if held.end_id != end_id:
                    continue
                clicked = any((c.get("id"), c.get("property")) in inputs for c in held.cancel if isinstance(c, dict))
                again = first and payload.get("output") == held.output and held.manager.on_retrigger == "cancel"
                if clicked or again:
                    out.append(held)
            return out


#: Query parameters that carry job handles: every handle bgcb or Dash issues is ASCII.
HANDLE_PARAMS = ("job", "cacheKey", "oldJob", "cancelJob", "endId")
#: What a handle that is not ASCII becomes: a handle nobody issued, refused as any forged one.
NOT_A_HANDLE = "forged"


def ascii_handles(query: Query) -> Query:
    """``query`` with non-ASCII handles replaced by :data:`NOT_A_HANDLE` (Dash 4.4 checks a
    handle's signature with ``hmac.compare_digest``, which raises on non-ASCII text: HTTP 500)."""
    if all(v.isascii() for k, v in query if k in HANDLE_PARAMS):
        return query
    return [(k, v if k not in HANDLE_PARAMS or v.isascii() else NOT_A_HANDLE) for k, v in query]


def _flat(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items or []:
        out.extend(_flat(item) if isinstance(item, list) else [item])
    return out


def _waited(manager: DashManager, job: str, seconds: float, limit: int, stop: threading.Event) -> Snapshot | None:
    """The first request's hold, run inside Dash's dispatch; None when the store failed (Dash then reads as usual)."""
    try:
        return manager.holding.wait(job, seconds, limit, stop)
    except Exception:
        return None


def _manager_type() -> type:
    from .dash_manager import DashManager

    return DashManager
