"""Ways to run the workers: ``bgcb worker APP_MODULE`` beside two gunicorn web
workers sharing one queue, and apps whose callbacks live in pages modules and
imported modules."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
import pytest
from conftest import APPS, BIN, env_for, free_port, serve_script, stop_tree, wait_for, wait_http

STAMP = [("stamp-out", "children")]


def _pool_cmd(p: psutil.Process) -> bool:
    try:
        return "bgcb_diskcache pool" in " ".join(p.cmdline())
    except psutil.Error:
        return False


@pytest.fixture
def deployment(tmp_path):
    """gunicorn with two web workers (autostart off) and one ``bgcb worker``."""
    if not (BIN / "gunicorn").exists():
        pytest.skip("gunicorn is not installed in this environment (pip install gunicorn)")
    env = env_for(tmp_path / "store", BGCB_DISKCACHE_AUTOSTART="0", BGCB_DISKCACHE_DEAD_AFTER="3")
    procs: dict[str, subprocess.Popen] = {}

    log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115 - closed with the fixture

    def start_worker() -> subprocess.Popen:
        procs["worker"] = subprocess.Popen(
            [str(BIN / "bgcb"), "worker", "dc_app"], cwd=APPS, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        return procs["worker"]

    start_worker()
    port = free_port()
    procs["web"] = subprocess.Popen(
        [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning", "dc_app:server"],
        cwd=APPS,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", procs["web"])
    yield url, procs, start_worker
    stop_tree(procs["web"], signal.SIGTERM)
    stop_tree(procs["worker"], signal.SIGINT)
    log.close()


def test_two_gunicorn_workers_share_one_queue_served_by_bgcb_worker(deployment) -> None:
    from bgcb_testing import DashClient

    url, procs, start_worker = deployment
    web_pids: set[int] = set()

    def ask_pid() -> None:
        with urllib.request.urlopen(url + "/pid", timeout=10) as resp:
            web_pids.add(int(resp.read()))

    def both_answer() -> bool:
        askers = [threading.Thread(target=ask_pid) for _ in range(4)]
        for t in askers:
            t.start()
        for t in askers:
            t.join(15)
        return len(web_pids) == 2

    wait_for(both_answer, 30, "both gunicorn web workers to answer")
    assert not any(_pool_cmd(p) for p in psutil.Process(procs["web"].pid).children(recursive=True)), "autostart=0: no pool"
    wait_for(lambda: len(psutil.Process(procs["worker"].pid).children()) == 2, 30, "bgcb worker's two workers")
    pool_pids = {p.pid for p in psutil.Process(procs["worker"].pid).children()}

    results: list = [None] * 6
    errors: list = []

    def one(i: int) -> None:
        try:
            client = DashClient.http(url).load()
            run = client.run(STAMP, [("stamp-btn", "n_clicks", i + 1)], [("stamp-in", "value", "0.3")], timeout=60)
            results[i] = json.loads(run.output("stamp-out", "children"))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert sorted(r["n"] for r in results) == [1, 2, 3, 4, 5, 6]
    assert {r["pid"] for r in results} <= pool_pids, "jobs ran in the bgcb worker's processes"


def test_a_gunicorn_worker_killed_mid_poll_loses_nothing(deployment) -> None:
    """SIGKILL one of the two web workers while a job runs: the page keeps polling (the other web
    worker, then its replacement, answer) and gets the job's result."""
    from bgcb_testing import DashClient

    url, procs, _ = deployment
    client = DashClient.http(url).load()
    handles = client.start(STAMP, [("stamp-btn", "n_clicks", 5)], [("stamp-in", "value", "1.5")])
    web_workers = psutil.Process(procs["web"].pid).children()
    assert len(web_workers) == 2
    web_workers[0].kill()
    killed = time.monotonic()
    run = client.run(STAMP, [("stamp-btn", "n_clicks", 5)], [("stamp-in", "value", "1.5")], handles=handles, timeout=30)
    print(f"gunicorn worker SIGKILL mid-poll: the result arrived {time.monotonic() - killed:.2f} s after the kill (a 1.5 s job)")
    assert run.final.status == 200 and json.loads(run.output("stamp-out", "children"))["n"] == 5
    wait_for(lambda: len(psutil.Process(procs["web"].pid).children()) == 2, 30, "gunicorn to replace its worker")


