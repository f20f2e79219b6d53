"""bgcb-celery with real parts: our own Redis server, Celery prefork workers in
subprocesses, and Dash apps served over HTTP."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from harness import LiveServer, delete_amqp_queue, rabbitmq_url, start_worker

from bgcb import hookimpl, observers
from bgcb_testing import DashClient
from bgcb_testing.server import wait_for


def _record(redis_client, job: str, prefix: str = "bgcb") -> dict | None:
    """The job's record as the store keeps it: its state and the core's data."""
    from bgcb_celery.layout import Keys, Record

    text = redis_client.get(Keys(prefix).rec(job.split("~")[0]))
    rec = Record.decode(text) if text else None
    return {"state": rec.state, "data": json.loads(rec.data)} if rec else None


def _running(redis_client, job: str, prefix: str = "bgcb") -> dict | None:
    record = _record(redis_client, job, prefix)
    return record if record is not None and record["state"] == "running" else None


def test_simple_job_through_the_generic_task(client: DashClient, worker) -> None:
    run = client.run([("quick-out", "children")], [("quick-btn", "n_clicks", 4)])
    assert run.final.status == 200
    text = run.output("quick-out", "children")
    assert text.startswith("quick 4 pid ")
    assert int(text.split()[-1]) in worker.pool_pids(), "the job ran in a pool process of the worker"
    assert "bgcb.run_job" in worker.output(), "the worker lists the one generic task by its readable name"


def test_finished_jobs_cost_no_broadcast_and_few_commands(client: DashClient, redis_client) -> None:
    def calls() -> dict[str, int]:
        return {k: v["calls"] for k, v in redis_client.info("commandstats").items()}

    for n in range(3):  # warm: every script a job and its polls use is loaded (a load mid-count skews it)
        client.run([("quick-out", "children")], [("quick-btn", "n_clicks", n)], interval=0.1)
    before = calls()
    polls, jobs = 0, 5
    for n in range(jobs):
        polls += client.run([("quick-out", "children")], [("quick-btn", "n_clicks", n)], interval=0.1).polls
    after = calls()
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert "cmdstat_publish" not in delta, f"a control broadcast (revoke) was sent for finished jobs: {delta}"
    # Two state changes per job (claim, end), each one script call; beside them: the queue-place script of a
    # poll that found its job queued (one LLEN each), a retry after a script load, and at most one read script
    # per poll after a job's first (a job seen running is read in one call). The worker reads no job back.
    # The broker is this Redis too: kombu's own calls land in the same counts now and then (a pipeline that
    # checks its scripts with SCRIPT EXISTS); up to two of them are allowed for when that shows.
    scripts = delta.get("cmdstat_evalsha", 0) - delta.get("cmdstat_llen", 0) - delta.get("cmdstat_script|load", 0)
    others = 2 if delta.get("cmdstat_script|exists") else 0
    assert 2 * jobs <= scripts <= 2 * jobs + (polls - jobs) + others, f"{jobs} jobs, {polls} polls: {delta}"
    assert delta.get("cmdstat_hget", 0) + delta.get("cmdstat_hmget", 0) == 0, delta
    # Only polls of a running job pop updates: a finished job that left none is read without LPOP.
    assert delta.get("cmdstat_lpop", 0) <= polls - jobs, f"{polls} polls, {jobs} jobs: {delta}"


def test_callback_in_an_imported_module(client: DashClient) -> None:
    run = client.run([("imported-out", "children")], [("imported-btn", "n_clicks", 2)])
    assert run.output("imported-out", "children") == "imported 2"


def test_unknown_callback_is_a_clear_error(client: DashClient) -> None:
    run = client.run([("webonly-out", "children")], [("webonly-btn", "n_clicks", 1)], timeout=15)
    assert run.final.status == 500
    assert "not registered in this worker" in run.final.text
    assert "bgcb worker" in run.final.text


def test_cancel_running_job_stops_within_one_second(client: DashClient, redis_client, tmp_path: Path) -> None:
    ticks = tmp_path / "ticks"
    outputs, inputs, state = [("ticker-out", "children")], [("ticker-btn", "n_clicks", 1)], [("ticker-file", "value", str(ticks))]
    handles = client.start(outputs, inputs, state)
    wait_for(lambda: ticks.exists() and ticks.read_text().count("\n") >= 3, 15, "the ticker job to run", interval=0.05)
    cancelled_at = time.time()
    resp = client.cancel(("ticker-cancel", "n_clicks"), handles["job"])
    assert resp.status in (200, 204)
    time.sleep(1.0)
    stamps = [float(line) for line in ticks.read_text().split()]
    assert max(stamps) < cancelled_at + 1.0, "the job still ran a second after cancel"
    size = ticks.stat().st_size
    time.sleep(0.5)
    assert ticks.stat().st_size == size, "the job kept running after cancel"
    run = client.run(outputs, inputs, state, handles=handles, timeout=5)
    assert run.final.status == 204, "a cancelled job ends with no update"
    assert _record(redis_client, handles["job"])["state"] == "cancelled"


def test_cancel_queued_job_never_runs(client: DashClient, cel_app, worker, redis_client, tmp_path: Path) -> None:
    blockers = []
    for i in range(2):  # occupy both pool processes
        ticks = tmp_path / f"block{i}"
        handles = client.start(
            [("ticker-out", "children")], [("ticker-btn", "n_clicks", 10 + i)], [("ticker-file", "value", str(ticks))]
        )
        blockers.append((handles, ticks))
    for _handles, ticks in blockers:
        wait_for(lambda t=ticks: t.exists(), 15, "the blocking jobs to run", interval=0.05)
    marker = tmp_path / "marker"
    outputs, inputs, state = (
        [("marker-out", "children")],
        [("marker-btn", "n_clicks", 1)],
        [("marker-file", "value", str(marker))],
    )
    queued = client.start(outputs, inputs, state)
    job = queued["job"].split("~")[0]
    status = cel_app.manager.backend.status(job)
    assert status.state.value == "queued" and status.position == 0, status
    assert client.cancel(("ticker-cancel", "n_clicks"), queued["job"]).status in (200, 204)
    for handles, _ in blockers:
        client.cancel(("ticker-cancel", "n_clicks"), handles["job"])
    # the pool is free again: a queued job that was not cancelled would run now
    follow = client.run([("quick-out", "children")], [("quick-btn", "n_clicks", 99)])
    assert follow.output("quick-out", "children").startswith("quick 99")
    time.sleep(0.5)
    assert not marker.exists(), "a job cancelled while queued must never run"
    assert client.run(outputs, inputs, state, handles=queued, timeout=5).final.status == 204
    assert cel_app.manager.backend.status(job).state.value == "cancelled"


class _Finished:
    """An observer that keeps what bgcb_job_finished was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    @hookimpl
    def bgcb_job_finished(self, job_id, job, outcome, state, seconds) -> None:
        self.seen.append((job_id, job.callback, state.value))


