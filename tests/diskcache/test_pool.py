"""The diskcache backend's queue and worker pool, through a real app served
as ``python dc_app.py`` (workers autostarted, the app module is ``__main__``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
from conftest import BIN, Served, env_for, wait_for

from bgcb.jobs import State

STAMP = [("stamp-out", "children")]
CANCEL = ("cancel-btn", "n_clicks")


def job_id(handles: dict) -> str:
    return handles["job"].split("~")[0]


def start_stamp(client, n: int, seconds: float) -> dict:
    return client.start(STAMP, [("stamp-btn", "n_clicks", n)], [("stamp-in", "value", str(seconds))])


def finish_stamp(client, handles: dict, n: int, seconds: float) -> dict:
    run = client.run(STAMP, [("stamp-btn", "n_clicks", n)], [("stamp-in", "value", str(seconds))], handles=handles, timeout=60)
    assert run.final.status == 200, run.final.text
    return json.loads(run.output("stamp-out", "children"))


def wait_worker_pid(client, handles: dict, outputs, inputs) -> int:
    """Poll as the browser does until the job's set_props reports its worker pid."""

    def pid() -> int | None:
        body = client.poll(handles, outputs, inputs).body or {}
        return (body.get("sideUpdate") or {}).get("pid-out", {}).get("children")

    return wait_for(pid, 10, "the job to report its worker pid", interval=0.05)


def supervisor_and_workers(served: Served) -> tuple[psutil.Process, list[psutil.Process]]:
    sups = [p for p in psutil.Process(served.proc.pid).children() if "bgcb_diskcache pool" in " ".join(p.cmdline())]
    assert len(sups) == 1, "exactly one pool process per web process"
    return sups[0], sups[0].children()


def test_one_pool_no_recursive_start(served: Served) -> None:
    """The app as __main__ makes two managers; the workers import it without
    serving it or starting another pool."""
    supervisor, workers = supervisor_and_workers(served)
    wait_for(lambda: len(supervisor.children()) == 2, 20, "two workers")
    assert all(not w.children() for w in supervisor.children())
    assert len(served.pool_processes()) == 3


def test_fifo_order_concurrency_bound_positions_and_bgcb_jobs(served: Served) -> None:
    client = served.client()
    served.log.write_text("")
    handles = [start_stamp(client, n, 1.0) for n in range(1, 7)]
    ids = [job_id(h) for h in handles]
    jobs = served.jobs()
    # Queue positions while the first two run.
    wait_for(lambda: jobs.status(ids[0]).state is State.RUNNING and jobs.status(ids[1]).state is State.RUNNING, 10, "two running")
    positions = [jobs.status(i).position for i in ids[2:]]
    assert positions == [0, 1, 2, 3]
    listing = subprocess.run(
        [str(BIN / "bgcb"), "jobs"], env=env_for(served.directory), capture_output=True, text=True, timeout=30
    )
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:]}
    assert [lines[i][1] for i in ids[:2]] == ["running", "running"]
    assert [lines[i][1:3] for i in ids[2:] if i in lines][:1] in ([["queued", "0"]], [["queued", "1"]], [])
    results = [finish_stamp(client, h, n, 1.0) for n, h in zip(range(1, 7), handles, strict=False)]
    # FIFO: jobs started in submission order, two at a time (the two of a pair start together, in either order).
    started = [int(line.split()[1]) for line in served.log.read_text().split("\n") if line]
    assert [sorted(started[i : i + 2]) for i in (0, 2, 4)] == [[1, 2], [3, 4], [5, 6]], started
    # Bounded concurrency: never more than two at once, and two were used.
    events = sorted([(r["start"], 1) for r in results] + [(r["end"], -1) for r in results])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2
    assert len({r["pid"] for r in results}) == 2, "warm workers are reused, not one process per job"
    assert all(r["pid"] not in (served.proc.pid,) for r in results)


def test_cancel_queued_job_never_starts(served: Served) -> None:
    client = served.client()
    served.log.write_text("")
    busy = [start_stamp(client, n, 1.5) for n in (11, 12)]
    queued = start_stamp(client, 13, 0)
    assert served.jobs().status(job_id(queued)).state is State.QUEUED
    assert client.cancel(CANCEL, queued["job"]).status in (200, 204)
    run = client.run(STAMP, [("stamp-btn", "n_clicks", 13)], [("stamp-in", "value", "0")], handles=queued, timeout=10)
    assert run.final.status == 204, "a cancelled job ends with no update"
    for n, h in zip((11, 12), busy, strict=False):
        finish_stamp(client, h, n, 1.5)
    after = start_stamp(client, 14, 0)
    finish_stamp(client, after, 14, 0)  # the queue moved on past the cancelled job
    assert "start 13" not in served.log.read_text()
    assert served.jobs().status(job_id(queued)).state is State.CANCELLED


