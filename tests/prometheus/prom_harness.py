"""Helpers of the bgcb-prometheus tests: scraping and parsing, and real deployments (gunicorn, bgcb worker, Celery).

A module of its own name (not conftest) so that it imports right when several test folders run together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bgcb_testing.server import free_port, wait_for

APPS = Path(__file__).parent / "apps"
BIN = Path(sys.executable).parent
Labels = Mapping[str, str]


def scrape(url: str, timeout: float = 10.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape, as ``{(sample name, sorted labels): value}``."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    return samples(text)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


def wait_http(url: str, procs: list[subprocess.Popen], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args} exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop_tree(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop ``proc`` and every process it started; kill what lingers."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    if proc.poll() is None:
        proc.send_signal(sig)
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    for p in alive:
        p.kill()
    proc.wait(5)


@dataclass
class Deployment:
    """A web server and a worker of ``prom_app``, their metrics URLs and the environment they share."""

    url: str
    worker_metrics: str | None
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def client(self):
        from bgcb_testing import DashClient

        return DashClient.http(self.url).load()

    def stop(self) -> None:
        for name in ("web", "worker"):
            if name in self.procs:
                stop_tree(self.procs[name], signal.SIGTERM if name == "web" else signal.SIGINT)


def serve(env: Mapping[str, str | None], tmp: Path, *, worker: list[str] | None, web_workers: int = 2) -> Deployment:
    """gunicorn (``web_workers`` sync workers) serving ``prom_app:server``, and ``worker`` (a command) beside it.

    ``env`` adds to this process's environment; a None value removes the variable.
    """
    if not (BIN / "gunicorn").exists():
        pytest.skip("gunicorn is not installed (pip install gunicorn)")
    full = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    full["PYTHONPATH"] = os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")])
    full["PYTHONUNBUFFERED"] = "1"
    port, metrics_port = free_port(), free_port()
    deployment = Deployment(f"http://127.0.0.1:{port}", None, full)
    log = open(tmp / "worker.log", "ab")  # the worker keeps its own copy: closed here once it started
    try:
        if worker is not None:
            command = [*worker, "--metrics-port", str(metrics_port)]
            deployment.procs["worker"] = subprocess.Popen(
                command, cwd=APPS, env=full, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
            deployment.worker_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        gunicorn = [str(BIN / "gunicorn"), "-w", str(web_workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
        gunicorn += ["-c", str(APPS / "gunicorn_conf.py"), "prom_app:server"]
        deployment.procs["web"] = subprocess.Popen(gunicorn, cwd=APPS, env=full, stdin=subprocess.DEVNULL)
        wait_http(deployment.url + "/metrics", list(deployment.procs.values()))
        if deployment.worker_metrics:
            wait_http(deployment.worker_metrics, list(deployment.procs.values()))
    except BaseException:
        deployment.stop()
        raise
    finally:
        log.close()
    return deployment


__all__ = ["APPS", "BIN", "Deployment", "free_port", "scrape", "serve", "stop_tree", "value", "wait_for"]
