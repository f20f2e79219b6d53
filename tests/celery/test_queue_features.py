"""Jobs run again later and owners' running limits on real Celery workers (``apps/queue_app.py``).

Each test reads the ``name event time`` lines its callbacks log, so the order in which things
happened on the workers is checked, not guessed from the browser's polls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import LiveServer, Worker, start_worker

from bgcb.jobs import State
from bgcb_testing import DashClient
from bgcb_testing.server import wait_for


@pytest.fixture(scope="module")
def queue_app(redis_server):
    import queue_app

    return queue_app


@pytest.fixture(scope="module")
def qa_server(queue_app) -> Iterator[LiveServer]:
    server = LiveServer(queue_app.app)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def one_worker(redis_server) -> Iterator[Worker]:
    """ONE pool process on the retry queue: a job waiting to run again must not hold it."""
    proc = start_worker("queue_app", {"BGCB_CELERY_QUEUE": "bgcb-qr"}, concurrency=1, celery_app="queue_app:retry_celery")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def two_workers(redis_server) -> Iterator[Worker]:
    proc = start_worker("queue_app", {"BGCB_CELERY_QUEUE": "bgcb-qc"}, concurrency=2, celery_app="queue_app:caps_celery")
    yield proc
    proc.stop()


def _events(path: Path) -> dict[tuple[str, str], list[float]]:
    """(name, event) -> times, in order."""
    found: dict[tuple[str, str], list[float]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        name, event, when = line.split()
        found.setdefault((name, event), []).append(float(when))
    return found


def _state(path: Path, name: str) -> list[tuple[str, str, str]]:
    return [("qa-log", "value", str(path)), ("qa-name", "value", name)]


def _data(redis_client, prefix: str, job: str) -> dict:
    from bgcb_celery.layout import Keys, Record

    rec = Record.decode(redis_client.get(Keys(prefix).rec(job.split("~")[0])))
    assert rec is not None
    return json.loads(rec.data)


def test_a_job_waiting_to_run_again_frees_its_worker(queue_app, qa_server, one_worker, redis_client, tmp_path) -> None:
    """retry_later(1) on the first run: with one pool process, a job submitted right after runs and ends
    while the first waits (as attempt 2, with no place in the queue); then the first runs again and succeeds."""
    client = DashClient.http(qa_server.url).load()
    log = tmp_path / "log"
    later_out, later_in = [("later-out", "children")], [("later-btn", "n_clicks", 1)]
    later = client.start(later_out, later_in, _state(log, "later"))
    quick = client.start([("quick-out", "children")], [("quick-btn", "n_clicks", 1)], _state(log, "quick"))
    jobs = queue_app.later_manager.backend
    seen: list = []

    def waiting() -> bool:
        status = jobs.status(later["job"].split("~")[0])
        seen.append(status)
        return status.state is State.QUEUED and status.retry_at is not None

    wait_for(waiting, 15, "the first job to wait to run again", interval=0.05)
    assert seen[-1].position is None and seen[-1].attempt == 2, seen[-1]
    done = client.run([("quick-out", "children")], [("quick-btn", "n_clicks", 1)], _state(log, "quick"), handles=quick)
    assert done.output("quick-out", "children") == "quick done"
    run = client.run(later_out, later_in, _state(log, "later"), handles=later, timeout=20)
    assert run.output("later-out", "children") == "later done"
    events = _events(log)
    assert len(events[("later", "start")]) == 2 and len(events[("later", "deferred")]) == 1
    assert events[("quick", "end")][0] < events[("later", "start")][1], f"the second job waited for the first: {events}"
    assert events[("later", "start")][1] - events[("later", "deferred")][0] >= 0.9, "run again only after the delay"
    # The core counts the runs of a job that retries failures only (Lifecycle._attempt saves a read per
    # job): after its second run, a retry_later job's record no longer says 2.


def test_a_failing_job_is_retried_until_it_succeeds(qa_server, one_worker, redis_client, tmp_path) -> None:
    client = DashClient.http(qa_server.url).load()
    log = tmp_path / "log"
    run = client.run([("flaky-out", "children")], [("flaky-btn", "n_clicks", 1)], _state(log, "flaky"), timeout=20)
    assert run.final.status == 200, run.final.text
    assert run.output("flaky-out", "children") == "flaky done after 3 runs"
    assert len(_events(log)[("flaky", "start")]) == 3
    assert _data(redis_client, "bgcb-qr", run.handles["job"])["attempt"] == 3


def _concurrent(events: dict[tuple[str, str], list[float]], prefix: str) -> int:
    """The most jobs whose name starts with ``prefix`` that ran at once."""
    edges = []
    for (name, event), times in events.items():
        if name.startswith(prefix) and event in ("start", "end"):
            edges += [(t, 1 if event == "start" else -1) for t in times]
    most = now = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        now += step
        most = max(most, now)
    return most


def test_an_owners_running_limit_holds_and_others_go_first(qa_server, two_workers, tmp_path) -> None:
    """Owner a (at most one running job) submits three slow jobs, b one: never two of a's at once,
    and b's starts on the second worker without waiting for a's."""
    log = tmp_path / "log"
    alice = DashClient.http(qa_server.url, headers={"X-User": "a"}).load()
    bob = DashClient.http(qa_server.url, headers={"X-User": "b"}).load()
    out = [("slow-out", "children")]
    handles = [(alice, f"a{i}", alice.start(out, [("slow-btn", "n_clicks", i)], _state(log, f"a{i}"))) for i in range(3)]
    handles.append((bob, "b0", bob.start(out, [("slow-btn", "n_clicks", 9)], _state(log, "b0"))))
    for client, name, started in handles:
        run = client.run(out, [("slow-btn", "n_clicks", 1)], _state(log, name), handles=started, timeout=30)
        assert run.output("slow-out", "children") == f"{name} done"
    events = _events(log)
    assert _concurrent(events, "a") == 1, f"two of a's jobs ran at once: {events}"
    first_a_end = min(events[(f"a{i}", "end")][0] for i in range(3))
    assert events[("b0", "start")][0] < first_a_end, f"b's job waited for a's: {events}"


def test_a_deferred_job_gives_its_owners_slot_back_and_arrives_in_the_order(qa_server, two_workers, tmp_path) -> None:
    """Owner c's job runs again 1.5 s later: while it waits, c's next job runs (the running limit counts
    only running jobs); then it comes back through the core's order and succeeds."""
    log = tmp_path / "log"
    carol = DashClient.http(qa_server.url, headers={"X-User": "c"}).load()
    later = carol.start([("clater-out", "children")], [("clater-btn", "n_clicks", 1)], _state(log, "clater"))
    wait_for(lambda: ("clater", "deferred") in _events(log), 15, "the job to defer itself", interval=0.05)
    slow = carol.start([("slow-out", "children")], [("slow-btn", "n_clicks", 1)], _state(log, "c-slow"))
    run = carol.run([("clater-out", "children")], [("clater-btn", "n_clicks", 1)], _state(log, "clater"), handles=later)
    assert run.output("clater-out", "children") == "clater done"
    carol.run([("slow-out", "children")], [("slow-btn", "n_clicks", 1)], _state(log, "c-slow"), handles=slow)
    events = _events(log)
    assert events[("c-slow", "start")][0] < events[("clater", "start")][1], f"the deferred job held c's slot: {events}"
    assert _concurrent(events, "c") == 1, f"two of c's jobs ran at once: {events}"