def test_cancel_running_job_is_killed_within_a_second_and_replaced(served: Served) -> None:
    client = served.client()
    supervisor, _ = supervisor_and_workers(served)
    outputs, inputs = [("stubborn-out", "children")], [("stubborn-btn", "n_clicks", 1)]
    handles = client.start(outputs, inputs)
    pid = wait_worker_pid(client, handles, outputs, inputs)
    assert served.store().running()[job_id(handles)]["pid"] == pid
    worker = psutil.Process(pid)
    t0 = time.monotonic()
    assert client.cancel(CANCEL, handles["job"]).status in (200, 204)
    worker.wait(timeout=5)  # it never checks for cancel: only a kill stops it
    seconds = time.monotonic() - t0
    print(f"cancel to worker killed: {seconds:.3f} s (the callback reports no progress; cancel_grace is 3 s)")
    assert seconds <= 1.5, "a callback that reports no progress is stopped at once, not after cancel_grace"
    run = client.run(outputs, inputs, handles=handles, timeout=5)
    assert run.final.status == 204
    wait_for(lambda: len(supervisor.children()) == 2 and pid not in [c.pid for c in supervisor.children()], 5, "a new worker")
    finish_stamp(client, start_stamp(client, 21, 0), 21, 0)


def test_cancel_cooperative_keeps_the_worker(served: Served) -> None:
    client = served.client()
    outputs, inputs = [("polite-out", "children")], [("polite-btn", "n_clicks", 1)]
    handles = client.start(outputs, inputs)
    store = served.store()
    wait_for(lambda: served.jobs().status(job_id(handles)).state is State.RUNNING, 10, "the job to run")
    pid = store.running()[job_id(handles)]["pid"]
    client.cancel(CANCEL, handles["job"])
    wait_for(lambda: job_id(handles) not in store.running(), 2, "the worker to stop the job")
    assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert client.run(outputs, inputs, handles=handles, timeout=5).final.status == 204


def test_killed_worker_fails_the_job_visibly_and_is_replaced(served: Served) -> None:
    client = served.client()
    supervisor, _ = supervisor_and_workers(served)
    outputs, inputs = [("stubborn-out", "children")], [("stubborn-btn", "n_clicks", 2)]
    handles = client.start(outputs, inputs)
    pid = wait_worker_pid(client, handles, outputs, inputs)
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    run = client.run(outputs, inputs, handles=handles, timeout=5, interval=0.1)
    print(f"worker SIGKILL mid-job: the page shows the error {time.monotonic() - t0:.2f} s after the kill")
    assert time.monotonic() - t0 <= 5
    assert run.final.status == 500
    assert "died" in run.final.text and "SIGKILL" in run.final.text, run.final.text
    wait_for(lambda: len(supervisor.children()) == 2 and pid not in [c.pid for c in supervisor.children()], 5, "a new worker")
    finish_stamp(client, start_stamp(client, 31, 0), 31, 0)


def test_timeout_is_enforced_on_a_blocking_job(served: Served) -> None:
    client = served.client()
    t0 = time.monotonic()
    run = client.run([("timeout-out", "children")], [("timeout-btn", "n_clicks", 1)], timeout=15)
    assert run.final.status == 500
    assert "timed out" in run.final.text
    assert time.monotonic() - t0 < 10


def test_a_corrupt_record_fails_only_its_job_and_the_pool_serves_on(served: Served) -> None:
    """Junk planted in the store while jobs run and wait: the job whose record it hit fails with a clear
    error, every other job completes, and the supervisor and workers keep running."""
    import diskcache

    client = served.client()
    supervisor, _ = supervisor_and_workers(served)
    busy = [start_stamp(client, n, 1.0) for n in (41, 42)]
    victim, bystander = start_stamp(client, 43, 0), start_stamp(client, 44, 0)
    raw = diskcache.Cache(str(served.directory))
    raw.set("r:" + job_id(victim), b"\x80\x04corrupt")  # not JSON, not UTF-8
    raw.set("running", "[not, json")
    t0 = time.monotonic()
    run = client.run(STAMP, [("stamp-btn", "n_clicks", 43)], [("stamp-in", "value", "0")], handles=victim, timeout=10)
    seconds = time.monotonic() - t0
    print(f"corrupt record: error on the page after {seconds:.2f} s")
    assert run.final.status == 500 and "unknown to the backend" in run.final.text, run.final.text
    assert seconds <= 5
    for n, handles, wait in ((41, busy[0], 1.0), (42, busy[1], 1.0), (44, bystander, 0)):
        finish_stamp(client, handles, n, wait)
    assert supervisor.is_running() and len(supervisor.children()) == 2, "the pool kept serving"
    finish_stamp(client, start_stamp(client, 45, 0), 45, 0)


def test_stopping_the_app_stops_the_pool(served: Served, tmp_path) -> None:
    """Runs last in this module: Ctrl-C on ``python app.py`` ends every process."""
    from conftest import stop_tree

    tree = served.pool_processes()
    assert tree
    stop_tree(served.proc)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
    assert sys.executable  # keep imports used
