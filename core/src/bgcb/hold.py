"""Results as soon as they exist: holding a callback request until its job has news.

Dash's renderer waits ``interval`` ms (1000 by default) after the first
response and after every poll, and finishes as soon as any answer, the first
one included, carries ``response``. With ``bgcb.manager(hold=...)`` a poll
waits, bounded, until its job ends or reports progress/set_props, and the
first request waits up to ``hold_first`` seconds and then is answered with the
poll Dash would answer: a quick job, or a ``cache_by`` hit, is on screen in
one round trip instead of one interval.

This module is the server-independent part: what a request is, when to wait,
how to wait (:class:`Holding`, bounded per process) and how the first
response is rewritten. :mod:`bgcb.serve` runs :meth:`Gate.flow` on WSGI
(Flask) and ASGI (FastAPI, Quart) servers.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _dash_compat as compat
from . import defaults
from .jobs import Snapshot

if TYPE_CHECKING:
    from .dash_manager import DashManager

#: The keys of a first response the renderer needs to keep polling and to finish cleanly.
FIRST_KEYS = ("cacheKey", "job", "cancel", "progressDefault")
Query = list[tuple[str, str]]


@dataclass
class Visit:
    """What the gate and the manager share during one dispatch to Dash."""

    #: Snapshots read by the gate (off the event loop), by job id: the manager reads no backend.
    prefetched: dict[str, Snapshot] = field(default_factory=dict)
    #: The job the manager submitted in this request, and whether it answered from the cache.
    submitted: str | None = None
    cached: bool = False


_VISIT: ContextVar[Visit | None] = ContextVar("bgcb_visit", default=None)


def current() -> Visit | None:
    """The visit of the request being dispatched, if a gate serves it."""
    return _VISIT.get()


def news(snap: Snapshot) -> bool:
    """Whether a poll answered with ``snap`` shows the user something new (or ends the job)."""
    return not snap.status.state.active or bool(snap.updates)


class Holding:
    """Bounded waits on one backend: at most ``limit`` requests of this process wait at once."""

    def __init__(self, poll: Callable[[str], Snapshot]) -> None:
        self._poll = poll
        self._lock = threading.Lock()
        self.held = 0

    def _enter(self, limit: int) -> bool:
        with self._lock:
            if self.held >= limit:
                return False
            self.held += 1
            return True

    def _leave(self) -> None:
        with self._lock:
            self.held -= 1

    def wait(
        self, job_id: str, seconds: float, limit: int, stop: threading.Event | None = None, snap: Snapshot | None = None
    ) -> Snapshot:
        """Read ``job_id`` until it has news, ``seconds`` pass or ``stop`` is set; return the last read.

        Beyond ``limit`` waiting requests it reads once and returns: the
        browser falls back to plain polling instead of queueing on the server.
        Reads back off from 5 ms to 50 ms, so a job's end is seen within ~50 ms.
        """
        if seconds <= 0 or not self._enter(limit):
            return snap if snap is not None else self._poll(job_id)
        try:
            deadline = time.monotonic() + seconds
            pause = defaults.HOLD_PAUSE_FIRST
            while True:
                now = time.monotonic()
                if snap is not None and (news(snap) or now >= deadline or (stop is not None and stop.is_set())):
                    return snap
                nap = max(0.0, min(pause, deadline - now))
                if stop is not None:
                    stop.wait(nap)
                else:
                    time.sleep(nap)
                pause = min(pause * 2, defaults.HOLD_PAUSE_MAX)
                snap = self._poll(job_id)
        finally:
            self._leave()


class Call(NamedTuple):
    """Effect: dispatch the request to Dash with ``query`` (the body unchanged) during ``visit``."""

    query: Query
    visit: Visit | None


class Io(NamedTuple):
    """Effect: blocking backend work; async servers run it in a thread, off the event loop."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]


class Reply(NamedTuple):
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


Effect = Call | Io
Flow = Generator[Effect, Any, Reply]


@dataclass
class _HeldFirst:
    end_id: str | None
    job: str
    cancel: list[Any]
    manager: DashManager
    stop: threading.Event = field(default_factory=threading.Event)


