"""Load on one side: many jobs submitted over a pool of connections, polled until answered, and the side's process tree sampled.

Shared by the ``burst`` and ``cpu`` phases. Every request goes through the
renderer's protocol (``endId`` from one page load, the first POST, then polls
with ``cacheKey``/``job`` and the input values cleared). No request error ever
escapes: a job whose first request fails, or that gets an error status, ends
``failed``; a poll that cannot connect is retried on the next round; a job
still pending at the deadline is ``lost``.
"""

from __future__ import annotations

import json
import queue
import statistics
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil

from .browser import ENDPOINT, Browser
from .stack import Side

#: Seconds between poll rounds (each pending job is polled once a round).
POLL_INTERVAL = 0.05


@dataclass
class Job:
    """One click: its first request, its polls and how it ended."""

    n: int
    button: str
    output: str
    body: dict[str, Any] = field(default_factory=dict)
    handles: list[tuple[str, str]] = field(default_factory=list)
    sent: float = 0.0
    done: float | None = None
    #: Poll round that brought the answer (0: the first request did).
    round: int = -1
    #: pending, ok, wrong, empty (HTTP 204 where a value was due), failed (first request or an error status), lost
    outcome: str = "pending"
    requests: int = 0
    errors: int = 0
    detail: str = ""

    @property
    def pending(self) -> bool:
        return self.outcome == "pending"

    @property
    def seconds(self) -> float | None:
        return None if self.done is None else self.done - self.sent


def click_body(button: str, output: str, n_clicks: int) -> dict[str, Any]:
    return {
        "output": f"{output}.children",
        "outputs": {"id": output, "property": "children"},
        "inputs": [{"id": button, "property": "n_clicks", "value": n_clicks}],
        "state": [],
        "changedPropIds": [f"{button}.n_clicks"],
    }


class Page(Browser):
    """A connection that sends single requests and hands back the raw status (no polling loop)."""

    def call(self, body: dict[str, Any], query: list[tuple[str, str]]) -> tuple[int, dict[str, Any] | None]:
        if self.end_id:
            query = [("endId", self.end_id), *query]
        path = ENDPOINT + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            status, data = self._send("POST", path, json.dumps(body).encode())
        except BaseException:
            self.conn.close()  # a timed-out request leaves the connection unusable; the next request reopens it
            raise
        if status != 200:
            return status, None
        return status, json.loads(data) if data else {}


class Pool:
    """``size`` keep-alive connections to one side, all on one page load (one ``endId``), and threads to drive them."""

    def __init__(self, url: str, size: int, timeout: float = 30.0) -> None:
        first = Page(url, timeout=timeout).load()
        self.pages: list[Page] = [first] + [Page(url, timeout=timeout) for _ in range(size - 1)]
        for page in self.pages[1:]:
            page.end_id = first.end_id
        self.free: queue.Queue[Page] = queue.Queue()
        for page in self.pages:
            self.free.put(page)
        self.executor = ThreadPoolExecutor(size, thread_name_prefix="load")

    @contextmanager
    def page(self) -> Iterator[Page]:
        page = self.free.get()
        try:
            yield page
        finally:
            self.free.put(page)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        for page in self.pages:
            page.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settle(job: Job, status: int, answer: dict[str, Any] | None, rnd: int) -> None:
    """Record what one request answered for ``job``."""
    now = time.perf_counter()
    if status == 204:
        job.outcome, job.done, job.round = "empty", now, rnd
    elif status != 200 or answer is None:
        job.outcome, job.detail = "failed", f"HTTP {status}"
    elif "response" in answer:
        value = answer["response"].get(job.output, {}).get("children")
        job.outcome, job.done, job.round = ("ok" if value == job.n else "wrong"), now, rnd
        if job.outcome == "wrong":
            job.detail = f"answered {value!r}"
    elif not job.handles:
        if "job" not in answer or "cacheKey" not in answer:
            job.outcome, job.detail = "failed", f"first answer without a job: {str(answer)[:200]}"
            return
        job.handles = [("cacheKey", str(answer["cacheKey"])), ("job", str(answer["job"]))]
        # the renderer polls with the input values cleared
        job.body = {**job.body, "inputs": [dict(i, value=None) for i in job.body["inputs"]]}


