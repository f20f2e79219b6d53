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
response is rewritten. :mod:`bgcb.gate` decides a request's course and
:mod:`bgcb.serve` runs it on WSGI (Flask) and ASGI (FastAPI, Quart) servers.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import defaults
from .jobs import Snapshot

#: The keys of a first response the renderer needs to keep polling and to finish cleanly.
FIRST_KEYS = ("cacheKey", "job", "cancel", "progressDefault")
Query = list[tuple[str, str]]


@dataclass
class Visit:
    """What the gate and the manager share during one dispatch to Dash."""

    #: Snapshots read by the gate (off the event loop), by job id: the manager reads no backend.
    prefetched: dict[str, Snapshot] = field(default_factory=dict)
    #: Threaded servers: (job id, the hold) that the manager runs when Dash first asks about that job,
    #: so that Dash's own work on the request overlaps the job instead of following it.
    late: tuple[str, Callable[[], Snapshot | None]] | None = None
    #: The job the manager submitted in this request, and whether it answered from the cache.
    submitted: str | None = None
    cached: bool = False
    #: Async servers: the manager only prepares the job; the gate queues it off the event loop.
    defer: bool = False
    queued: list[tuple[Any, Any]] = field(default_factory=list)


_VISIT: ContextVar[Visit | None] = ContextVar("bgcb_visit", default=None)


def current() -> Visit | None:
    """The visit of the request being dispatched, if a gate serves it."""
    return _VISIT.get()


def prefetched(visit: Visit | None, job: str) -> Snapshot | None:
    """What the gate read (or, with ``late``, now waits for) for ``job`` in this request; None: read it yourself."""
    if visit is None:
        return None
    if job not in visit.prefetched and visit.late is not None and visit.late[0] == job:
        wait, visit.late = visit.late[1], None
        snap = wait()
        if snap is not None:
            visit.prefetched[job] = snap
    return visit.prefetched.get(job)


def news(snap: Snapshot) -> bool:
    """Whether a poll answered with ``snap`` shows the user something new (or ends the job)."""
    return not snap.status.state.active or bool(snap.updates)


_held_lock = threading.Lock()
_held = 0


class Holding:
    """Bounded waits on one backend. The bound is per process: a request waits only while
    fewer than its ``limit`` requests of this process (of every manager) are waiting."""

    def __init__(self, poll: Callable[[str], Snapshot], watch: Callable[[str, float], bool | None] | None = None) -> None:
        self._poll = poll
        #: The backend's wait for a change (:meth:`bgcb.lifecycle.Lifecycle.wait`), if it has one.
        self._watch = watch

    @property
    def held(self) -> int:
        """Requests of this process waiting now."""
        return _held

    def _enter(self, limit: int) -> bool:
        global _held
        with _held_lock:
            if _held >= limit:
                return False
            _held += 1
            return True

    def _watched(self, job_id: str, seconds: float) -> bool | None:
        """The backend's wait for a change of ``job_id``; None: it has none (or it failed), so sleep instead."""
        if self._watch is None:
            return None
        try:
            return self._watch(job_id, seconds)
        except Exception:
            self._watch = None  # broken: this manager reads on the schedule from now on
            return None

    def _leave(self) -> None:
        global _held
        with _held_lock:
            _held -= 1

    def wait(
        self, job_id: str, seconds: float, limit: int, stop: threading.Event | None = None, snap: Snapshot | None = None
    ) -> Snapshot:
        """Read ``job_id`` until it has news, ``seconds`` pass or ``stop`` is set; return the last read.

        Beyond ``limit`` waiting requests it reads once and returns: the
        browser falls back to plain polling instead of queueing on the server.
        A backend that can tell when a job changes (``bgcb_wait``) wakes the
        wait, and a read follows at once; at least one read per
        ``HOLD_PAUSE_MAX`` bounds a missed wake-up. Otherwise reads come every
        ``HOLD_PAUSE_FIRST`` for the first ``HOLD_FAST`` seconds (most short
        jobs end then), then back off (doubling) to one per ``HOLD_PAUSE_MAX``.
        """
        if seconds <= 0 or not self._enter(limit):
            return snap if snap is not None else self._poll(job_id)
        try:
            began = time.monotonic()
            deadline, fast = began + seconds, began + defaults.HOLD_FAST
            pause = defaults.HOLD_PAUSE_FIRST
            while True:
                now = time.monotonic()
                if snap is not None and (news(snap) or now >= deadline):
                    return snap
                if snap is not None and stop is not None and stop.is_set():
                    # ``stop`` is set after what set it (a cancel) was written: a read now sees it, while
                    # ``snap`` may have been read just before.
                    return self._poll(job_id)
                if self._watched(job_id, max(0.0, min(defaults.HOLD_PAUSE_MAX, deadline - now))) is None:
                    nap = max(0.0, min(pause, deadline - now))
                    if stop is not None:
                        stop.wait(nap)
                    else:
                        time.sleep(nap)
                    if now >= fast:
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


def json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body) if body else None
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses: not the gate's to hold
        return None
    return value if isinstance(value, dict) else None