def test_killed_worker_process_is_an_error_within_five_seconds(client: DashClient, redis_client, tmp_path: Path) -> None:
    ticks = tmp_path / "ticks"
    outputs, inputs, state = [("ticker-out", "children")], [("ticker-btn", "n_clicks", 3)], [("ticker-file", "value", str(ticks))]
    handles = client.start(outputs, inputs, state)
    record = wait_for(lambda: _running(redis_client, handles["job"]), 15, "the job to start", interval=0.05)
    pid = int(record["data"]["worker"].rsplit(":", 1)[1])
    finished = _Finished()
    observers.register(finished)
    try:
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        run = client.run(outputs, inputs, state, handles=handles, interval=0.25, timeout=10)
        seen = time.monotonic() - killed
    finally:
        observers.unregister(finished)
    print(f"worker process SIGKILL mid-job: the page shows the error {seen:.2f} s after the kill")
    assert run.final.status == 500
    assert "stopped without finishing" in run.final.text
    assert seen <= 5.0, f"the browser saw the error {seen:.1f} s after the kill"
    job_id = handles["job"].split("~")[0]
    job = json.loads(redis_client.get(f"bgcb:payload:{job_id}"))
    assert finished.seen == [(job_id, job["callback"], "lost")], "observers hear of the lost job once, with the real job"