def first_request(pool: Pool, job: Job) -> None:
    """Send ``job``'s first request; any error fails the job."""
    job.body = click_body(job.button, job.output, job.n)
    with pool.page() as page:
        job.sent = time.perf_counter()
        job.requests += 1
        try:
            status, answer = page.call(job.body, [])
        except Exception as exc:  # noqa: BLE001 - a failing side must not stop the phase
            job.outcome, job.detail = "failed", f"first request: {exc!r}"[:300]
            return
    _settle(job, status, answer, 0)


def poll(pool: Pool, job: Job, rnd: int, deadline: float) -> None:
    if not job.pending or time.perf_counter() > deadline:
        return
    with pool.page() as page:
        job.requests += 1
        try:
            status, answer = page.call(job.body, job.handles)
        except Exception as exc:  # noqa: BLE001 - retried next round, until the deadline
            job.errors += 1
            job.detail = f"poll: {exc!r}"[:300]
            return
    _settle(job, status, answer, rnd)


def submit(pool: Pool, jobs: list[Job], concurrent: bool = True) -> None:
    """All first requests, as fast as the pool goes (or one after another on one connection)."""
    if concurrent:
        list(pool.executor.map(lambda job: first_request(pool, job), jobs))
    else:
        for job in jobs:
            first_request(pool, job)


def drain(pool: Pool, jobs: list[Job], deadline: float, interval: float = POLL_INTERVAL) -> int:
    """Poll every pending job once per round, a round every ``interval``, until none is pending or ``deadline``.

    Jobs still pending at the end become ``lost``. Returns the number of rounds.
    """
    rnd = 0
    while True:
        pending = [job for job in jobs if job.pending]
        if not pending or time.perf_counter() > deadline:
            break
        rnd += 1
        began = time.perf_counter()
        list(pool.executor.map(lambda job, r=rnd: poll(pool, job, r, deadline), pending))
        time.sleep(max(0.0, interval - (time.perf_counter() - began)))
    for job in jobs:
        if job.pending:
            job.outcome = "lost"
    return rnd


def run_jobs(side: Side, jobs: list[Job], connections: int, deadline_s: float, concurrent_submit: bool = True) -> dict[str, Any]:
    """Submit ``jobs`` to ``side``, drain them, and time it; the side's process tree is sampled meanwhile."""
    with Pool(side.url, connections) as pool, TreeSampler(side) as tree:
        began = time.perf_counter()
        submit(pool, jobs, concurrent_submit)
        submitted = time.perf_counter()
        rounds = drain(pool, jobs, began + deadline_s)
        ended = time.perf_counter()
    return {"began": began, "submit_s": submitted - began, "wall_s": ended - began, "rounds": rounds, **tree.figures()}


def outcomes(jobs: list[Job]) -> dict[str, int]:
    """Counts: ok, wrong, empty, lost (no answer by the deadline, or the first request / a poll failed), errors."""
    count = {k: sum(job.outcome == k for job in jobs) for k in ("ok", "wrong", "empty", "failed", "lost")}
    return {
        "jobs": len(jobs),
        "ok": count["ok"],
        "wrong": count["wrong"],
        "empty": count["empty"],
        "lost": count["lost"] + count["failed"],
        "failed": count["failed"],
        "poll_errors": sum(job.errors for job in jobs),
        "requests": sum(job.requests for job in jobs),
    }


def examples(jobs: list[Job], limit: int = 5) -> list[str]:
    """A few details of jobs that did not end ``ok``, for the JSON."""
    bad = [f"n={job.n} {job.outcome}: {job.detail}" for job in jobs if job.outcome != "ok"]
    return bad[:limit]


