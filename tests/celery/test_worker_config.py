"""``bgcb worker APP`` serves the Celery configuration the app made in code, with no BGCB_* variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from harness import APPS, child_pids

from bgcb_testing import DashClient, LiveServer


def test_bgcb_worker_uses_the_apps_in_code_configuration(redis_server, tmp_path, monkeypatch) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGCB_")}
    env.update(INCODE_REDIS=redis_server.url(), PYTHONPATH=os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")]))
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "bgcb.cli", "worker", "incode_cel_app"],
            cwd=APPS,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 45
        while " ready." not in log.read_text(errors="replace"):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        banner = log.read_text(errors="replace")
        assert "serving celery" in banner and "prefix='incode'" in banner and "queue='incode'" in banner, banner[-3000:]
        monkeypatch.setenv("INCODE_REDIS", redis_server.url())
        monkeypatch.syspath_prepend(str(APPS))
        import incode_cel_app

        server = LiveServer(incode_cel_app.app)
        try:
            run = DashClient.http(server.url).load().run([("icc-out", "children")], [("icc-go", "n_clicks", 4)])
        finally:
            server.stop()
        text = run.output("icc-out", "children")
        assert text.startswith("4 ran in pid ") and int(text.rsplit(" ", 1)[1]) in child_pids(worker.pid), text
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)