def test_killed_worker_host_loses_no_job(redis_server, redis_client) -> None:
    """SIGKILL a whole worker (main process and pool): its running job becomes an
    error; a job submitted meanwhile waits in the queue and runs on the next worker."""
    import kill_app

    first = start_worker("kill_app", {}, concurrency=1)
    server = LiveServer(kill_app.app)
    try:
        client = DashClient.http(server.url).load()
        long_out, long_in = [("k-out", "children")], [("k-btn", "n_clicks", 1)]
        handles = client.start(long_out, long_in)
        wait_for(lambda: _running(redis_client, handles["job"], "bgcb-kill"), 15, "the long job to start", interval=0.05)
        os.killpg(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        first.proc.wait(5)
        quick = client.start([("k-quick-out", "children")], [("k-quick", "n_clicks", 7)])
        run = client.run(long_out, long_in, handles=handles, interval=0.25, timeout=10)
        assert run.final.status == 500 and "stopped without finishing" in run.final.text
        print(f"whole Celery worker SIGKILL mid-job: the page shows the error {time.monotonic() - killed:.2f} s after the kill")
        assert time.monotonic() - killed <= 5.0
        second = start_worker("kill_app", {}, concurrency=1)
        try:
            done = client.run([("k-quick-out", "children")], [("k-quick", "n_clicks", 7)], handles=quick, timeout=20)
            assert done.output("k-quick-out", "children") == "quick 7"
            print(f"the job queued meanwhile ran on the next worker, {time.monotonic() - killed:.2f} s after the kill")
        finally:
            second.stop()
    finally:
        server.stop()
        first.stop()


def test_the_worker_logs_each_outcome_with_the_traceback_of_errors(client: DashClient, worker) -> None:
    """Celery's own line says only that the task ran ("succeeded"); bgcb logs how the job ended."""
    failed = client.run([("boom-out", "children")], [("boom-btn", "n_clicks", 9)], timeout=20)
    assert failed.final.status == 500 and "boom 9" in failed.final.text
    client.run([("quick-out", "children")], [("quick-btn", "n_clicks", 9)], timeout=20)
    odd = client.run([("odd-out", "children")], [("odd-btn", "n_clicks", 9)], timeout=20)
    assert odd.final.status == 500 and "cannot be sent to the browser as JSON" in odd.final.text
    late = client.run([("hang-out", "children")], [("hang-btn", "n_clicks", 9)], interval=0.2, timeout=20)
    assert late.final.status == 500 and "timed out" in late.final.text
    wanted = ("(boom-out.children) failed", "(quick-out.children) succeeded", "(odd-out.children) failed")

    def logged() -> str | None:
        text = worker.output()
        timed_out = "(hang-out.children) timed out" in text or "timed out and was stopped" in text
        return text if timed_out and all(line in text for line in wanted) else None

    text = wait_for(logged, 10, "the worker to log every outcome (an error, a success, a value no encoder takes, a timeout)")
    assert "ValueError: boom 9" in text and "Traceback" in text
    assert "'job failed'" in text, "Celery's line carries how the job ended"


def test_timeout_stops_a_job_that_never_yields(client: DashClient) -> None:
    started = time.monotonic()
    run = client.run([("hang-out", "children")], [("hang-btn", "n_clicks", 1)], interval=0.2, timeout=15)
    assert run.final.status == 500
    assert "timed out" in run.final.text
    assert time.monotonic() - started < 6


def test_callback_in_a_pages_module(redis_server, pages_worker) -> None:
    import pages_app

    server = LiveServer(pages_app.app)
    try:
        client = DashClient.http(server.url).load()
        run = client.run([("page-out", "children")], [("page-btn", "n_clicks", 5)])
        assert run.final.status == 200
        assert run.output("page-out", "children") == "page 5"
    finally:
        server.stop()


def test_unreachable_redis_is_a_clear_error_and_the_app_keeps_serving() -> None:
    from dash import Dash, Input, Output, html
    from harness import free_port

    import bgcb

    url = f"redis://127.0.0.1:{free_port()}/0"
    manager = bgcb.manager("celery", result_url=url, broker_url=url, prefix="bgcb-down", queue="bgcb-down")
    app = Dash(__name__, background_callback_manager=manager)
    app.layout = html.Div([html.Button(id="down-btn"), html.Div(id="down-out")])

    @app.server.errorhandler(Exception)
    def _show(exc):
        return f"{type(exc).__name__}: {exc}", 500

    @app.callback(Output("down-out", "children"), Input("down-btn", "n_clicks"), background=True, prevent_initial_call=True)
    def down(n):
        return n

    client = DashClient.wsgi(app).load()
    resp = client.request([("down-out", "children")], [("down-btn", "n_clicks", 1)])
    assert resp.status == 500
    assert "cannot reach the Redis job store at " + url in resp.text
    assert "BGCB_CELERY_RESULT_URL" in resp.text
    assert client._get("/").status == 200, "the app keeps serving pages"
    manager.close()


def test_redis_restart_with_jobs_queued_and_running(client: DashClient, cel_server, redis_server, redis_client) -> None:
    outputs = [("stepper-out", "children")]
    users = [DashClient.http(cel_server.url).load() for _ in range(4)]
    values = [f"v{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    handles = [
        u.start(outputs, [("stepper-btn", "n_clicks", 1)], [("stepper-in", "value", v)])
        for u, v in zip(users, values, strict=True)
    ]

    def states() -> list[str]:
        return [(_record(redis_client, h["job"]) or {}).get("state", "gone") for h in handles]

    # Any two: a pool process replaced after an earlier test's hard stop may join a moment late, and
    # Celery may then have handed the second job to the busy process.
    wait_for(lambda: states().count("running") == 2 and "queued" in states(), 15, "two jobs running, one queued", interval=0.05)
    now = states()
    assert "queued" in now, f"a job is still queued when Redis goes down ({now})"
    first = now.index("running")

    during: list = []

    def poll_during_outage() -> None:
        time.sleep(0.3)
        during.append(
            users[first].poll(handles[first], outputs, [("stepper-btn", "n_clicks", 1)], [("stepper-in", "value", values[first])])
        )
        during.append(client._get("/"))

    poller = threading.Thread(target=poll_during_outage)
    poller.start()
    restarted = time.monotonic()
    redis_server.restart(down_for=1.0)
    poller.join(10)
    assert during[0].status == 200 and "response" not in (during[0].body or {}), "a poll during the outage keeps the job pending"
    assert during[1].status == 200, "the app keeps serving while Redis is down"

    results: list = [None] * 4

    def finish(i: int) -> None:
        run = users[i].run(outputs, [("stepper-btn", "n_clicks", 1)], [("stepper-in", "value", values[i])], handles=handles[i])
        results[i] = (run.final.status, run.output("stepper-out", "children"))

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [(200, f"stepper {v}") for v in values]
    seconds = time.monotonic() - restarted
    print(f"Redis down 1 s with 2 jobs running and 2 queued: all 4 answered {seconds:.2f} s after it went down")


@pytest.fixture(scope="module")
def rabbit(redis_server):
    url = rabbitmq_url()
    if url is None:
        pytest.skip("RabbitMQ is not reachable on 127.0.0.1:5672 (set BGCB_TEST_AMQP_URL)")
    queue = f"bgcb-test-{uuid.uuid4().hex[:8]}"
    os.environ["RABBIT_BROKER_URL"] = url
    os.environ["RABBIT_QUEUE"] = queue
    proc = start_worker("rabbit_app", {"RABBIT_BROKER_URL": url, "RABBIT_QUEUE": queue})
    import rabbit_app

    server = LiveServer(rabbit_app.app)
    yield server
    server.stop()
    proc.stop()
    delete_amqp_queue(url, queue)


def test_rabbitmq_as_broker(rabbit) -> None:
    client = DashClient.http(rabbit.url).load()
    run = client.run([("r-out", "children")], [("r-btn", "n_clicks", 3)])
    assert run.output("r-out", "children") == "rabbit 3"
    outputs, inputs = [("r-slow-out", "children")], [("r-slow", "n_clicks", 1)]
    handles = client.start(outputs, inputs)
    wait_for(lambda: client.poll(handles, outputs, inputs).body.get("progress"), 15, "progress over RabbitMQ", interval=0.05)
    client.cancel(("r-cancel", "n_clicks"), handles["job"])
    assert client.run(outputs, inputs, handles=handles, timeout=5).final.status == 204
