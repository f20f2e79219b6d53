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
    app = Dash(__name__, background_callback_manager=CeleryManager(celery_app), use_async=False)

elif SIDE == "bgcb":
    from dash import Dash, Input, Output, callback, html

    import bgcb
    from bgcb_celery import celery_app_of

    manager = bgcb.manager("celery", broker_url=REDIS_URL, result_url=REDIS_URL)
    celery_app = celery_app_of(manager)
    app = Dash(__name__, background_callback_manager=manager, use_async=False)

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


_REQUESTS: dict[str, list[float]] = {"first": [], "poll": []}


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
    _REQUESTS["first"].append(time.perf_counter() - started)
    if status != 200 or "job" not in first:
        raise SystemExit(f"first request did not start a job: {status} {first}")
    query = dict(base, cacheKey=first["cacheKey"], job=first["job"])
    deadline = started + 30
    while True:
        time.sleep(interval)
        asked = time.perf_counter()
        status, answer = _post(client, body, query)
        _REQUESTS["poll"].append(time.perf_counter() - asked)
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
        for kind in _REQUESTS.values():
            kind.clear()
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
        "first_request_ms": statistics.median(_REQUESTS["first"]) * 1000,
        "poll_request_ms": statistics.median(_REQUESTS["poll"]) * 1000,
        "polls_per_job": len(_REQUESTS["poll"]) / jobs,
        "jobs": jobs,
    }


