"""bgcb-celery against Dash's own CeleryManager, in one run, on one Redis.

What it measures, for each side, with the same Dash app shape, the same kind
of Celery worker (prefork, ``-c 2``, no gossip/mingle/heartbeat) and the same
client (the renderer's protocol through Flask's test client, one poll every
``--interval`` seconds until the answer arrives):

- no-op turnaround: first request to final answer, median and p90 over ``--jobs``
  sequential jobs;
- Redis commands per completed job: the change of ``INFO commandstats`` over
  the measured jobs (submit, worker, polls, result, cleanup), divided by the
  number of jobs.

Dash's ``dash[celery]`` extra pins celery<5.4, kombu<5.4 and redis<=5.0.4, so
its side runs as a subprocess in a separate virtualenv (``--dash-python``);
bgcb's side runs in this interpreter. Both use a Redis server this script
starts on a free loopback port, as broker and store.

    python benchmarks/bench_celery.py --dash-python /path/to/dash-celery-venv/bin/python

Internally the script re-runs itself as ``--side dash|bgcb`` (the app module
for that side's worker is this file too: ``BENCH_SIDE`` selects which app it builds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIDE = os.environ.get("BENCH_SIDE", "")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")

# -- the app for each side (imported by the worker and by the driver) -----------------

app = None
celery_app = None

if SIDE == "dash":
    from celery import Celery
    from dash import CeleryManager, Dash, Input, Output, callback, html

    celery_app = Celery(__name__, broker=REDIS_URL, backend=REDIS_URL)
    celery_app.conf.update(worker_prefetch_multiplier=1)
    app = Dash(__name__, background_callback_manager=CeleryManager(celery_app))

elif SIDE == "bgcb":
    import bgcb
    from bgcb_celery import celery_app_of
    from dash import Dash, Input, Output, callback, html

    manager = bgcb.manager("celery", broker_url=REDIS_URL, result_url=REDIS_URL)
    celery_app = celery_app_of(manager)
    app = Dash(__name__, background_callback_manager=manager)

if app is not None:
    app.layout = html.Div([html.Button(id="go"), html.Div(id="out")])

    @callback(Output("out", "children"), Input("go", "n_clicks"), background=True, prevent_initial_call=True)
    def noop(n_clicks):
        return n_clicks


# -- the driver for one side ------------------------------------------------------------


def _post(client, body: dict, query: dict) -> tuple[int, dict]:
    path = "/_dash-update-component"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    resp = client.post(path, json=body)
    text = resp.get_data(as_text=True)
    return resp.status_code, (json.loads(text) if text else {})


def _end_id(client) -> str | None:
    """Dash 4.4 signs handles against the page's ``end_id``; older versions have none."""
    page = client.get("/").get_data(as_text=True)
    marker = '"end_id":"'
    if marker in page:
        return page.split(marker, 1)[1].split('"', 1)[0]
    config = client.get("/_dash-config")
    return None if config.status_code != 200 else config.get_json().get("end_id")


def _one_job(client, n: int, interval: float, end_id: str | None) -> float:
    body = {
        "output": "out.children",
        "outputs": {"id": "out", "property": "children"},
        "inputs": [{"id": "go", "property": "n_clicks", "value": n}],
        "state": [],
        "changedPropIds": ["go.n_clicks"],
    }
    base = {"endId": end_id} if end_id else {}
    started = time.perf_counter()
    status, first = _post(client, body, base)
    if status != 200 or "job" not in first:
        raise SystemExit(f"first request did not start a job: {status} {first}")
    query = dict(base, cacheKey=first["cacheKey"], job=first["job"])
    deadline = started + 30
    while True:
        time.sleep(interval)
        status, answer = _post(client, body, query)
        if status != 200 or "response" in answer:
            break
        if time.perf_counter() > deadline:
            raise SystemExit("job did not finish in 30 s")
    elapsed = time.perf_counter() - started
    if answer.get("response", {}).get("out", {}).get("children") != n:
        raise SystemExit(f"wrong answer for job {n}: {status} {answer}")
    return elapsed


def _commands(url: str) -> int:
    import redis

    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if not k.startswith(("cmdstat_info", "cmdstat_config")))


def drive(jobs: int, interval: float, concurrency: int) -> dict:
    """Start a worker for this side, warm up, then measure ``jobs`` sequential jobs."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    celery = str(Path(sys.executable).with_name("celery"))
    worker = subprocess.Popen(
        [celery, "-A", "bench_celery:celery_app", "worker", "--pool=prefork", f"-c{concurrency}", "-l", "WARNING"]
        + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env,
        cwd=HERE,
        start_new_session=True,
    )
    try:
        client = app.server.test_client()
        end_id = _end_id(client)
        for n in range(1, 6):  # warm-up: worker connected, scripts loaded
            _one_job(client, n, interval, end_id)
        time.sleep(0.5)
        before = _commands(REDIS_URL)
        times = [_one_job(client, 100 + n, interval, end_id) for n in range(jobs)]
        after = _commands(REDIS_URL)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    times.sort()
    return {
        "median_ms": statistics.median(times) * 1000,
        "p90_ms": times[int(len(times) * 0.9) - 1] * 1000,
        "commands_per_job": (after - before) / jobs,
        "jobs": jobs,
    }