def test_the_worker_logs_each_outcome_with_the_traceback_of_errors(deployment, tmp_path) -> None:
    from bgcb_testing import DashClient

    url, _, _ = deployment
    client = DashClient.http(url).load()
    failed = client.run([("boom-out", "children")], [("boom-btn", "n_clicks", 7)], timeout=30)
    assert failed.final.status == 500 and "boom 7" in failed.final.text
    client.run(STAMP, [("stamp-btn", "n_clicks", 8)], [("stamp-in", "value", "0")], timeout=30)
    odd = client.run([("odd-out", "children")], [("odd-btn", "n_clicks", 1)], timeout=30)
    assert odd.final.status == 500 and "cannot be sent to the browser as JSON" in odd.final.text
    late = client.run([("timeout-out", "children")], [("timeout-btn", "n_clicks", 1)], timeout=30)
    assert late.final.status == 500 and "timed out" in late.final.text
    wanted = ("(boom-out.children) failed", "(stamp-out.children) succeeded", "(odd-out.children) failed")
    wanted += ("timed out and was stopped",)  # by the supervisor, which killed the worker at the timeout

    def logged() -> str | None:
        text = (tmp_path / "worker.log").read_text(errors="replace")
        return text if all(line in text for line in wanted) else None

    text = wait_for(logged, 10, "the worker to log every outcome (an error, a success, a value no encoder takes, a timeout)")
    assert "ValueError: boom 7" in text and "Traceback" in text, text[-2000:]


def test_dead_bgcb_worker_fails_running_jobs_and_a_restart_serves_again(deployment) -> None:
    from bgcb_testing import DashClient

    url, procs, start_worker = deployment
    client = DashClient.http(url).load()
    outputs, inputs = [("stubborn-out", "children")], [("stubborn-btn", "n_clicks", 1)]
    handles = client.start(outputs, inputs)

    def reported() -> bool:
        body = client.poll(handles, outputs, inputs).body or {}
        return bool(body.get("sideUpdate"))

    wait_for(reported, 30, "the job to start", interval=0.05)
    supervisor = psutil.Process(procs["worker"].pid)
    workers = supervisor.children()
    supervisor.kill()  # the whole pool dies: its workers follow (parent-death signal)
    killed = time.monotonic()
    procs["worker"].wait(5)
    psutil.wait_procs(workers, timeout=5)
    waiting = client.start(STAMP, [("stamp-btn", "n_clicks", 6)], [("stamp-in", "value", "0")])  # queued meanwhile
    run = client.run(outputs, inputs, handles=handles, timeout=15, interval=0.2)
    seconds = time.monotonic() - killed
    print(f"bgcb worker (supervisor) SIGKILL mid-job: the page shows the error {seconds:.2f} s after (dead_after=3)")
    assert run.final.status == 500 and seconds <= 5, seconds
    # The web process saw the pool's heartbeat stop (dead_after): the core ended the job as lost.
    assert "stopped without finishing it" in run.final.text and "worker pool on" in run.final.text, run.final.text
    start_worker()
    queued = client.run(STAMP, [("stamp-btn", "n_clicks", 6)], [("stamp-in", "value", "0")], handles=waiting, timeout=60)
    assert json.loads(queued.output("stamp-out", "children"))["n"] == 6, "the job queued while no pool ran was lost"
    again = client.run(STAMP, [("stamp-btn", "n_clicks", 7)], [("stamp-in", "value", "0")], timeout=60)
    assert json.loads(again.output("stamp-out", "children"))["n"] == 7