def latency(jobs: list[Job]) -> dict[str, float | None]:
    seconds = sorted(s for job in jobs if job.outcome == "ok" and (s := job.seconds) is not None)
    if not seconds:
        return {"median_s": None, "p90_s": None, "max_s": None}
    return {
        "median_s": statistics.median(seconds),
        "p90_s": seconds[max(0, round(0.9 * len(seconds)) - 1)],
        "max_s": seconds[-1],
    }


# --- the side's process tree -------------------------------------------------------------------------------------


def tree_pids(roots: list[int]) -> list[int]:
    """Live (not zombie) processes under ``roots``, the roots included."""
    children: dict[int, list[int]] = {}
    live: set[int] = set()
    for proc in psutil.process_iter(["ppid", "status"]):
        info = proc.info
        if info.get("ppid") is not None:
            children.setdefault(info["ppid"], []).append(proc.pid)
        if info.get("status") not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD, None):
            live.add(proc.pid)
    out, stack, seen = [], list(roots), set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        if pid in live:
            out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def tree_usage(roots: list[int]) -> tuple[int, int]:
    """(processes, summed RSS bytes) of the tree under ``roots``."""
    procs = rss = 0
    for pid in tree_pids(roots):
        try:
            rss += psutil.Process(pid).memory_info().rss
            procs += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return procs, rss


class TreeSampler(threading.Thread):
    """Samples the side's whole process tree every ``every`` seconds: peak process count and peak summed RSS."""

    def __init__(self, side: Side, every: float = 0.1) -> None:
        super().__init__(name=f"sampler-{side.label}", daemon=True)
        self.roots = [proc.popen.pid for proc in side.procs]
        self.every = every
        self.stopping = threading.Event()
        self.base_procs, self.base_rss = tree_usage(self.roots)
        self.peak_procs, self.peak_rss, self.samples = self.base_procs, self.base_rss, 0

    def run(self) -> None:
        while not self.stopping.is_set():
            began = time.perf_counter()
            try:
                procs, rss = tree_usage(self.roots)
            except Exception:  # noqa: BLE001 - a sample lost is no reason to stop sampling
                procs, rss = 0, 0
            self.peak_procs, self.peak_rss = max(self.peak_procs, procs), max(self.peak_rss, rss)
            self.samples += 1
            self.stopping.wait(max(0.0, self.every - (time.perf_counter() - began)))

    def __enter__(self) -> TreeSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join()

    def figures(self) -> dict[str, Any]:
        return {
            "procs_idle": self.base_procs,
            "procs_peak": self.peak_procs,
            "rss_idle_mb": self.base_rss / 2**20,
            "rss_peak_mb": self.peak_rss / 2**20,
            "samples": self.samples,
        }


def settle(side: Side, baseline: int | None, timeout: float, steady: float = 2.0) -> int:
    """Wait until the side's tree is back to ``baseline`` processes, or its count has not moved for ``steady`` seconds
    (a job process that never ends), or ``timeout``; returns the count."""
    roots = [proc.popen.pid for proc in side.procs]
    deadline = time.monotonic() + timeout
    procs, _ = tree_usage(roots)
    changed = time.monotonic()
    while baseline is not None and procs > baseline and time.monotonic() < min(deadline, changed + steady):
        time.sleep(0.2)
        now, _ = tree_usage(roots)
        if now != procs:
            procs, changed = now, time.monotonic()
    return procs


def warm(side: Side, buttons: list[tuple[str, str]], n_clicks: Iterator[int], timeout: float = 60.0) -> None:
    """One click per callback, so workers are up and connections made before anything is timed."""
    page = Browser(side.url, interval=POLL_INTERVAL, timeout=timeout)
    try:
        page.load()
        for button, output in buttons:
            page.click(button, output, n_clicks=next(n_clicks))
    except Exception:  # noqa: BLE001 - a side that cannot warm up shows it in the measurements
        pass
    finally:
        page.close()
