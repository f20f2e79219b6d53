"""The core's job lifecycle on the in-process backend: ids, invariants, events once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

import bgcb
from bgcb import observers, provider
from bgcb.jobs import Job, State
from bgcb_testing.backend import TestingBackend


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    @bgcb.hookimpl
    def bgcb_job_submitted(self, job_id, job):
        self.seen.append(("submitted", job_id, job.callback))

    @bgcb.hookimpl
    def bgcb_job_started(self, job_id, job):
        self.seen.append(("started", job_id, job.callback))

    @bgcb.hookimpl
    def bgcb_job_finished(self, job_id, job, outcome, state, seconds):
        self.seen.append((f"finished:{state.value}", job_id, job.callback))

    @bgcb.hookimpl
    def bgcb_job_cancelled(self, job_id, job):
        self.seen.append(("cancelled", job_id, job.callback))

    def of(self, job_id: str) -> list[str]:
        return [kind for kind, jid, _ in self.seen if jid == job_id]


class Held(TestingBackend):
    """The testing backend whose workers start only when told: jobs stay queued meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def _work(self, jobs) -> None:
        self.go.wait()
        super()._work(jobs)


@pytest.fixture
def events() -> Iterator[Events]:
    recorder = Events()
    observers.register(recorder)
    yield recorder
    observers.unregister(recorder)


@pytest.fixture
def held() -> Iterator[provider.Backend]:
    backend = provider.Backend.from_plugin("held", Held(), {"workers": 1})
    yield backend
    backend.plugin.go.set()
    backend.close()


def _job(**kw) -> Job:
    return Job(**{"callback": "f" * 64, "args": [], **kw})


@pytest.mark.parametrize("forged", ["", "1234", "../../etc/passwd", "a" * 23 + "/", "x" * 200, "cached:abc", "é" * 24])
def test_forged_handles_never_reach_the_backend(held, forged: str) -> None:
    calls: list[str] = []
    held.pm.add_hookcall_monitoring(lambda name, impls, kw: calls.append(name), lambda *a: None)
    assert held.poll(forged).status.state is State.UNKNOWN
    assert held.status(forged).state is State.UNKNOWN
    assert held.cancel(forged) is False and held.lost(forged, "x") is False and held.execute(forged) is None
    assert calls == []


def test_well_formed_unknown_id_is_unknown(held) -> None:
    assert held.poll(bgcb.new_job_id()).status.state is State.UNKNOWN
    assert held.cancel(bgcb.new_job_id()) is False


def test_job_is_stored_as_json_text(held) -> None:
    job_id = held.submit(_job(args={"n": 1}, timeout=3.0))
    stored = held.hook.bgcb_read(job_id=job_id, drain=False)
    assert stored.state == "queued" and json.loads(stored.data)["timeout"] == 3.0
    assert json.loads(held.hook.bgcb_load(job_id=job_id))["args"] == {"n": 1}
    with pytest.raises(TypeError):
        held.submit(_job(args={"n": object()}))


def test_deeply_nested_inputs_are_stored_as_given(held) -> None:
    deep: list = []
    inner = deep
    for _ in range(900):  # JSON that Flask and Dash accept; a recursive copy of it would not survive
        inner.append([])
        inner = inner[0]
    job_id = held.submit(Job(callback="k", args=[deep]))
    assert Job.from_json(json.loads(held.hook.bgcb_load(job_id=job_id))).args == [deep]


def test_cancel_is_idempotent_and_final(held, events) -> None:
    job_id = held.submit(_job())
    assert held.status(job_id).position == 0
    assert held.cancel(job_id) is True
    assert held.cancel(job_id) is False
    assert held.lost(job_id, "gone") is False
    held.plugin.go.set()
    time.sleep(0.2)
    assert held.status(job_id).state is State.CANCELLED, "a cancelled queued job never starts"
    assert events.of(job_id) == ["submitted", "cancelled", "finished:cancelled"]


def test_a_job_cancelled_while_it_runs_ends_cancelled_whatever_its_callback_returned(held, events) -> None:
    job_id = held.submit(_job())
    started = held.start(job_id)
    assert started is not None and held.status(job_id).state is State.RUNNING
    assert events.of(job_id) == ["submitted"], "observers hear of the start when it runs"
    assert held.cancel(job_id) is True
    outcome = held.run(started)  # the callback is not registered here: the runner's outcome is a failure
    assert outcome.kind == "cancelled" and held.status(job_id).state is State.CANCELLED
    assert [e for e in events.of(job_id) if e.startswith("finished")] == ["finished:cancelled"], "told once, as it stood"


