"""Many machines with no shared filesystem: web app, Redis, Celery worker and browser each on a "machine" of its own.

As far as one host allows, each role is a machine: the test makes a network
namespace per role (``ip netns``), joined by a bridge in a fifth one, so the
host's network is untouched, and each role runs in a mount namespace of its
own (``unshare --mount --propagation private``) where ``netns_role.py`` remounts
the whole shared tree read-only and puts a fresh tmpfs over ``/tmp``,
``/var/tmp`` and ``/dev/shm``: the role's own copy of the app, its HOME and
everything it writes live there, unseen by any other role or by the host. So
no bgcb state can travel except through Redis over the (namespace-local)
network, and the test checks that from every side: probe files, mount and
network namespace ids, and the TCP peers of the web and worker namespaces.
Skipped, with the reason, where namespaces or mounts cannot be made (not root,
no ``ip``/``unshare``, or the kernel/container refuses).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import redis_server_executable

ROLE_BOOT = Path(__file__).with_name("netns_role.py")

APP = """
import json
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


def where():
    ns = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("net", "mnt")}
    return {**ns, "tmp": sorted(os.listdir("/tmp")), "cwd": os.getcwd(), "pid": os.getpid()}


@server.route("/where")
def where_route():
    return where()


@dash.callback(Output("out", "children"), Input("btn", "n_clicks"), background=True, prevent_initial_call=True)
def job(n_clicks):
    return json.dumps({"n": n_clicks, **where()})
"""

CLIENT = """
import json, os, socket, sys, time, urllib.request
from bgcb_testing import DashClient

base, jobs, host, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
deadline = time.monotonic() + 40
while True:
    try:
        socket.create_connection((host, port), 1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
with urllib.request.urlopen(base + "/where", timeout=30) as resp:
    web = json.load(resp)
client = DashClient.http(base).load()
runs = []
for n in range(1, jobs + 1):
    t0 = time.monotonic()
    run = client.run([("out", "children")], [("btn", "n_clicks", n)], timeout=60)
    out = run.output("out", "children")
    runs.append({"status": run.final.status, "out": out, "text": run.final.text[:300], "seconds": time.monotonic() - t0})
me = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("net", "mnt")}
print(json.dumps({"browser": {**me, "tmp": sorted(os.listdir("/tmp"))}, "web": web, "runs": runs}))
"""

SUBNET = "10.213.77"
MEMBERS = {"redis": 1, "worker": 2, "web": 3, "browser": 4}
JOBS = 3


def _ip(*args: str, ns: str | None = None) -> None:
    command = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=20)


class Network:
    """Namespaces ``<member>-<tag>`` on a bridge in ``net-<tag>``, each with ``SUBNET.<n>/24`` on eth0."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
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
        """``command`` on ``member``'s machine: its network namespace, a private mount namespace, ``netns_role.py``."""
        machine = ["unshare", "--mount", "--propagation", "private", "--", sys.executable, str(ROLE_BOOT), member, self.tag]
        return ["ip", "netns", "exec", self.names[member], *machine, "--", *command]

    def remove(self) -> None:
        """Kill what still runs in the namespaces, then delete them (their interfaces, mounts and tmpfs go with them)."""
        for name in reversed(self.made):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _can_make_machines() -> str | None:
    for tool in ("ip", "unshare", "mount"):
        if not shutil.which(tool):
            return f"the {tool} command is not installed (iproute2 / util-linux)"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "making network and mount namespaces needs root (run the suite as root, or in a container that allows it)"
    probe = f"bgcb-probe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"network namespaces are not permitted here: {made.stderr.strip()}"
    try:
        mounts = "mount -t tmpfs bgcb-probe /tmp && mount -o remount,bind,ro /"
        private = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mounts]
        done = subprocess.run(["ip", "netns", "exec", probe, *private], capture_output=True, text=True, timeout=20)
        if done.returncode:
            return f"a private mount namespace with its own tmpfs is not permitted here: {done.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture
def network() -> Iterator[Network]:
    why = _can_make_machines()
    if why:
        pytest.skip(why)
    net = Network()
    try:
        net.make()
        yield net
    finally:
        net.remove()


class Role:
    """One long-running process on its machine; its output is drained into memory (no log file anywhere)."""

    def __init__(self, name: str, proc: subprocess.Popen) -> None:
        self.name, self.proc, self.output = name, proc, bytearray()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: os.read(self.proc.stdout.fileno(), 65536), b""):
            self.output += chunk

    def tail(self) -> str:
        return f"--- {self.name} (exit {self.proc.poll()}) ---\n" + bytes(self.output[-2500:]).decode(errors="replace")

    def view(self) -> dict:
        """The role as the host sees it, through ``/proc/<pid>`` (``root/tmp`` resolves in the role's mount namespace)."""
        proc = Path(f"/proc/{self.proc.pid}")
        ns = {kind: os.readlink(proc / "ns" / kind) for kind in ("net", "mnt")}
        return {**ns, "tmp": sorted(os.listdir(proc / "root" / "tmp"))}

    def tcp_peers(self) -> list[tuple[tuple[str, int], tuple[str, int]]]:
        """Established (local, remote) TCP endpoints of the role's network namespace; asserts there are no IPv6 ones."""
        proc = Path(f"/proc/{self.proc.pid}/net")
        for line in (proc / "tcp6").read_text().splitlines()[1:]:
            assert line.split()[3] != "01", f"unexpected IPv6 connection in {self.name}: {line}"
        peers = []
        for line in (proc / "tcp").read_text().splitlines()[1:]:
            local, remote, state = line.split()[1:4]
            if state == "01":
                peers.append((_endpoint(local), _endpoint(remote)))
        return peers


