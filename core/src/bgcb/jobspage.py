"""The live jobs page: queued, running and recent jobs, queue length and run times over the last hour,
and cancel buttons that the app's ``allow`` function guards.

``bgcb.jobs_page(app)`` mounts it on the app's own server (``/bgcb/jobs`` by
default, any Dash server); ``bgcb dashboard APP_MODULE`` serves it alone.
It reads what ``bgcb jobs`` reads (each loaded backend's queued and running
jobs, ``bgcb_active``), at most once a second while a page is open and every
:data:`SAMPLE_EVERY` seconds otherwise, and keeps the last hour of samples
in this process: a job that started and ended between two samples is not
seen. Cancelling needs ``allow(request)`` to say yes: by default only
requests from this machine may (a loopback address).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from .joblog import callback_label
from .jobs import Job, State, is_job_id
from .record import loads
from .routes import Request, Response, is_local

if TYPE_CHECKING:
    from .provider import Backend

#: Seconds between samples while no page asks; an open page asks every second.
SAMPLE_EVERY = 5.0
#: Seconds of history kept for the plots, and ended jobs kept in the "recent" table.
HISTORY = 3600.0
RECENT = 100

Allow = Callable[[Request], bool]


class JobsPage:
    """The page's handler (see :func:`bgcb.routes.mount`); ``backends`` lists the backends to show."""

    def __init__(self, backends: Callable[[], list[Backend]], allow: Allow | None = None) -> None:
        self._backends = backends
        self.allow = allow or is_local
        self._lock = threading.Lock()
        self._sampling = threading.Lock()
        self._sampled = 0.0
        self._active: dict[str, dict[str, Any]] = {}
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._history: deque[tuple[float, int, int]] = deque()
        self._runs: deque[tuple[float, float, str]] = deque()
        self._labels: OrderedDict[str, str] = OrderedDict()
        self._sampler: threading.Thread | None = None

    def backends(self) -> list[Backend]:
        """The backends to show, one per store (managers with other lifecycle settings share a store)."""
        distinct: dict[tuple[str, str], Backend] = {}
        for backend in self._backends():
            distinct.setdefault((backend.name, str(backend.describe().get("where", id(backend)))), backend)
        return list(distinct.values())

    # -- HTTP ----------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        self._start()
        path = request.path.rstrip("/")
        if path == "" and request.method == "GET":
            return Response(200, resources.files("bgcb").joinpath("jobspage.html").read_text(encoding="utf-8"))
        if path == "/data" and request.method == "GET":
            return Response(200, json.dumps(self.data(self._allowed(request))), "application/json")
        if path == "/cancel":
            return self._cancel(request)
        return Response(404, "not found", "text/plain")

    def _allowed(self, request: Request) -> bool:
        try:
            return bool(self.allow(request))
        except Exception:
            return False

    def _cancel(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405, "POST a job id to cancel it", "text/plain")
        if not self._allowed(request):
            return Response(403, "this page may not cancel jobs from where you are (the app's allow= function)", "text/plain")
        job_id = (request.query.get("job") or [""])[0]
        if not is_job_id(job_id):
            return Response(400, "no such job", "text/plain")
        done = any(backend.cancel(job_id) for backend in self.backends())
        self.sample(force=True)
        return Response(200, json.dumps({"cancelled": done}), "application/json")

    # -- sampling ----------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._sampler is None:
                self._sampler = threading.Thread(target=self._sample_forever, name="bgcb-jobs-page", daemon=True)
                self._sampler.start()

    def _sample_forever(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # a store that is down now may be up at the next sample
                pass
            time.sleep(SAMPLE_EVERY)

    def sample(self, force: bool = False) -> None:
        """Read every backend's active jobs (at most once a second unless ``force``); a caller that comes
        while a sample is being taken waits for it, so that it sees what that sample read."""
        with self._sampling:
            now = time.time()
            if not force and now - self._sampled < 1.0:
                return
            self._sampled = now
            self._take(now)

    def _take(self, now: float) -> None:
        active: dict[str, dict[str, Any]] = {}
        for backend in self.backends():
            for job_id, status in backend.jobs() or []:
                row = status.to_json()
                row.update(id=job_id, backend=backend.name, label=self._label(backend, job_id))
                active[job_id] = row
        with self._lock:
            for job_id in set(self._active) - set(active):
                self._ended(job_id, self._active[job_id])
            self._active = active
            running = sum(1 for r in active.values() if r["state"] == State.RUNNING.value)
            self._history.append((now, len(active) - running, running))
            while self._history and self._history[0][0] < now - HISTORY:
                self._history.popleft()
            while self._runs and self._runs[0][0] < now - HISTORY:
                self._runs.popleft()

    def _ended(self, job_id: str, last: dict[str, Any]) -> None:
        """(Lock held.) A job gone from the active list: read how it ended."""
        backend = next((b for b in self.backends() if b.name == last["backend"]), None)
        status = backend.status(job_id) if backend is not None else None
        row = dict(last, **(status.to_json() if status is not None and status.state.terminal else {"state": "ended"}))
        self._recent.appendleft(row)
        if row.get("started_at") and row.get("finished_at"):
            self._runs.append((row["finished_at"], row["finished_at"] - row["started_at"], row["label"]))

    def _label(self, backend: Backend, job_id: str) -> str:
        """The callback's outputs (``graph.figure``), read once per job."""
        label = self._labels.get(job_id)
        if label is None:
            payload = backend.hook.bgcb_load(job_id=job_id)
            label = callback_label(Job.from_json(loads(payload))) if payload else "?"
            self._labels[job_id] = label
            if len(self._labels) > 4 * RECENT:
                self._labels.popitem(last=False)
        return label

    def data(self, allowed: bool) -> dict[str, Any]:
        """What the page shows, as JSON data."""
        self.sample()
        with self._lock:
            return {
                "now": time.time(),
                "backends": [{"name": b.name, "where": b.describe().get("where", "")} for b in self.backends()],
                "allowed": allowed,
                "jobs": sorted(self._active.values(), key=_order),
                "recent": list(self._recent),
                "history": [list(h) for h in self._history],
                "runs": [list(r) for r in self._runs],
            }


def _order(row: dict[str, Any]) -> tuple[int, float]:
    """Running first, then queued by place."""
    queued = row["state"] == State.QUEUED.value
    return (1 if queued else 0, row.get("position") or 0 if queued else -(row.get("started_at") or 0))