def test_callbacks_in_pages_and_imported_modules_run_in_workers(tmp_path) -> None:
    from bgcb_testing import DashClient

    served = serve_script(APPS / "pagesapp" / "app.py", tmp_path / "store", tmp_path)
    try:
        client = DashClient.http(served.url).load()
        report = client.run([("report-out", "children")], [("report-btn", "n_clicks", 2)], timeout=60)
        helper = client.run([("helper-out", "children")], [("helper-btn", "n_clicks", 3)], timeout=60)
        text_r, text_h = report.output("report-out", "children"), helper.output("helper-out", "children")
        assert text_r.startswith("report 2 in ") and text_h.startswith("helper 3 in ")
        pool = {p.pid for p in served.pool_processes()}
        assert {int(text_r.split()[-1]), int(text_h.split()[-1])} <= pool
        assert served.proc.pid not in pool
    finally:
        stop_tree(served.proc)


def test_managers_with_other_options_share_one_pool(tmp_path, monkeypatch) -> None:
    """Two backends on one directory in one process (e.g. per-callback managers
    with different options) start a single pool, stopped when both close."""
    from bgcb import provider
    from bgcb.jobs import new_job_id

    monkeypatch.syspath_prepend(str(APPS))
    monkeypatch.setenv("DC_LOG", str(tmp_path / "log"))
    directory = str(tmp_path / "store")
    first = provider.load("diskcache", fresh=True, directory=directory, workers=1, app="dc_app")
    second = provider.load("diskcache", fresh=True, directory=directory, workers=2, app="dc_app", result_ttl=60.0)
    try:
        for backend in (first, second):
            backend.status(new_job_id())  # the first use of the store starts the pool
        me = psutil.Process()
        pools = [p for p in me.children() if _pool_cmd(p)]
        assert len(pools) == 1
        wait_for(lambda: len(pools[0].children()) == 1, 30, "the pool's worker")
    finally:
        first.close()
        assert pools[0].is_running(), "the pool stays while a backend still uses it"
        second.close()
    assert not pools[0].is_running() or pools[0].status() == psutil.STATUS_ZOMBIE
    assert sys.executable and time.time()


def test_an_app_the_pool_cannot_import_fails_jobs_with_the_reason(tmp_path) -> None:
    from bgcb_testing import DashClient

    served = serve_script(APPS / "broken_app.py", tmp_path / "store", tmp_path)
    try:
        run = DashClient.http(served.url).load().run([("out", "children")], [("go", "n_clicks", 1)], timeout=60)
        assert run.final.status == 500
        assert "could not import the app" in run.final.text and "SETTING_X is not set" in run.final.text
    finally:
        stop_tree(served.proc)


def test_with_no_worker_pool_the_page_says_what_to_start(tmp_path) -> None:
    """autostart off and no `bgcb worker`: after no_worker_after the job fails with what to run."""
    from bgcb_testing import DashClient

    served = serve_script(
        APPS / "dc_app.py", tmp_path / "store", tmp_path, BGCB_DISKCACHE_AUTOSTART="0", BGCB_DISKCACHE_NO_WORKER_AFTER="2"
    )
    try:
        t0 = time.monotonic()
        client = DashClient.http(served.url).load()
        run = client.run(STAMP, [("stamp-btn", "n_clicks", 1)], [("stamp-in", "value", "0")], timeout=30)
        seconds = time.monotonic() - t0
        print(f"no worker pool: the page shows why after {seconds:.1f} s (no_worker_after=2)")
        assert run.final.status == 500, run.final.text
        assert "No worker took this background callback" in run.final.text and "bgcb worker APP_MODULE" in run.final.text
        assert seconds < 15
    finally:
        stop_tree(served.proc)


