"""The observer and the queue gauges in one process, on the in-process testing backend: exact values."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import bgcb_prometheus
from bgcb import observers, provider
from bgcb.jobs import Job, State
from bgcb_prometheus import BackendGauges, PrometheusObserver, label
from bgcb_testing import TestingBackend
from bgcb_testing.conformance import callbacks
from bgcb_testing.server import wait_for

FINISHED = "bgcb_jobs_finished_total"


@pytest.fixture
def backend() -> Iterator[provider.Backend]:
    made = provider.Backend.from_plugin("promtest", TestingBackend(), {"workers": 1})
    yield made
    made.close()


@pytest.fixture
def metrics() -> Iterator[PrometheusObserver]:
    """An observer of its own registry, so that the values are this test's alone."""
    observer = PrometheusObserver(CollectorRegistry())
    observers.register(observer)
    yield observer
    observers.unregister(observer)


def kit_job(name: str, arg: object) -> Job:
    outputs = {"id": f"{callbacks.PREFIX}{name}-out", "property": "children"}
    progress = name in ("sleep", "progress")
    return Job(callback=callbacks.key(name), args=[arg], progress=progress, context={"outputs_list": outputs})


def get(observer: PrometheusObserver, name: str, **labels: str) -> float:
    assert observer.registry is not None
    return observer.registry.get_sample_value(name, labels) or 0.0


def end(backend: provider.Backend, job_id: str) -> State:
    return wait_for(lambda: (s := backend.status(job_id).state).terminal and s, 10, f"job {job_id} to end")


def test_each_outcome_is_counted_once_with_its_run_time(backend, metrics, tmp_path: Path) -> None:
    echo, fail, sleep = (f"{callbacks.PREFIX}{n}-out.children" for n in ("echo", "fail", "sleep"))
    ok = [backend.submit(kit_job("echo", i)) for i in range(3)]
    bad = [backend.submit(kit_job("fail", "no")) for _ in range(2)]
    assert [end(backend, j) for j in ok + bad] == [State.SUCCEEDED] * 3 + [State.FAILED] * 2
    running = backend.submit(kit_job("sleep", {"seconds": 30, "tick": 0.02}))
    wait_for(lambda: backend.status(running).state is State.RUNNING, 10, "the sleep job to start")
    queued = backend.submit(kit_job("sleep", {"seconds": 30}))  # one worker: it waits behind the first
    assert backend.cancel(queued) and backend.cancel(running)
    lost = backend.submit(kit_job("sleep", {"seconds": 30, "tick": 0.02}))
    wait_for(lambda: backend.status(lost).state is State.RUNNING, 10, "the third sleep job to start")
    time.sleep(0.05)
    assert backend.lost(lost, "its worker died (a test)")
    deferred = backend.submit(kit_job("later", {"path": str(tmp_path / "runs"), "seconds": 0.05}))
    assert end(backend, deferred) is State.SUCCEEDED
    wait_for(lambda: get(metrics, FINISHED, callback=sleep, outcome="lost") == 1, 10, "the lost job's event")

    assert get(metrics, "bgcb_jobs_submitted_total", callback=echo) == 3
    assert get(metrics, "bgcb_jobs_submitted_total", callback=sleep) == 3
    assert get(metrics, FINISHED, callback=echo, outcome="succeeded") == 3
    assert get(metrics, FINISHED, callback=fail, outcome="failed") == 2
    assert get(metrics, FINISHED, callback=sleep, outcome="cancelled") == 2
    assert get(metrics, FINISHED, callback=sleep, outcome="lost") == 1
    assert get(metrics, "bgcb_jobs_deferred_total", callback=f"{callbacks.PREFIX}later-out.children") == 1
    # Runs: every started run waited in the queue; the later job ran twice.
    assert get(metrics, "bgcb_job_queue_wait_seconds_count", callback=echo) == 3
    assert get(metrics, "bgcb_job_queue_wait_seconds_count", callback=f"{callbacks.PREFIX}later-out.children") == 2
    # The cancelled job that never started is counted as finished, not in the run-time histogram.
    assert get(metrics, "bgcb_job_run_seconds_count", callback=sleep, outcome="cancelled") == 1
    assert get(metrics, "bgcb_job_run_seconds_count", callback=echo, outcome="succeeded") == 3
    assert get(metrics, "bgcb_job_run_seconds_sum", callback=sleep, outcome="lost") >= 0.05


