"""The acceptance test: gunicorn with two web workers, a separate ``bgcb worker`` (diskcache pool or Celery prefork),
one ``PROMETHEUS_MULTIPROC_DIR``: jobs of known outcomes driven over HTTP give exactly those counts on ``/metrics``
(whichever web worker answers the scrape) and on the worker's ``--metrics-port``."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prom_harness import BIN, Deployment, scrape, serve, value, wait_for

OK, BOOM, SLOW, HANG = "ok-out.children", "boom-out.children", "slow-out.children", "hang-out.children"
FINISHED = "bgcb_jobs_finished_total"
N_OK, N_BOOM = 5, 2


@contextlib.contextmanager
def _celery() -> Iterator[dict[str, str]]:
    """A private Redis (tests/celery's harness) as broker and store; ``bgcb worker`` runs Celery's prefork pool."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "celery"))
    try:
        from harness import start_redis
    finally:
        sys.path.pop(0)
    try:
        redis = start_redis()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    url = redis.url()
    try:
        yield {
            "BGCB_CELERY_RESULT_URL": url,
            "BGCB_CELERY_BROKER_URL": url,
            "BGCB_CELERY_CONCURRENCY": "2",
            "BGCB_CELERY_POOL": "prefork",
        }
    finally:
        redis.close()


@pytest.fixture(params=["diskcache", "celery"])
def deployment(request, tmp_path: Path, multiproc_dir: Path) -> Iterator[Deployment]:
    env = {"BGCB_BACKEND": request.param, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir), "BGCB_PROMETHEUS_ADDR": "127.0.0.1"}
    with contextlib.ExitStack() as stack:
        if request.param == "celery":
            env.update(stack.enter_context(_celery()))
        else:
            env.update(BGCB_DISKCACHE_DIRECTORY=str(tmp_path / "store"), BGCB_DISKCACHE_WORKERS="2", BGCB_DISKCACHE_AUTOSTART="0")
        served = serve(env, tmp_path, worker=[str(BIN / "bgcb"), "worker", "prom_app"])
        stack.callback(served.stop)
        yield served


