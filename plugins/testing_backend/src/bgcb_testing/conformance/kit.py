"""The helper the checks drive a backend with: jobs through the core, records through the storage hooks.

Kept apart from the checks so that a backend's own tests can reuse :class:`Kit`
to write further checks in the same style. Jobs go through the core's
lifecycle (:class:`bgcb.provider.Backend`: submit, poll, status, cancel), the
way the Dash manager drives them. Records the storage checks look at are made
with the hooks themselves; :meth:`Kit.claim` then plays the worker's part
(the compare-and-set from queued to running that ``jobs.execute`` makes), so
that no worker touches them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bgcb.jobs import TERMINAL, Job, Outcome, State, Status, Update, new_job_id
from bgcb.provider import Backend, load
from bgcb.record import Data, Stored

from . import callbacks
from .config import KitConfig
from .observing import EventRecorder

#: Whether a backend's workers run in the test process, found once per backend instance.
_IN_PROCESS: weakref.WeakKeyDictionary[Backend, bool] = weakref.WeakKeyDictionary()


def open_backend(config: KitConfig) -> Backend:
    """Load the backend the way :func:`bgcb.manager` does (a fresh instance, role "web")."""
    options = config.load_options()
    if config.plugin is not None:
        return Backend.from_plugin(config.backend, config.plugin(), options, role="web")
    return load(config.backend, fresh=True, **options)


def until(predicate: Callable[[], bool], limit: float = 3.0) -> bool:
    """Whether ``predicate()`` came true within ``limit`` seconds (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def first_difference(got: list[Any], expected: list[Any]) -> int:
    """The index where two lists first differ, for messages."""
    return next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), min(len(got), len(expected)))