def test_the_entry_point_observer_is_registered_in_every_process() -> None:
    names = {name for name, _ in observers.manager().list_name_plugin()}
    assert "prometheus" in names
    assert observers.manager().get_plugin("prometheus") is bgcb_prometheus.OBSERVER


def test_queue_gauges_read_the_loaded_backends_once_per_store(backend) -> None:
    gauges = BackendGauges(backends=lambda: [backend, backend])  # two managers' view of one store
    registry = CollectorRegistry()
    registry.register(gauges)
    blocker = backend.submit(kit_job("sleep", {"seconds": 30, "tick": 0.02}))
    wait_for(lambda: backend.status(blocker).state is State.RUNNING, 10, "the blocking job to start")
    waiting = [backend.submit(kit_job("echo", i)) for i in range(3)]
    try:
        assert registry.get_sample_value("bgcb_jobs_queued", {"backend": "promtest"}) == 3
        assert registry.get_sample_value("bgcb_jobs_running", {"backend": "promtest"}) == 1
        without = CollectorRegistry()
        without.register(BackendGauges(backends=lambda: [backend], running=False))
        assert without.get_sample_value("bgcb_jobs_running", {"backend": "promtest"}) is None
    finally:
        for job_id in [blocker, *waiting]:
            backend.cancel(job_id)
    wait_for(lambda: registry.get_sample_value("bgcb_jobs_running", {"backend": "promtest"}) == 0, 10, "no running job")
    assert registry.get_sample_value("bgcb_jobs_queued", {"backend": "promtest"}) == 0


def test_a_store_that_fails_leaves_its_gauges_out_but_the_scrape_answers(backend, caplog) -> None:
    class Broken:
        name = "broken"

        def describe(self) -> dict[str, str]:
            raise ConnectionError("store down")

    registry = CollectorRegistry()
    registry.register(BackendGauges(backends=lambda: [Broken(), backend]))  # type: ignore[list-item]
    text = generate_latest(registry).decode()
    assert 'bgcb_jobs_queued{backend="promtest"} 0.0' in text and "broken" not in text
    assert "could not read the queue of backend 'broken'" in caplog.text


def test_the_process_gauges_cover_backends_loaded_by_managers() -> None:
    shared = provider.load("testing", workers=1)
    assert shared in provider.loaded()
    text = bgcb_prometheus.render()[0].decode()
    assert 'bgcb_jobs_queued{backend="testing"}' in text and 'bgcb_jobs_running{backend="testing"}' in text
    content_type = bgcb_prometheus.render("application/openmetrics-text; version=1.0.0")[1]
    assert content_type.startswith("application/openmetrics-text")


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({"id": "graph", "property": "figure"}, "graph.figure"),
        ([{"id": {"type": "row", "index": 3}, "property": "value"}], "{'index': '*', 'type': 'row'}.value"),
        (
            [
                [
                    {"id": {"type": "row", "index": 1}, "property": "value"},
                    {"id": {"type": "row", "index": 2}, "property": "value"},
                ]
            ],
            "{'index': '*', 'type': 'row'}.value + {'index': '*', 'type': 'row'}.value",
        ),
        (None, "unknown"),
    ],
)
def test_the_callback_label_is_short_and_bounded(outputs: object, expected: str) -> None:
    context = {"outputs_list": outputs} if outputs is not None else {}
    assert label(Job(callback="", args=None, context=context)) == expected


def test_a_long_label_is_cut() -> None:
    many = [{"id": f"output-number-{i}", "property": "children"} for i in range(20)]
    text = label(Job(callback="k", args=None, context={"outputs_list": many}))
    assert len(text) == 120 and text.endswith("...")