class Stopping(Held):
    """Held, recording the hard stops the core asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.stops: list[tuple[str, float]] = []

    @bgcb.hookimpl
    def bgcb_stop(self, job_id: str, after: float) -> None:
        self.stops.append((job_id, after))


@pytest.mark.parametrize("cooperative", [True, False])
def test_a_cancel_stops_at_once_unless_the_callback_reports_progress(cooperative: bool) -> None:
    """A callback that reports progress gets cancel_grace to stop by itself; any other is stopped now."""
    from bgcb.record import Data

    backend = provider.Backend.from_plugin("stopping", Stopping(), {"workers": 1, "cancel_grace": 2.5})
    try:
        job_id = backend.submit(_job(progress=cooperative))
        running = Data(time.time(), time.time(), worker="here:1", cooperative=cooperative or None).encode()
        assert backend.hook.bgcb_cas(job_id=job_id, expect=["queued"], state="running", data=running, ttl=60)
        assert backend.cancel(job_id) is True
        assert backend.plugin.stops == [(job_id, 2.5 if cooperative else 0.0)]
    finally:
        backend.plugin.go.set()
        backend.close()


class Unserved(Held):
    """Held, reporting that no worker serves its queue."""

    @bgcb.hookimpl
    def bgcb_read(self, job_id: str, drain: bool):
        stored = super().bgcb_read(job_id, drain)
        if stored is not None and stored.state == "queued":
            stored.alive, stored.reason = False, "nobody serves queue 'q'. Start `worker q`"
        return stored


def test_a_job_no_worker_serves_fails_after_no_worker_after_saying_what_to_start(caplog) -> None:
    backend = provider.Backend.from_plugin("unserved", Unserved(), {"workers": 1, "no_worker_after": 0.3})
    try:
        job_id = backend.submit(_job())
        assert backend.poll(job_id).status.state is State.QUEUED, "a moment without workers is no reason to fail"
        time.sleep(0.4)
        snap = backend.poll(job_id)
        assert snap.status.state is State.LOST
        assert "waited 0 s in the queue and nobody serves queue 'q'. Start `worker q`" in snap.outcome.error["msg"]
        assert "no worker came" in caplog.text, "the web log says it too"
    finally:
        backend.plugin.go.set()
        backend.close()


def test_lost_job_is_told_once_with_the_real_job(held, events) -> None:
    job_id = held.submit(_job())
    assert held.lost(job_id, "worker 42 killed by SIGKILL") is True
    assert held.lost(job_id, "again") is False
    snap = held.poll(job_id)
    assert snap.status.state is State.LOST and "SIGKILL" in snap.outcome.error["msg"]
    assert [e for e in events.seen if e[1] == job_id][-1] == ("finished:lost", job_id, "f" * 64)
    assert events.of(job_id).count("finished:lost") == 1


def test_reject_fails_the_job_with_the_reason(held) -> None:
    job_id = held.submit(_job())
    assert held.reject(job_id, "the app failed to import: SyntaxError") is True
    outcome = held.result(job_id)
    assert outcome.kind == "error" and "SyntaxError" in outcome.error["msg"]


def test_overdue_running_job_times_out_at_poll(held, events) -> None:
    job_id = held.submit(_job(timeout=0.01))
    # claim by hand, as a worker whose callback never reports back would
    data = json.loads(held.hook.bgcb_read(job_id=job_id, drain=False).data)
    data.update(started_at=time.time() - 5, deadline=time.time() - 4)
    assert held.hook.bgcb_cas(job_id=job_id, expect=["queued"], state="running", data=json.dumps(data), ttl=60)
    snap = held.poll(job_id)
    assert snap.status.state is State.TIMED_OUT and "timed out" in snap.outcome.error["msg"]
    assert events.of(job_id).count("finished:timed_out") == 1


def test_only_successes_are_cached() -> None:
    backend = provider.load("testing", fresh=True)
    try:
        plugin = backend.plugin
        assert plugin.bgcb_cache_get("k") is None
        failing = backend.submit(Job(callback="0" * 64, args=[], cache=True, cache_key="k"))  # unregistered: fails
        deadline = time.time() + 5
        while backend.status(failing).state.active and time.time() < deadline:
            time.sleep(0.01)
        assert backend.status(failing).state is State.FAILED
        assert backend.cached("k") is None, "a failed outcome must never be reused"
    finally:
        backend.close()


@pytest.mark.parametrize("payload", ["{not json", '{"foo": 1}', "[1, 2]", '"text"'])
def test_a_job_whose_record_is_corrupt_fails_alone_and_the_worker_serves_on(payload: str) -> None:
    """A job text bgcb did not write (planted, or damaged on disk) fails that job with a clear message;
    the worker thread that took it goes on to the next job (it crashed before)."""
    backend = provider.Backend.from_plugin("corrupt", TestingBackend(), {"workers": 1})
    try:
        bad = bgcb.new_job_id()
        data = json.dumps({"submitted_at": time.time()})
        backend.hook.bgcb_enqueue(job_id=bad, job=payload, data=data, timeout=None, ttl=60, lane=None, priority=None, cap=None)
        good = backend.submit(Job(callback="f" * 64, args=[]))
        deadline = time.monotonic() + 10
        while backend.status(good).state.active or backend.status(bad).state.active:
            assert time.monotonic() < deadline, "the worker stopped serving"
            time.sleep(0.01)
        outcome = backend.result(bad)
        assert backend.status(bad).state is State.FAILED and "it is corrupt" in outcome.error["msg"], outcome
        assert backend.status(good).state is State.FAILED and "not registered" in backend.result(good).error["msg"]
    finally:
        backend.close()


def test_an_unreadable_cached_outcome_is_a_miss() -> None:
    backend = provider.Backend.from_plugin("cachejunk", TestingBackend(), {"workers": 1})
    try:
        for junk in ("not json", '{"no": "kind"}', "[1]"):
            backend.hook.bgcb_cache_put(cache_key="k", outcome=junk, ttl=60)
            assert backend.cached("k") is None
    finally:
        backend.close()
