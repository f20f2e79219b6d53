"""The observer hooks that tracing and metrics build on (carry, running, update, deferred) and the
structured event log, on the in-process testing backend with the conformance kit's callbacks."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import bgcb
from bgcb import observers, provider
from bgcb.eventlog import log as event_log
from bgcb.jobs import Job, State
from bgcb_testing import TestingBackend
from bgcb_testing.conformance import callbacks


class Heard:
    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    @bgcb.hookimpl
    def bgcb_job_carry(self, job: Job) -> dict[str, str]:
        return {"traceparent": "00-abc-def-01"}

    @bgcb.hookimpl
    def bgcb_job_started(self, job_id: str, job: Job) -> None:
        self.seen.append(("started", dict(job.carry)))

    @bgcb.hookimpl
    def bgcb_job_running(self, job_id: str, job: Job) -> contextlib.AbstractContextManager[object]:
        @contextlib.contextmanager
        def around() -> Iterator[None]:
            self.seen.append(("enter", job.carry.get("traceparent")))
            try:
                yield
            finally:
                self.seen.append(("exit", None))

        return around()

    @bgcb.hookimpl
    def bgcb_job_update(self, job_id: str, job: Job, update: dict) -> None:
        self.seen.append(("update", update["type"]))

    @bgcb.hookimpl
    def bgcb_job_deferred(self, job_id: str, job: Job, seconds: float, attempt: int) -> None:
        self.seen.append(("deferred", attempt))

    @bgcb.hookimpl
    def bgcb_job_finished(self, job_id, job, outcome, state, seconds) -> None:
        self.seen.append(("finished", state.value))

    @bgcb.hookimpl
    def bgcb_job_ran(self, job_id, job, outcome, state) -> None:
        self.seen.append(("ran", state.value))


@pytest.fixture
def backend() -> Iterator[provider.Backend]:
    made = provider.Backend.from_plugin("heard", TestingBackend(), {"workers": 1})
    yield made
    made.close()


@pytest.fixture
def heard() -> Iterator[Heard]:
    recorder = Heard()
    observers.register(recorder)
    yield recorder
    observers.unregister(recorder)


def _end(backend: provider.Backend, job_id: str) -> State:
    deadline = time.monotonic() + 10
    while (state := backend.status(job_id).state).active:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.01)
    return state


def _kit_job(name: str, arg: object, **fields: object) -> Job:
    return Job(callback=callbacks.key(name), args=[arg], progress=name == "progress", **fields)  # type: ignore[arg-type]


def test_carried_entries_reach_the_worker_and_the_run_is_wrapped(backend, heard) -> None:
    job_id = backend.submit(_kit_job("progress", 2))
    assert _end(backend, job_id) is State.SUCCEEDED
    kinds = [k for k, _ in heard.seen]
    assert kinds == ["started", "enter", "update", "update", "finished", "ran", "exit"], heard.seen
    assert heard.seen[0][1] == {"traceparent": "00-abc-def-01"} and heard.seen[1][1] == "00-abc-def-01"


def test_a_deferred_run_is_heard_and_the_job_ends_once(backend, heard, tmp_path: Path) -> None:
    job_id = backend.submit(_kit_job("later", {"path": str(tmp_path / "runs"), "seconds": 0.05}))
    assert _end(backend, job_id) is State.SUCCEEDED
    kinds = [k for k, _ in heard.seen]
    assert kinds.count("started") == 2 and kinds.count("finished") == 1 and ("deferred", 2) in heard.seen, heard.seen
    assert [v for k, v in heard.seen if k == "ran"] == ["queued", "succeeded"]


def test_the_event_log_writes_one_structured_record_per_transition(backend, caplog) -> None:
    before = event_log.level
    event_log.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.INFO, logger="bgcb.events"):
            job_id = backend.submit(_kit_job("echo", "x", owner="alice"))
            assert _end(backend, job_id) is State.SUCCEEDED
            deadline = time.monotonic() + 5
            while len([r for r in caplog.records if r.name == "bgcb.events"]) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        event_log.setLevel(before)
    records = {r.bgcb_event: r for r in caplog.records if r.name == "bgcb.events"}  # type: ignore[attr-defined]
    assert set(records) == {"submitted", "started", "finished"}, caplog.text
    done = records["finished"]
    assert done.job_id == job_id and done.owner == "alice" and done.outcome == "succeeded"  # type: ignore[attr-defined]
    assert done.run_time >= 0 and records["started"].queue_wait >= 0  # type: ignore[attr-defined]
    assert "of alice" in done.getMessage() and "finished succeeded" in done.getMessage()


def test_the_event_log_is_quiet_by_default(backend, caplog) -> None:
    with caplog.at_level(logging.INFO):  # an app logging everything at INFO still hears nothing from it
        job_id = backend.submit(_kit_job("echo", "x"))
        assert _end(backend, job_id) is State.SUCCEEDED
    assert not [r for r in caplog.records if r.name == "bgcb.events"]
    from bgcb.eventlog import EVENT_LOG

    others = [i for i in observers.manager().hook.bgcb_job_cancelled.get_hookimpls() if i.plugin is not EVENT_LOG]
    assert observers.wanted("bgcb_job_cancelled") == bool(others), "the quiet event log must not make the core load jobs"
