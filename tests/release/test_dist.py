"""The built distributions as a package index would serve them (``nox -s build`` runs this on ``dist/``).

Metadata and contents are read from the files; then each install the
README promises is made by name in a fresh venv that sees bgcb's
distributions only in ``dist/`` (third-party ones come from the package
registry), and the quick start it leads to is run: the demo on
bgcb-diskcache, the celery quick start on bgcb-celery with a worker and a
private Redis.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = Path(os.environ.get("BGCB_DIST", ROOT / "dist"))
VERSION = (ROOT / "VERSION").read_text().strip()
RELEASED = ["bgcb", "bgcb-celery", "bgcb-diskcache", "bgcb-testing", "bgcb-prometheus", "bgcb-opentelemetry"]
MODULES = {name: name.replace("-", "_") for name in RELEASED}

sys.path.insert(0, str(ROOT / "tests" / "celery"))

pytestmark = pytest.mark.skipif(not DIST.is_dir(), reason=f"no {DIST}: run `nox -s build` (it builds, then runs this)")


def _file(name: str, kind: str) -> Path:
    stem = name.replace("-", "_")
    found = sorted(DIST.glob(f"{stem}-{VERSION}{'-py3-none-any.whl' if kind == 'wheel' else '.tar.gz'}"))
    assert found, f"no {kind} of {name} {VERSION} in {DIST}"
    return found[0]


def _metadata(name: str) -> email.message.Message:
    with zipfile.ZipFile(_file(name, "wheel")) as wheel:
        text = wheel.read(f"{name.replace('-', '_')}-{VERSION}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text)


@pytest.mark.parametrize("name", RELEASED)
def test_index_page_metadata(name: str) -> None:
    """What the package index shows: version, Python, licence, classifiers, links, a markdown README."""
    meta = _metadata(name)
    assert meta["Version"] == VERSION
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["License-Expression"] == "MIT" and meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier") or []
    assert {"Framework :: Dash", "Typing :: Typed", "Development Status :: 3 - Alpha"} <= set(classifiers)
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Changelog", "Issues"} <= set(urls), urls
    assert meta["Description-Content-Type"] == "text/markdown"
    readme = meta.get_payload()
    assert len(readme.splitlines()) > 40, f"{name}'s README is too thin to be its package page"
    relative = re.findall(r"\]\((?!https?://|#)([^)]+)\)", readme)
    assert not relative, f"{name}'s README links to {relative}: relative links are dead on a package index"


@pytest.mark.parametrize("name", [n for n in RELEASED if n != "bgcb"])
def test_backends_require_this_core_minor(name: str) -> None:
    """Each distribution asks for the core of its own release line (one backend contract per minor)."""
    major, minor = VERSION.split(".")[:2]
    requires = _metadata(name).get_all("Requires-Dist") or []
    assert f"bgcb<{major}.{int(minor) + 1},>={major}.{minor}" in requires, requires


@pytest.mark.parametrize("name", RELEASED)
def test_wheel_and_sdist_contents(name: str) -> None:
    """py.typed ships in every wheel; the sdist carries what a wheel is rebuilt from (VERSION, LICENSE, README)."""
    module = MODULES[name]
    with zipfile.ZipFile(_file(name, "wheel")) as wheel:
        assert f"{module}/py.typed" in wheel.namelist()
    with tarfile.open(_file(name, "sdist")) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
        for needed in ("VERSION", "LICENSE", "README.md", "pyproject.toml", f"src/{module}/py.typed"):
            assert needed in names, f"{needed} is missing from {name}'s sdist"
            assert sdist.getmember(f"{sdist.getnames()[0].split('/')[0]}/{needed}").isfile(), f"{needed} is a link"


class Env:
    """A fresh venv that installs bgcb's distributions from ``dist/`` only."""

    def __init__(self, where: Path) -> None:
        self.dir = where
        venv.EnvBuilder(with_pip=True, clear=True).create(where)
        self.bin = where / "bin"
        self.python = str(self.bin / "python")

    def install(self, *requirements: str) -> None:
        report = self.dir / "report.json"
        command = [self.python, "-m", "pip", "install", "-q", "--find-links", str(DIST), "--report", str(report)]
        subprocess.run([*command, *requirements], check=True)
        for item in json.loads(report.read_text())["install"]:
            name, url = item["metadata"]["name"], item["download_info"]["url"]
            if name in RELEASED:
                assert url.startswith(DIST.resolve().as_uri()), f"{name} came from {url}, not from {DIST}"

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("BGCB_", "PYTHON", "VIRTUAL_ENV"))}
        return {**base, "PATH": f"{self.bin}{os.pathsep}{base.get('PATH', '')}", "PYTHONUNBUFFERED": "1", **extra}


