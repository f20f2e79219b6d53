"""What the kit watches while a check runs: the job events observers hear, and the backend hooks the core calls.

:class:`EventRecorder` is an observer (registered with
:func:`bgcb.observers.register` for one check); :class:`HookSpy` sees every
hook call through a backend's plugin manager (``pm.add_hookcall_monitoring``).
Both see only this process: the events a worker process fires stay there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bgcb import hookimpl
from bgcb.jobs import Job, Outcome, State
from bgcb.provider import Backend

#: Seconds a late duplicate event is given to show up before the kit counts.
SETTLE = 0.3


class EventRecorder:
    """An observer keeping each job event this process fires, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, str, str | None]] = []  # (event, job_id, finished state)

    def _add(self, event: str, job_id: str, state: str | None = None) -> None:
        with self._lock:
            self.events.append((event, job_id, state))

    @hookimpl
    def bgcb_job_submitted(self, job_id: str, job: Job) -> None:
        self._add("submitted", job_id)

    @hookimpl
    def bgcb_job_started(self, job_id: str, job: Job) -> None:
        self._add("started", job_id)

    @hookimpl
    def bgcb_job_finished(self, job_id: str, job: Job, outcome: Outcome, state: State, seconds: float) -> None:
        self._add("finished", job_id, getattr(state, "value", str(state)))

    @hookimpl
    def bgcb_job_cancelled(self, job_id: str, job: Job) -> None:
        self._add("cancelled", job_id)

    def of(self, job_id: str) -> list[tuple[str, str | None]]:
        with self._lock:
            return [(event, state) for event, jid, state in self.events if jid == job_id]

    def expect(
        self,
        job_id: str,
        state: State,
        *,
        started: bool | None,
        ended_here: bool,
        cancelled: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Check the events of one job that ended in ``state``: each fired once, by one process.

        ``started``: whether this process must have seen ``started`` (None: it
        runs elsewhere; at most one). ``ended_here``: whether the write that
        ended the job was made in this process (a cancel, or a worker thread
        here), so that ``finished`` must be seen exactly once; else at most once.
        """
        deadline = time.monotonic() + timeout
        while ended_here and not any(e == "finished" for e, _ in self.of(job_id)) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(SETTLE)
        seen = self.of(job_id)
        names = [event for event, _ in seen]
        where = f"events seen for job {job_id}: {seen}"
        assert names.count("submitted") == 1, (
            f"{where}: bgcb_job_submitted fires once per job, in the process that submitted it "
            "(see hookspecs.ObserverSpec.bgcb_job_submitted)."
        )
        if started is None:
            assert names.count("started") <= 1, (
                f"{where}: bgcb_job_started fires at most once per job (see hookspecs.ObserverSpec.bgcb_job_started)."
            )
        else:
            assert names.count("started") == int(started), (
                f"{where}: the job ran in this process's workers, so bgcb_job_started fires here "
                f"{'once' if started else 'never (it never started)'} (see hookspecs.ObserverSpec.bgcb_job_started)."
            )
        finished = [s for e, s in seen if e == "finished"]
        if ended_here:
            assert len(finished) == 1, (
                f"{where}: bgcb_job_finished fires exactly once, in the process whose compare-and-set ended the job "
                "(see hookspecs.ObserverSpec.bgcb_job_finished and hookspecs.BackendSpec.bgcb_cas)."
            )
        else:
            assert len(finished) <= 1, (
                f"{where}: bgcb_job_finished fires at most once per process (see hookspecs.ObserverSpec.bgcb_job_finished)."
            )
        assert all(s == state.value for s in finished), (
            f"{where}: bgcb_job_finished must carry the job's terminal state {state.value!r} "
            "(see hookspecs.ObserverSpec.bgcb_job_finished)."
        )
        assert names.count("cancelled") == int(cancelled), (
            f"{where}: bgcb_job_cancelled fires {'once' if cancelled else 'only'} for a job a cancel ended "
            "(see hookspecs.ObserverSpec.bgcb_job_cancelled)."
        )
        if cancelled and finished:
            assert names.index("cancelled") < names.index("finished"), (
                f"{where}: bgcb_job_cancelled comes before bgcb_job_finished (see hookspecs.ObserverSpec.bgcb_job_cancelled)."
            )


class HookSpy:
    """Records every backend hook call made through ``backend.pm`` while in a ``with`` block (any thread)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._undo: Callable[[], None] | None = None

    def __enter__(self) -> HookSpy:
        self._undo = self.backend.pm.add_hookcall_monitoring(self._before, self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None

    def _before(self, hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        with self._lock:
            self.calls.append((hook_name, dict(kwargs)))

    def _after(self, outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        pass

    def with_id(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The calls that were given ``job_id``."""
        with self._lock:
            return [(name, kwargs) for name, kwargs in self.calls if kwargs.get("job_id") == job_id]