def _endpoint(hexed: str) -> tuple[str, int]:
    addr, port = hexed.split(":")
    return socket.inet_ntoa(struct.pack("=I", int(addr, 16))), int(port, 16)


def test_web_redis_and_worker_on_three_machines(network: Network) -> None:
    t_start = time.monotonic()
    tag, redis_at, web_at = network.tag, (network.addr("redis"), 6379), (network.addr("web"), 8050)
    url = f"redis://{redis_at[0]}:{redis_at[1]}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BGCB_CELERY_", "CEL_", "REDIS_URL", "PYTHONPATH"))}
    env.update(NS_REDIS_URL=url, NS_APP_SOURCE=APP, PYTHONUNBUFFERED="1")
    probes = {member: f"bgcb-probe-{member}-{tag}" for member in MEMBERS}
    host_probe = Path(f"/tmp/bgcb-probe-host-{tag}")  # the host's /tmp: no role may see it
    roles: dict[str, Role] = {}

    def start(member: str, command: list[str]) -> None:
        command = network.run(member, command)
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        roles[member] = Role(member, proc)

    def logs() -> str:
        return "\n".join(role.tail() for role in roles.values())

    try:
        host_probe.write_text("host\n")
        redis_args = ["--bind", redis_at[0], "--port", str(redis_at[1]), "--protected-mode", "no", "--save", ""]
        start("redis", [redis_server_executable(), *redis_args, "--appendonly", "no", "--dir", "/tmp/app"])
        start("worker", [sys.executable, "-m", "bgcb.cli", "--backend", "celery", "worker", "ns_app"])
        bind = f"{web_at[0]}:{web_at[1]}"
        start("web", [sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "4", "-b", bind, "ns_app:server"])
        client = [sys.executable, "-c", CLIENT, f"http://{bind}", str(JOBS), *map(str, web_at)]
        done = subprocess.run(network.run("browser", client), env=env, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, f"{done.stdout[-1500:]}\n{done.stderr[-2500:]}\n{logs()}"
        report = json.loads(done.stdout.strip().splitlines()[-1])
        for role in roles.values():
            assert role.proc.poll() is None, logs()

        # Every role is its own machine: its own network and mount namespace, unlike the host (this test) and each other.
        seen = {member: role.view() for member, role in roles.items()}
        seen["browser"] = report["browser"]
        jobs = [json.loads(run["out"]) for run in report["runs"] if run["status"] == 200]
        assert len(jobs) == JOBS, report["runs"]
        host = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("net", "mnt")}
        for kind in ("net", "mnt"):
            ids = [host[kind], *(seen[m][kind] for m in MEMBERS)]
            assert len(set(ids)) == len(ids), f"{kind} namespaces are shared: {ids}"
            assert report["web"][kind] == seen["web"][kind], "a gunicorn worker answered /where from the web machine"
            for n, job in enumerate(jobs, 1):
                assert job[kind] == seen["worker"][kind], f"job {n} ran on the worker machine"

        # No shared files: each side sees its own probe in its /tmp and nobody else's (nor the host's),
        # looked at from outside (/proc/<pid>/root) and from inside (the gunicorn worker, each Celery job, the browser).
        inside = {"web (/where)": ("web", report["web"]), **{f"job {n}": ("worker", job) for n, job in enumerate(jobs, 1)}}
        views = {**{m: (m, seen[m]) for m in MEMBERS}, **inside}
        for label, (member, view) in views.items():
            visible = {name for name in view["tmp"] if name.startswith("bgcb-probe-")}
            assert visible == {probes[member]}, f"{label} sees {sorted(visible)} in its /tmp, want only its own probe"
        for member in ("worker", "web"):  # each runs its own copy of the app, from its own tmpfs
            assert (Path(f"/proc/{roles[member].proc.pid}/root/tmp/app") / "ns_app.py").read_text() == APP
        assert {job["cwd"] for job in jobs} == {report["web"]["cwd"]} == {"/tmp/app"}
        host_tmp = set(os.listdir("/tmp"))
        assert host_tmp.isdisjoint(probes.values()), f"a role's probe leaked to the host: {host_tmp & set(probes.values())}"
        assert not list(ROLE_BOOT.parent.glob(f".netns-write-*-{tag}")), "a role wrote into the shared tree"

        # bgcb state travels only through Redis: the worker's only peers are Redis; the web's are Redis or the browser.
        worker_peers = roles["worker"].tcp_peers()
        assert worker_peers and {remote for _, remote in worker_peers} == {redis_at}, worker_peers
        for local, remote in roles["web"].tcp_peers():
            assert remote == redis_at or local == web_at, f"the web machine talks to {remote}"

        seconds = [run["seconds"] for run in report["runs"]]
        earlier = ", ".join(f"{s:.2f}" for s in seconds[:-1])
        print(
            f"namespaces: job {JOBS} answered in {seconds[-1]:.2f} s across three machines with no shared files "
            f"(jobs before it: {earlier} s; whole test {time.monotonic() - t_start:.1f} s)"
        )
    finally:
        host_probe.unlink(missing_ok=True)
        for role in roles.values():
            role.proc.terminate()
        for role in roles.values():
            try:
                role.proc.wait(10)
            except subprocess.TimeoutExpired:
                role.proc.kill()
                role.proc.wait(5)