def _serve(command: list[str], cwd: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                raise AssertionError(f"{command} did not serve on port {port}") from None
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _click(port: int, button: str, output: str) -> str:
    from bgcb_testing import DashClient

    run = DashClient.http(f"http://127.0.0.1:{port}").load().run([(output, "children")], [(button, "n_clicks", 1)], timeout=60)
    assert run.final.status == 200, run.final.text[:2000]
    return str(run.output(output, "children"))


def test_diskcache_by_name_runs_the_demo_then_everything_is_typed(tmp_path: Path) -> None:
    """`pip install "bgcb[diskcache]"`, then the README's quick start (the demo) answers a click;
    with the other distributions added by name, mypy finds every package typed."""
    from bgcb_testing.server import free_port

    env = Env(tmp_path / "venv")
    env.install("bgcb[diskcache]")
    port = free_port()
    demo = ROOT / "examples" / "demo"
    variables = env.env(DEMO_PORT=str(port), BGCB_DISKCACHE_DIRECTORY=str(tmp_path / "store"), BGCB_DISKCACHE_WORKERS="2")
    proc = _serve([env.python, str(demo / "app.py")], tmp_path, variables, port)
    try:
        assert _click(port, "simple-btn", "simple-out").startswith("Clicked 1 times")
    finally:
        _stop(proc)
    env.install("bgcb[celery]", "bgcb-testing", "mypy")
    check = "import bgcb, bgcb_celery, bgcb_diskcache, bgcb_testing\nreveal_type(bgcb.manager)\n"
    typed = subprocess.run([str(env.bin / "mypy"), "--strict", "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert "missing library stubs or py.typed marker" not in typed.stdout, typed.stdout
    assert "Revealed type" in typed.stdout and "def (" in typed.stdout, typed.stdout


CELERY_APP = """
import time

import bgcb
from bgcb_celery import celery_app_of
from dash import Dash, Input, Output, callback, html

manager = bgcb.manager("celery")
app = Dash(__name__, background_callback_manager=manager)
server = app.server
celery_app = celery_app_of(manager)
app.layout = html.Div([html.Button("Run", id="go"), html.Div(id="out")])


@callback(Output("out", "children"), Input("go", "n_clicks"), background=True, prevent_initial_call=True)
def run(n_clicks):
    time.sleep(0.2)
    return f"done {n_clicks}"
"""


def test_celery_by_name_runs_the_quick_start(tmp_path: Path) -> None:
    """`pip install bgcb-celery` (the core comes with it), then the README's quick start:
    `gunicorn app:server` and `bgcb worker app` on one Redis answer a click."""
    from harness import start_redis

    from bgcb_testing.server import free_port

    env = Env(tmp_path / "venv")
    env.install("bgcb-celery", "gunicorn")
    (tmp_path / "app.py").write_text(CELERY_APP)
    redis = start_redis()
    port = free_port()
    variables = env.env(REDIS_URL=redis.url(), BGCB_CELERY_CONCURRENCY="1")
    worker = subprocess.Popen([str(env.bin / "bgcb"), "worker", "app"], cwd=tmp_path, env=variables, start_new_session=True)
    web = None
    try:
        web = _serve([str(env.bin / "gunicorn"), "-b", f"127.0.0.1:{port}", "app:server"], tmp_path, variables, port)
        assert _click(port, "go", "out") == "done 1"
    finally:
        for proc in (web, worker):
            if proc is not None:
                _stop(proc)
        redis.close()
