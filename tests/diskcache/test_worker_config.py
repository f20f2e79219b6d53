"""``bgcb worker APP`` serves the queue the app configured in code, with no BGCB_* variables."""

from __future__ import annotations

import os
import signal
import subprocess

import psutil
from conftest import APPS, BIN, stop_tree, wait_for

from bgcb_testing import DashClient, LiveServer


def test_bgcb_worker_uses_the_apps_in_code_directory(tmp_path, monkeypatch) -> None:
    queue = tmp_path / "in-code-queue"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGCB_")}
    env.update(INCODE_QUEUE=str(queue), PYTHONPATH=os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")]))
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [str(BIN / "bgcb"), "worker", "incode_app"], cwd=APPS, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        wait_for(lambda: len(psutil.Process(worker.pid).children()) == 1, 30, "the worker's one pool process")
        banner = log.read_text()
        assert "serving diskcache" in banner and str(queue) in banner and "autostart=False" in banner, banner
        monkeypatch.setenv("INCODE_QUEUE", str(queue))
        monkeypatch.syspath_prepend(str(APPS))
        import incode_app

        server = LiveServer(incode_app.app)
        try:
            run = DashClient.http(server.url).load().run([("ic-out", "children")], [("ic-go", "n_clicks", 7)])
        finally:
            server.stop()
        pool = {p.pid for p in psutil.Process(worker.pid).children()}
        text = run.output("ic-out", "children")
        assert text.startswith("7 ran in pid ") and int(text.rsplit(" ", 1)[1]) in pool, (text, pool)
    finally:
        stop_tree(worker, signal.SIGINT)
