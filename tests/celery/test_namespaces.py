"""Many machines: the web app, Redis, the Celery worker and the browser each in a network namespace of its own.

The test makes the namespaces itself (``ip netns``), joined by a bridge in a
fifth one, so the host's network is untouched; each process gets a copy of the
app in a directory of its own (nothing shared but the network). Skipped, with
the reason, where namespaces cannot be made (not root, no ``ip``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import redis_server_executable

APP = """
import os

import dash
from dash import Dash, Input, Output, html

import bgcb
from bgcb_celery import celery_app_of

URL = os.environ["NS_REDIS_URL"]
manager = bgcb.manager("celery", broker_url=URL, result_url=URL, queue="ns")
celery_app = celery_app_of(manager)
app = Dash(__name__, background_callback_manager=manager)
server = app.server
app.layout = html.Div([html.Button(id="btn"), html.Div(id="out")])


@dash.callback(Output("out", "children"), Input("btn", "n_clicks"), background=True, prevent_initial_call=True)
def where(n_clicks):
    return f"{n_clicks} {os.readlink('/proc/self/ns/net')}"
"""

CLIENT = """
import json, sys
from bgcb_testing import DashClient
client = DashClient.http(sys.argv[1]).load()
run = client.run([("out", "children")], [("btn", "n_clicks", int(sys.argv[2]))], timeout=60)
print(json.dumps({"status": run.final.status, "out": run.output("out", "children"), "text": run.final.text[:300]}))
"""

SUBNET = "10.213.77"
MEMBERS = {"redis": 1, "worker": 2, "web": 3, "browser": 4}


def _ip(*args: str, ns: str | None = None) -> None:
    command = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=20)


class Network:
    """Namespaces ``<member>-<tag>`` on a bridge in ``net-<tag>``, each with ``SUBNET.<n>/24`` on eth0."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.hub = f"bgcb-net-{self.tag}"
        self.names = {m: f"bgcb-{m}-{self.tag}" for m in MEMBERS}
        self.made: list[str] = []

    def make(self) -> None:
        for name in [self.hub, *self.names.values()]:
            _ip("netns", "add", name)
            self.made.append(name)
            _ip("link", "set", "lo", "up", ns=name)
        _ip("link", "add", "br0", "type", "bridge", ns=self.hub)
        _ip("link", "set", "br0", "up", ns=self.hub)
        for member, n in MEMBERS.items():
            ns = self.names[member]
            _ip("link", "add", f"v{n}", "type", "veth", "peer", "name", "eth0", "netns", ns, ns=self.hub)
            _ip("link", "set", f"v{n}", "master", "br0", ns=self.hub)
            _ip("link", "set", f"v{n}", "up", ns=self.hub)
            _ip("addr", "add", f"{SUBNET}.{n}/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)

    def addr(self, member: str) -> str:
        return f"{SUBNET}.{MEMBERS[member]}"

    def run(self, member: str, command: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.names[member], *command]

    def remove(self) -> None:
        """Kill what still runs in the namespaces, then delete them (their interfaces go with them)."""
        for name in reversed(self.made):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _can_make_namespaces() -> str | None:
    if not shutil.which("ip"):
        return "the ip command (iproute2) is not installed"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "making network namespaces needs root (run the suite as root, or in a container that allows it)"
    probe = f"bgcb-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"network namespaces are not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture
def network() -> Iterator[Network]:
    why = _can_make_namespaces()
    if why:
        pytest.skip(why)
    net = Network()
    try:
        net.make()
        yield net
    finally:
        net.remove()


def _copy_of_app(tmp_path: Path, member: str) -> Path:
    home = tmp_path / member
    home.mkdir()
    (home / "ns_app.py").write_text(APP)
    return home


def test_web_redis_and_worker_on_three_machines(network: Network, tmp_path: Path) -> None:
    url = f"redis://{network.addr('redis')}:6379/0"
    env = dict(os.environ, NS_REDIS_URL=url, PYTHONUNBUFFERED="1")
    env.pop("REDIS_URL", None)
    procs: list[subprocess.Popen] = []

    def start(member: str, command: list[str], cwd: Path) -> subprocess.Popen:
        log = open(tmp_path / f"{member}.log", "ab")  # noqa: SIM115 - closed with the process
        own = {**env, "PYTHONPATH": str(cwd)}
        proc = subprocess.Popen(network.run(member, command), cwd=cwd, env=own, stdout=log, stderr=log)
        procs.append(proc)
        return proc

    try:
        redis_dir = tmp_path / "redis"
        redis_dir.mkdir()
        redis_args = ["--bind", network.addr("redis"), "--port", "6379", "--protected-mode", "no", "--save", ""]
        start("redis", [redis_server_executable(), *redis_args, "--appendonly", "no", "--dir", str(redis_dir)], redis_dir)
        worker_home, web_home = _copy_of_app(tmp_path, "worker"), _copy_of_app(tmp_path, "web")
        start("worker", [sys.executable, "-m", "bgcb.cli", "--backend", "celery", "worker", "ns_app"], worker_home)
        web = f"{network.addr('web')}:8050"
        start("web", [sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "4", "-b", web, "ns_app:server"], web_home)
        probe = [sys.executable, "-c", f"import sys, socket; socket.create_connection(('{network.addr('web')}', 8050), 2)"]
        deadline = time.monotonic() + 60
        while subprocess.run(network.run("browser", probe), capture_output=True).returncode:
            assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()[-2000:]
            time.sleep(0.3)
        netns = {
            m: subprocess.run(network.run(m, ["readlink", "/proc/self/ns/net"]), capture_output=True, text=True).stdout.strip()
            for m in ("worker", "web")
        }
        assert netns["worker"] != netns["web"]
        browser_home = tmp_path / "browser"
        browser_home.mkdir()
        for n in (1, 2, 3):
            t0 = time.monotonic()
            done = subprocess.run(
                network.run("browser", [sys.executable, "-c", CLIENT, f"http://{web}", str(n)]),
                cwd=browser_home,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"job {n} across namespaces answered in {time.monotonic() - t0:.2f} s (a fresh client process each)")
            assert answer["status"] == 200, answer
            assert answer["out"] == f"{n} {netns['worker']}", "the job ran in the worker's namespace"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
