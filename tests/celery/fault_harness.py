"""A deployment of ``apps/fault_app.py`` for the fault tests: a Redis of its own, gunicorn web workers and
``bgcb worker fault_app``, all subprocesses; plus what the tests plant in Redis and the client they drive it with."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from harness import APPS, RedisServer, Worker, free_port, start_redis

from bgcb_testing import DashClient
from bgcb_testing.client import Response

BIN = Path(sys.executable).parent


class Planted:
    """Unpickling it creates ``marker``: proof that a planted pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def pickled(marker: Path) -> bytes:
    import pickle

    return pickle.dumps(Planted(marker))


def pickled_task_message(marker: Path, queue: str = "bgcb") -> str:
    """A Celery task message for ``bgcb.run_job`` whose body is a pickle (``application/x-python-serialize``),
    in the envelope kombu's Redis transport pushes: a worker that accepted pickle would create ``marker``."""
    task_id = str(uuid.uuid4())
    body = pickled(marker)
    headers = {"lang": "py", "task": "bgcb.run_job", "id": task_id, "root_id": task_id, "parent_id": None, "group": None}
    headers.update(retries=0, eta=None, expires=None, timelimit=[None, None], argsrepr="(...)", kwargsrepr="{}", origin="test")
    properties = {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2, "priority": 0, "body_encoding": "base64"}
    properties.update(delivery_info={"exchange": "", "routing_key": queue}, delivery_tag=str(uuid.uuid4()))
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "binary",
        "content-type": "application/x-python-serialize",
        "headers": headers,
        "properties": properties,
    }
    return json.dumps(envelope)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


class Deployment:
    """gunicorn (``web_workers`` web workers) serving fault_app and one ``bgcb worker fault_app`` (two pool
    processes), on a Redis of its own. ``plant`` runs on that Redis before anything else starts."""

    def __init__(
        self, tmp_path: Path, *, web_workers: int = 1, ordered: bool = False, plant: Callable[[redis.Redis], None] | None = None
    ) -> None:
        if not (BIN / "gunicorn").exists():
            pytest.skip("gunicorn is not installed in this environment (pip install gunicorn)")
        self.redis: RedisServer = start_redis()
        self.raw = redis.Redis.from_url(self.redis.url())  # bytes in, bytes out: what a planter writes
        if plant is not None:
            plant(self.raw)
        url = self.redis.url()
        self.env = {
            "CEL_REDIS_URL": url,
            "BGCB_CELERY_RESULT_URL": url,
            "BGCB_CELERY_BROKER_URL": url,
            "FAULT_ORDERED": "1" if ordered else "0",
            "BGCB_BACKEND": "celery",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")]),
        }
        self.worker = Worker("fault_app", self.env, concurrency=2)
        self.web_log = tmp_path / "web.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, **self.env}
        command = [str(BIN / "gunicorn"), "-w", str(web_workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
        with open(self.web_log, "ab") as log:
            self.web = subprocess.Popen(
                [*command, "fault_app:server"],
                cwd=APPS,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            self.worker.wait_ready()
            deadline = time.monotonic() + 30
            while not _answers(self.url + "/pid"):
                if self.web.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not serve fault_app:\n{self.web_log.read_text()[-3000:]}")
                time.sleep(0.1)
        except BaseException:
            self.close()
            raise

    def web_workers(self) -> list[int]:
        import psutil

        return [p.pid for p in psutil.Process(self.web.pid).children()]

    def job_record(self, job: str) -> tuple[str, dict[str, Any]] | None:
        """The state and data of a job's record, from its handle."""
        from bgcb_celery.layout import Keys, Record

        text = self.raw.get(Keys("bgcb").rec(job.split("~")[0]))
        rec = Record.decode(text.decode()) if text else None
        return (rec.state, json.loads(rec.data)) if rec else None

    def close(self) -> None:
        if self.web.poll() is None:
            os.killpg(self.web.pid, signal.SIGTERM)
            try:
                self.web.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.web.pid, signal.SIGKILL)
                self.web.wait(5)
        try:
            os.killpg(self.web.pid, signal.SIGKILL)  # web workers left behind by a killed arbiter
        except (ProcessLookupError, PermissionError):
            pass
        self.worker.stop()
        self.raw.close()
        self.redis.close()


class Recorder:
    """A DashClient over HTTP that keeps every response, to check that none was a server error."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.responses: list[tuple[str, Response]] = []
        inner = DashClient.http(url, headers=headers)
        get, post = inner._get, inner._post

        def recorded_get(path: str) -> Response:
            return self._keep(path, get(path))

        def recorded_post(path: str, body: dict[str, Any]) -> Response:
            return self._keep(path, post(path, body))

        self.client = DashClient(recorded_get, recorded_post).load()

    def _keep(self, path: str, resp: Response) -> Response:
        self.responses.append((path, resp))
        return resp

    def server_errors(self, allowed: Callable[[Response], bool] = lambda resp: False) -> list[str]:
        """The 500s the app answered, but those ``allowed`` (a job's error, shown on the page as Dash does)."""
        return [f"{path}: {resp.text[:300]}" for path, resp in self.responses if resp.status >= 500 and not allowed(resp)]