def test_doctor_checks_the_apps_store_and_pool(deployment, tmp_path) -> None:
    """`bgcb doctor APP_MODULE` reads the app's own store: ok with a pool, a failure saying what to start without one."""
    url, procs, _ = deployment
    env = env_for(tmp_path / "store", BGCB_DISKCACHE_AUTOSTART="0", BGCB_DISKCACHE_DEAD_AFTER="3")

    def doctor() -> subprocess.CompletedProcess:
        command = [str(BIN / "bgcb"), "doctor", "dc_app"]
        return subprocess.run(command, cwd=APPS, env=env, capture_output=True, text=True, timeout=60)

    healthy = wait_for(lambda: (r := doctor()).returncode == 0 and r, 20, "doctor to pass with the pool up")
    assert f"directory {tmp_path / 'store'}" in healthy.stdout and "ok   worker pool alive" in healthy.stdout
    assert "directory = " in healthy.stdout and "= None" not in healthy.stdout, healthy.stdout
    listing = subprocess.run([str(BIN / "bgcb"), "jobs", "dc_app"], cwd=APPS, env=env, capture_output=True, text=True, timeout=60)
    lines = listing.stdout.splitlines()
    assert listing.returncode == 0 and lines[0] == f"backend diskcache, directory {tmp_path / 'store'}", listing.stdout
    assert lines[1].startswith("JOB") and "(no queued or running jobs)" in listing.stdout, listing.stdout
    stop_tree(procs["worker"], signal.SIGINT)
    sick = doctor()
    assert sick.returncode == 1, sick.stdout + sick.stderr
    assert "FAIL worker pool alive" in sick.stdout and "bgcb worker APP_MODULE" in sick.stdout


RELOAD_APP = """
import dash
from dash import Dash, Input, Output, html

import bgcb

app = Dash(__name__, background_callback_manager=bgcb.manager("diskcache"))
app.layout = html.Div([html.Button(id="btn"), html.Div(id="out")])


@dash.callback(Output("out", "children"), Input("btn", "n_clicks"), background=True, prevent_initial_call=True)
def answer(n_clicks):
    return "VERSION"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT, debug=True)
"""


def test_under_debug_the_workers_follow_an_edit_of_the_app(tmp_path) -> None:
    """`python app.py` with debug=True: edit the callback, and the next click runs the new code."""
    import os

    from bgcb_testing import DashClient

    port = free_port()
    script = tmp_path / "reload_app.py"
    script.write_text(RELOAD_APP.replace("PORT", str(port)).replace("VERSION", "first version"))
    env = env_for(tmp_path / "store")
    command = [sys.executable, str(script)]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", proc)

        errors: list[str] = []

        def click() -> str | None:
            try:
                run = DashClient.http(url).load().run([("out", "children")], [("btn", "n_clicks", 1)], timeout=30)
            except Exception:  # the server is restarting
                return None
            if run.final.status != 200:
                # A click in the restart window: the exiting server still answers while its
                # pool stops, and a job it queued meets workers that imported the edited code.
                errors.append(run.final.text.splitlines()[0][:200])
                return None
            return run.output("out", "children")

        assert wait_for(click, 30, "the first answer") == "first version"
        time.sleep(1.1)  # a modification time the reloader can tell from the first
        script.write_text(RELOAD_APP.replace("PORT", str(port)).replace("VERSION", "edited version"))
        t0 = time.monotonic()
        answer = wait_for(lambda: (a := click()) and a != "first version" and a, 60, "an answer from the edited app")
        print(
            f"debug reloader: the edited callback answered {time.monotonic() - t0:.1f} s after the edit "
            f"({len(errors)} click(s) failed in the restart window)"
        )
        assert answer == "edited version", answer
        settled = [click() for _ in range(3)]  # after the restart: every click runs the edited code
        assert settled == ["edited version"] * 3, (settled, errors)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    assert not alive, f"processes left running: {[p.pid for p in alive]}"