def _run_all(deployment: Deployment) -> None:
    """5 successes, 2 failures and 1 timeout, at once from several clients (so over both web workers)."""
    errors: list[BaseException] = []

    def one(kind: str, n: int) -> None:
        try:
            client = deployment.client()
            if kind == "ok":
                run = client.run([("ok-out", "children")], [("ok-btn", "n_clicks", n)], [("ok-in", "value", "0.2")], timeout=60)
                assert run.final.status == 200 and run.output("ok-out", "children") == f"ok {n}", run.final.text
            else:
                run = client.run([(f"{kind}-out", "children")], [(f"{kind}-btn", "n_clicks", n)], timeout=60)
                assert run.final.status == 500, run.final.text
        except BaseException as exc:  # reported below
            errors.append(exc)

    jobs = [("ok", i) for i in range(N_OK)] + [("boom", i) for i in range(N_BOOM)] + [("hang", 1)]
    threads = [threading.Thread(target=one, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors


def _cancel_one(deployment: Deployment) -> None:
    """Start the slow job, see it running on the gauges, cancel it as the page's cancel button does."""
    client = deployment.client()
    outputs, inputs = [("slow-out", "children")], [("slow-btn", "n_clicks", 1)]
    handles = client.start(outputs, inputs)
    wait_for(lambda: (client.poll(handles, outputs, inputs).body or {}).get("progress"), 30, "the slow job's progress", 0.05)
    now = scrape(deployment.url + "/metrics")
    assert value(now, "bgcb_jobs_running") == 1 and value(now, "bgcb_jobs_queued") == 0, now
    assert client.cancel(("slow-cancel", "n_clicks"), handles["job"]).status in (200, 204)
    assert client.run(outputs, inputs, handles=handles, timeout=30).final.status == 204


def test_every_process_counts_each_job_once(deployment: Deployment, multiproc_dir: Path) -> None:
    web = psutil.Process(deployment.procs["web"].pid).children()
    assert len(web) == 2, "two gunicorn web workers"
    _cancel_one(deployment)
    _run_all(deployment)
    total = N_OK + N_BOOM + 2
    metrics = deployment.url + "/metrics"
    wait_for(lambda: value(scrape(metrics), FINISHED) == total, 20, f"{total} finished jobs on /metrics", 0.2)

    scrapes = [scrape(metrics) for _ in range(6)]  # each answered by either web worker: the same numbers
    assert deployment.worker_metrics is not None
    scrapes.append(scrape(deployment.worker_metrics))  # the worker reads the same directory
    for found in scrapes:
        counters = {k: v for k, v in found.items() if k[0].startswith("bgcb_job") and not k[0].endswith(("_sum", "_created"))}
        assert counters == {k: v for k, v in scrapes[0].items() if k in counters}, "every process answers the same counts"
        assert value(found, "bgcb_jobs_submitted_total") == total
        assert value(found, "bgcb_jobs_submitted_total", callback=OK) == N_OK
        assert value(found, FINISHED, callback=OK, outcome="succeeded") == N_OK
        assert value(found, FINISHED, callback=BOOM, outcome="failed") == N_BOOM
        assert value(found, FINISHED, callback=SLOW, outcome="cancelled") == 1
        assert value(found, FINISHED, callback=HANG, outcome="timed_out") == 1
        assert value(found, "bgcb_job_queue_wait_seconds_count") == total, "every job started once"
        assert value(found, "bgcb_job_run_seconds_count", callback=OK, outcome="succeeded") == N_OK
        assert value(found, "bgcb_job_run_seconds_count", callback=HANG, outcome="timed_out") == 1
        assert value(found, "bgcb_job_run_seconds_sum", callback=OK, outcome="succeeded") >= 0.2 * N_OK
        assert value(found, "bgcb_jobs_deferred_total") == 0
    settled = wait_for(lambda: (s := scrape(metrics)) and value(s, "bgcb_jobs_running") == 0 and s, 20, "no running job")
    backend = deployment.env["BGCB_BACKEND"]
    assert value(settled, "bgcb_jobs_queued", backend=backend) == 0
    assert len([k for k in settled if k[0] == "bgcb_jobs_queued"]) == 1, "two managers on one store: one sample"
    writers = {p.name.rsplit("_", 1)[-1] for p in multiproc_dir.glob("*.db")}
    assert len(writers) >= 3, f"counts from a web worker and the worker's processes: {sorted(writers)}"


def test_bgcb_worker_serves_its_jobs_metrics_without_a_shared_directory(tmp_path: Path) -> None:
    """No PROMETHEUS_MULTIPROC_DIR: ``bgcb worker --metrics-port`` still counts the jobs its pool processes ran."""
    env = {
        "BGCB_BACKEND": "diskcache",
        "BGCB_DISKCACHE_DIRECTORY": str(tmp_path / "store"),
        "BGCB_DISKCACHE_WORKERS": "2",
        "BGCB_DISKCACHE_AUTOSTART": "0",
        "BGCB_PROMETHEUS_ADDR": "127.0.0.1",
    }
    deployment = serve(
        {**env, "PROMETHEUS_MULTIPROC_DIR": None}, tmp_path, worker=[str(BIN / "bgcb"), "worker", "prom_app"], web_workers=1
    )
    try:
        for n in (1, 2, 3):
            run = deployment.client().run(
                [("ok-out", "children")], [("ok-btn", "n_clicks", n)], [("ok-in", "value", "0")], timeout=60
            )
            assert run.final.status == 200, run.final.text
        assert deployment.worker_metrics is not None
        worker = wait_for(
            lambda: (s := scrape(deployment.worker_metrics)) and value(s, FINISHED) == 3 and s,
            20,
            "3 finished jobs on the worker's port",
        )
        assert value(worker, FINISHED, callback=OK, outcome="succeeded") == 3
        assert value(worker, "bgcb_job_queue_wait_seconds_count", callback=OK) == 3
        assert value(worker, "bgcb_jobs_submitted_total") == 0, "submits are counted by the web process"
        assert value(worker, "bgcb_jobs_queued", backend="diskcache") == 0
        assert value(scrape(deployment.url + "/metrics"), "bgcb_jobs_submitted_total", callback=OK) == 3
    finally:
        deployment.stop()
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "shows this process's events only" not in log, "the web process's warning is not for a worker"
    served = "metrics on http://127.0.0.1:"
    assert served in log and "private to this worker: PROMETHEUS_MULTIPROC_DIR is not set" in log, log[-3000:]