# -- the orchestrator -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis() -> tuple[subprocess.Popen, str, str]:
    exe = os.environ.get("BGCB_REDIS_SERVER") or shutil.which("redis-server")
    if not exe:
        raise SystemExit("redis-server not found: install Redis or set BGCB_REDIS_SERVER")
    port, workdir = _free_port(), tempfile.mkdtemp(prefix="bench-celery-")
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url, workdir
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def _versions(python: str) -> str:
    code = (
        "import dash, celery, kombu, redis; print(f'dash {dash.__version__}, celery {celery.__version__}, "
        "kombu {kombu.__version__}, redis-py {redis.__version__}')"
    )
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def _side(python: str, side: str, url: str, args: argparse.Namespace, extra: dict[str, str] | None = None) -> dict:
    env = dict(os.environ, BENCH_SIDE=side, BENCH_REDIS_URL=url, PYTHONWARNINGS="ignore", **(extra or {}))
    out = subprocess.run(
        [python, str(Path(__file__).resolve()), "--side", side, "--jobs", str(args.jobs), "--interval", str(args.interval)],
        env=env,
        capture_output=True,
        text=True,
        cwd=HERE,
    )
    if out.returncode != 0:
        raise SystemExit(f"the {side} side failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=["dash", "bgcb"], help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=100, help="measured jobs per side (default 100)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between polls (default 0.05)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--dash-python",
        default=os.environ.get("BENCH_DASH_PYTHON", "/work/venv-dashcel/bin/python"),
        help='python of a virtualenv with "dash[celery]" installed',
    )
    parser.add_argument("--out", default=str(HERE / "results" / "celery.md"))
    args = parser.parse_args()
    if args.side:
        print(json.dumps(drive(args.jobs, args.interval, args.concurrency)))
        return
    proc, url, workdir = _start_redis()
    try:
        results = {}
        for side, python in (("dash", args.dash_python), ("bgcb", sys.executable)):
            results[side] = _side(python, side, url, args, {"BGCB_CELERY_REDIS_ACK_EMULATION": "0"})
            results[side]["versions"] = _versions(python)
        # bgcb with kombu's Redis ack emulation on, as a Celery app of your own has it by default
        results["ackem"] = _side(sys.executable, "bgcb", url, args, {"BGCB_CELERY_REDIS_ACK_EMULATION": "1"})
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    dash_r, bgcb_r = results["dash"], results["bgcb"]
    speed = bgcb_r["median_ms"] / dash_r["median_ms"]
    cost = bgcb_r["commands_per_job"] / dash_r["commands_per_job"]
    lines = [
        "# bgcb-celery vs Dash's CeleryManager",
        "",
        f"Recorded {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `benchmarks/bench_celery.py "
        f"--jobs {args.jobs} --interval {args.interval}`: one Redis server (broker and store for both), "
        f"a Celery prefork worker with {args.concurrency} processes per side, {args.jobs} sequential no-op "
        f"jobs per side after 5 warm-up jobs, one poll every {args.interval * 1000:g} ms until the answer.",
        "",
        "| | Dash CeleryManager | bgcb-celery | bgcb / Dash |",
        "|---|---:|---:|---:|",
        f"| turnaround, median | {dash_r['median_ms']:.1f} ms | {bgcb_r['median_ms']:.1f} ms | {speed:.2f} |",
        f"| turnaround, p90 | {dash_r['p90_ms']:.1f} ms | {bgcb_r['p90_ms']:.1f} ms | "
        f"{bgcb_r['p90_ms'] / dash_r['p90_ms']:.2f} |",
        f"| first request (submit), median | {dash_r['first_request_ms']:.2f} ms | {bgcb_r['first_request_ms']:.2f} ms | "
        f"{bgcb_r['first_request_ms'] / dash_r['first_request_ms']:.2f} |",
        f"| poll request, median | {dash_r['poll_request_ms']:.2f} ms | {bgcb_r['poll_request_ms']:.2f} ms | "
        f"{bgcb_r['poll_request_ms'] / dash_r['poll_request_ms']:.2f} |",
        f"| polls per job | {dash_r['polls_per_job']:.2f} | {bgcb_r['polls_per_job']:.2f} | |",
        f"| Redis commands per completed job | {dash_r['commands_per_job']:.1f} | {bgcb_r['commands_per_job']:.1f} | "
        f"{cost:.2f} |",
        f"| Redis commands per job, bgcb with kombu's ack emulation on (`redis_ack_emulation=True`) | "
        f"{dash_r['commands_per_job']:.1f} | {results['ackem']['commands_per_job']:.1f} | "
        f"{results['ackem']['commands_per_job'] / dash_r['commands_per_job']:.2f} |",
        "",
        f"- Dash side: {dash_r['versions']}",
        f"- bgcb side: {bgcb_r['versions']}",
        "",
        f"Acceptance: turnaround no slower than Dash's ({'met' if speed <= 1.0 else 'NOT met'}: {speed:.2f}); "
        f"commands per job at most 1/3 of Dash's ({'met' if cost <= 1 / 3 else 'NOT met'}: {cost:.2f}).",
        "",
        "Notes:",
        "",
        "- Both apps are the same Dash app (`use_async=False` on both, so Dash dispatches the same way) with one "
        "no-op background callback; requests go through Flask's test client, so the figures are Dash + manager + "
        "Redis, without HTTP.",
        "- Turnaround is bounded by the poll interval (the first poll comes one interval after the first request); "
        "the request rows show where the rest goes.",
        "- Commands are every call in `INFO commandstats` (INFO/CONFIG excluded) during the measured jobs, "
        "including the workers' broker traffic and commands run inside Lua scripts. Dash's side pays for kombu's "
        "Redis ack emulation (MULTI/ZADD/HSET/EXEC, then MULTI/ZREM/HDEL/EXEC), the result backend "
        "(SETEX+PUBLISH per stored value, SUBSCRIBE/UNSUBSCRIBE per task), several GETs per poll and a revoke "
        "broadcast after each result. bgcb's side (backend contract 2: the job lives in the store, the core loads "
        "it and moves it by compare-and-set) is EVALSHA (HSET, PEXPIRE, ZADD) + LPUSH to submit, BRPOP, SET "
        "heartbeat + HGET job (load), EVALSHA (HGET, HSET, PEXPIRE, ZREM) to claim, EVALSHA (HGET, HSET, "
        "PEXPIRE) to end, DEL heartbeat, and EVALSHA + HMGET per poll of a finished job.",
        "- The Celery app bgcb builds turns kombu's Redis ack emulation off (late acks with a prefetch of one and "
        "bgcb's heartbeat cover a lost worker); the last row shows the cost with it on, which is also what a Celery "
        "app of your own passed as `celery_app` costs unless you set `broker_transport_options={'ack_emulation': "
        "False}` on it.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