class Gate:
    """One Dash app's callback requests, held where its bgcb manager asks for it.

    ``limit_default`` is the bound on held requests when the manager sets no
    ``hold_max``: a few on threaded servers (each held request keeps a
    thread), many on async ones, none on single-threaded servers.
    """

    def __init__(self, app: Any, limit_default: int) -> None:
        self.app = app
        self.limit_default = limit_default
        self._firsts: list[_HeldFirst] = []
        self._lock = threading.Lock()

    def flow(self, query: Query, body: bytes) -> Flow:
        """The request's course: effects out (:class:`Call`, :class:`Io`), the reply back."""
        payload = _json_object(body)
        args = dict(query)
        end_id = args.get("endId")
        if end_id and payload is not None:
            for held in self._cancelled_by(end_id, payload):
                try:
                    yield Io(held.manager.backend.cancel, (held.job,))
                finally:
                    held.stop.set()
        manager = compat.bgcb_manager_of(self.app, payload, _manager_type())
        if manager is None:
            return (yield Call(query, None))
        if args.get("cacheKey") and args.get("job"):
            return (yield from self._poll(manager, query, args))
        return (yield from self._first(manager, query, end_id))

    def _limit(self, manager: DashManager) -> int:
        return manager.hold_max if manager.hold_max is not None else self.limit_default

    def _poll(self, manager: DashManager, query: Query, args: dict[str, str]) -> Flow:
        visit = Visit()
        try:
            job, snap = yield Io(self._read, (manager, args))
        except Exception:  # the store failed: Dash asks the manager, which reports it as usual
            job = snap = None
        if job is not None and snap is not None:
            if manager.hold > 0 and not news(snap):
                try:
                    snap = yield Io(manager.holding.wait, (job, manager.hold, self._limit(manager), None, snap))
                except Exception:
                    pass  # keep what was read
            visit.prefetched[job] = snap
        return (yield Call(query, visit))

    def _read(self, manager: DashManager, args: dict[str, str]) -> tuple[str | None, Snapshot | None]:
        job = compat.verified_job(self.app, args)
        if job is None or not manager.owns(job):
            return None, None
        return job, manager.backend.poll(job)

    def _first(self, manager: DashManager, query: Query, end_id: str | None) -> Flow:
        visit = Visit()
        reply = yield Call(query, visit)
        first = _json_object(reply.body) if reply.status == 200 and not reply.header("content-encoding") else None
        if visit.submitted is None or first is None or "job" not in first or "cacheKey" not in first:
            return reply
        snap: Snapshot | None = None
        if not visit.cached:
            # The page learns the job handle only from this answer; without a page
            # identity (endId, Dash 4.4+) a cancel click could not reach a held job.
            if manager.hold <= 0 or (not end_id and first.get("cancel")):
                return reply
            held = self._hold_first(end_id, visit.submitted, first.get("cancel"), manager)
            try:
                seconds = min(manager.hold_first, manager.hold)
                snap = yield Io(manager.holding.wait, (visit.submitted, seconds, self._limit(manager), held.stop))
            except Exception:
                return reply
            finally:
                with self._lock:
                    self._firsts.remove(held)
            if not news(snap):
                return reply
        again = Visit(prefetched={visit.submitted: snap} if snap is not None else {})
        handles = [("cacheKey", first["cacheKey"]), ("job", first["job"])]
        final = yield Call([(k, v) for k, v in query if k not in ("cacheKey", "job", "oldJob")] + handles, again)
        return with_handles(final, {k: first[k] for k in FIRST_KEYS if k in first})

    def _hold_first(self, end_id: str | None, job: str, cancel: Any, manager: DashManager) -> _HeldFirst:
        held = _HeldFirst(end_id, job, list(cancel or []), manager)
        with self._lock:
            self._firsts.append(held)
        return held

    def _cancelled_by(self, end_id: str, payload: dict[str, Any]) -> list[_HeldFirst]:
        """Held first requests of this page whose cancel inputs this request is a click on."""
        with self._lock:
            if not self._firsts:
                return []
            inputs = [(i.get("id"), i.get("property")) for i in _flat(payload.get("inputs")) if isinstance(i, dict)]
            return [
                h
                for h in self._firsts
                if h.end_id == end_id and any((c.get("id"), c.get("property")) in inputs for c in h.cancel if isinstance(c, dict))
            ]


def with_handles(reply: Reply, first: dict[str, Any]) -> Reply:
    """``reply`` (a poll's answer) carrying the first response's handles, so the renderer
    registers the job, keeps polling if it must, and resets progress when it ends."""
    body = reply.body.strip()
    if reply.status != 200 or not body.startswith(b"{") or reply.header("content-encoding"):
        return reply  # 204 (no update, cancelled) or an error: nothing to poll, nothing to merge
    extra = json.dumps(first)[1:-1].encode()
    rest = body[1:]
    merged = b"{" + extra + (b"," if rest.lstrip() != b"}" else b"") + rest
    headers = [(k, v) for k, v in reply.headers if k.lower() != "content-length"]
    return Reply(reply.status, reply.reason, [*headers, ("Content-Length", str(len(merged)))], merged)


def parse_query(raw: str) -> Query:
    return urllib.parse.parse_qsl(raw, keep_blank_values=True)


def encode_query(query: Query) -> str:
    return urllib.parse.urlencode(query)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body) if body else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _flat(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items or []:
        out.extend(_flat(item) if isinstance(item, list) else [item])
    return out


def _manager_type() -> type:
    from .dash_manager import DashManager

    return DashManager