class Workers:
    """``bgcb worker`` processes for the kit's callbacks, for backends whose workers run apart from the web process.

    Options reach them as ``BGCB_<BACKEND>_<OPTION>`` variables.
    """

    def __init__(self, config: KitConfig) -> None:
        self.env = dict(os.environ)
        prefix = f"BGCB_{config.backend.upper().replace('-', '_')}_"
        for option, value in {**config.load_options(), **config.worker_options}.items():
            if value is not None:  # None: the default applies
                self.env[prefix + option.upper()] = value if isinstance(value, str) else json.dumps(value)
        self.cmd = [sys.executable, "-m", "bgcb.cli", "--backend", config.backend, "worker", callbacks.APP_MODULE]
        self.procs = [subprocess.Popen(self.cmd, env=self.env) for _ in range(config.spawn_workers)]

    def revive(self) -> None:
        """Start a new process for each one that died (after the killed-worker check)."""
        self.procs = [p if p.poll() is None else subprocess.Popen(self.cmd, env=self.env) for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


class Kit:
    """Drives one backend for one check, and cleans up after it."""

    def __init__(
        self,
        backend: Backend,
        config: KitConfig,
        tmp_path: Path,
        processes: Workers | None = None,
        events: EventRecorder | None = None,
    ) -> None:
        self.backend = backend
        self.config = config
        self.tmp_path = tmp_path
        self.processes = processes
        self.events = events or EventRecorder()
        self.submitted: list[str] = []
        self.records: list[str] = []  # made with the hooks

    @property
    def workers(self) -> int | None:
        """The concurrency bound the backend promises, if it says."""
        if self.config.workers:
            return self.config.workers
        for option in ("workers", "concurrency"):
            value = self.backend.options.get(option)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    def has_hook(self, name: str) -> bool:
        return bool(getattr(self.backend.hook, name).get_hookimpls())

    @property
    def in_process(self) -> bool:
        """Whether jobs run in this process (worker threads), so that a worker's observer events are seen here."""
        if self.backend not in _IN_PROCESS:
            _IN_PROCESS[self.backend] = self.value(self.submit("echo", "where"))["where"]["pid"] == os.getpid()
        return _IN_PROCESS[self.backend]

    # -- jobs, through the core --------------------------------------------------------

    def job(self, name: str, arg: Any, **fields: Any) -> Job:
        """A :class:`Job` running the kit callback ``name`` with one argument."""
        progress = name in ("sleep", "report_pid", "progress", "mixed")
        return Job(callback=callbacks.key(name), args=[arg], cache_key=fields.pop("cache_key", ""), progress=progress, **fields)

    def submit(self, name: str, arg: Any, **fields: Any) -> str:
        job_id = self.backend.submit(self.job(name, arg, **fields))
        self.submitted.append(job_id)
        return job_id

    def sleeper(self, seconds: float, **spec: Any) -> str:
        return self.submit("sleep", {"seconds": seconds, **spec})

    def fill(self, seconds: float) -> list[str]:
        """Occupy every worker with a sleeping job and wait until all run."""
        assert self.workers, "the kit needs the backend's concurrency bound (KitConfig.workers)"
        ids = [self.sleeper(seconds) for _ in range(self.workers)]
        for job_id in ids:
            self.wait(job_id, {State.RUNNING}, what="start running while workers are free")
        return ids

    def wait(self, job_id: str, states: Iterable[State] | None = None, timeout: float | None = None, what: str = "end") -> Status:
        """Read the status (``Backend.status``) until the job is in one of ``states`` (default: terminal)."""
        wanted = set(states) if states is not None else set(TERMINAL)
        limit = self.config.job_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        status = self.backend.status(job_id)
        while status.state not in wanted:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} did not {what} within {limit:g} s: its status is still {status.state.value!r} "
                    f"(wanted {sorted(s.value for s in wanted)}). Every job goes queued -> running -> a terminal "
                    "state: the worker loop hands each queued id to jobs.execute; check that workers run and can "
                    f"import {callbacks.APP_MODULE} (see hookspecs.BackendSpec.bgcb_configure, bgcb_run_worker)."
                )
            time.sleep(0.01)
            status = self.backend.status(job_id)
        return status

    def outcome(self, job_id: str, timeout: float | None = None) -> Outcome:
        """Wait for the job to end and return its outcome."""
        status = self.wait(job_id, timeout=timeout)
        outcome = self.backend.result(job_id)
        assert outcome is not None, (
            f"job {job_id} ended {status.state.value!r} but has no outcome: the data the core writes with the final "
            "bgcb_cas must be returned unchanged by bgcb_read (see hookspecs.BackendSpec.bgcb_cas, bgcb_read)."
        )
        return outcome

    def value(self, job_id: str) -> Any:
        outcome = self.outcome(job_id)
        assert outcome.kind == "value", (
            f"the kit callback should have succeeded with a value, got {outcome!r} (see hookspecs.BackendSpec.bgcb_read)"
        )
        return outcome.value

    def drain(self, job_id: str) -> list[Update]:
        """Every update of the job, polled as a browser does until it ends."""
        seen: list[Update] = []
        deadline = time.monotonic() + self.config.job_timeout
        while True:
            snap = self.backend.poll(job_id)
            seen.extend(snap.updates)
            if not snap.status.state.active:
                seen.extend(self.backend.poll(job_id).updates)  # nothing may come after the end
                return seen
            assert time.monotonic() < deadline, (
                f"job {job_id} did not end within {self.config.job_timeout:g} s (see hookspecs.BackendSpec.bgcb_configure)"
            )
            time.sleep(0.005)

    # -- records, through the storage hooks ------------------------------------------------

    def job_text(self, name: str = "echo", arg: Any = "kit record") -> str:
        """A job as JSON text, spaced and in an order the core would not write, so that any rewrite shows."""
        fields = self.job(name, arg).to_json()
        return json.dumps({"kit": "héllo ✓ \u2028", **dict(reversed(list(fields.items())))}, indent=1, ensure_ascii=False)

    def data_text(self, **fields: Any) -> str:
        """The core's status data as JSON text, spaced so that any rewrite shows."""
        data = Data(submitted_at=time.time(), **fields)
        return json.dumps({k: v for k, v in vars(data).items() if v is not None}, indent=2, ensure_ascii=False)

    def enqueue(
        self,
        job: str | None = None,
        data: str | None = None,
        lane: str | None = None,
        priority: int | None = None,
        cap: int | None = None,
    ) -> str:
        """A new queued record, made with bgcb_enqueue (in ``lane`` at ``priority``, or plain); returns its id."""
        job_id = new_job_id()
        self.backend.hook.bgcb_enqueue(
            job_id=job_id,
            job=job or self.job_text(),
            data=data or self.data_text(),
            timeout=None,
            ttl=self.ttl("job_ttl"),
            lane=lane,
            priority=priority,
            cap=cap,
        )
        self.records.append(job_id)
        return job_id

    def claim(self, data: str | None = None) -> str:
        """A running record no worker holds: enqueued, then moved to running by the kit (as ``jobs.execute`` does)."""
        for _ in range(20):
            job_id = self.enqueue()
            if self.cas(job_id, ["queued"], "running", data or self.data_text(started_at=time.time(), worker="kit")):
                return job_id
        raise AssertionError(
            "the kit could not claim a record it had just enqueued (20 tries): bgcb_cas(expect=['queued'], "
            "state='running') must succeed on a record that is still queued (see hookspecs.BackendSpec.bgcb_cas)."
        )

    def read(self, job_id: str, drain: bool = False) -> Stored | None:
        return self.backend.hook.bgcb_read(job_id=job_id, drain=drain)

    def cas(self, job_id: str, expect: list[str], state: str, data: str, ttl: float | None = None) -> bool:
        terminal = state not in ("queued", "running")
        ttl = self.ttl("result_ttl" if terminal else "job_ttl") if ttl is None else ttl
        return bool(self.backend.hook.bgcb_cas(job_id=job_id, expect=expect, state=state, data=data, ttl=ttl))

    def append(self, job_id: str, update: str) -> None:
        self.backend.hook.bgcb_append(job_id=job_id, update=update, ttl=self.ttl("job_ttl"))

    def ended(self, outcome: Outcome | None = None) -> str:
        """Data text of a record ended with ``outcome`` (cancelled by default)."""
        return Data(time.time()).ended(outcome or Outcome.cancelled()).encode()

    def ttl(self, setting: str) -> float:
        return float(self.backend.settings[setting])

    # -- after each check ------------------------------------------------------------------

    def cleanup(self) -> None:
        """End what this check left active, so the next one finds idle workers."""
        for job_id in self.submitted:
            try:
                if self.backend.status(job_id).state.active:
                    self.backend.cancel(job_id)
            except Exception:  # the check's own failure is the one to report
                pass
        for job_id in self.records:
            try:
                self.cas(job_id, ["queued", "running"], "cancelled", self.ended())
            except Exception:
                pass
