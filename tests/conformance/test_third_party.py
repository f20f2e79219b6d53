"""Acceptance of issue 5: the third-party example backend ``bgcb-sqlite``.

Needs ``pip install ./examples/third_party_backend`` in the test environment
(as a user would install it); skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

bgcb_sqlite = pytest.importorskip(
    "bgcb_sqlite", reason="bgcb-sqlite is not installed: pip install ./examples/third_party_backend"
)

import bgcb  # noqa: E402
from bgcb.errors import BackendInvalid  # noqa: E402
from bgcb.provider import Backend, installed, load  # noqa: E402
from bgcb_testing import DashClient  # noqa: E402
from bgcb_testing.conformance import BackendConformance, KitConfig, kill_pid  # noqa: E402

NAME = "sqlite"


class TestSqliteConformance(BackendConformance):
    """In-process worker threads (the default)."""

    backend = NAME


class TestSqliteWorkerProcesses(BackendConformance):
    """The web side runs no worker; a ``bgcb worker`` process shares the SQLite
    file, and the job of a SIGKILLed worker is declared lost (bgcb_read reports alive=False)."""

    backend = NAME
    options = {"workers": 0}
    worker_options = {"workers": 2}
    workers = 2
    spawn_workers = 1
    kill_worker = kill_pid

    def conformance_config(self, pytestconfig: pytest.Config) -> KitConfig:
        config = super().conformance_config(pytestconfig)
        config.options["path"] = os.path.join(tempfile.mkdtemp(prefix="bgcb-kit-sqlite-"), "jobs.db")
        return config


def test_found_by_entry_point_and_listed() -> None:
    info = installed().get(NAME)
    assert info is not None and info.distribution == "bgcb-sqlite", f"entry point {NAME!r} missing: {installed()}"
    listing = subprocess.run(
        [sys.executable, "-m", "bgcb.cli", "backends"], capture_output=True, text=True, env={**os.environ, "BGCB_BACKEND": NAME}
    )
    assert "* sqlite" in listing.stdout and "bgcb-sqlite" in listing.stdout, listing.stdout + listing.stderr


def test_dash_app_runs_on_it_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``BGCB_BACKEND=sqlite`` and an unchanged app: its background callbacks run."""
    from dash import Dash, Input, Output, html

    monkeypatch.setenv("BGCB_BACKEND", NAME)
    manager = bgcb.manager()
    assert manager.backend.name == NAME
    app = Dash(__name__, background_callback_manager=manager)
    app.layout = html.Div([html.Button(id="tp-btn"), html.Div(id="tp-out"), html.Div(id="tp-prog")])

    @app.callback(
        Output("tp-out", "children"),
        Input("tp-btn", "n_clicks"),
        background=True,
        progress=[Output("tp-prog", "children")],
        prevent_initial_call=True,
    )
    def work(set_progress, n):
        for i in range(3):
            set_progress(str(i))
        return f"sqlite says {n}"

    try:
        run = DashClient.wsgi(app).load().run([("tp-out", "children")], [("tp-btn", "n_clicks", 7)])
    finally:
        manager.close()
    assert run.output("tp-out", "children") == "sqlite says 7", run.final
    assert not run.job.split("~")[0].isdigit()


class _NoCas(bgcb_sqlite.SqliteBackend):
    bgcb_cas = None  # a required hook removed


def test_missing_hook_refused_on_load() -> None:
    with pytest.raises(BackendInvalid, match="the required hook bgcb_cas is missing"):
        Backend.from_plugin("sqlite-nocas", _NoCas())


def test_missing_hook_fails_the_kit() -> None:
    config = KitConfig(backend="sqlite-nocas", plugin=_NoCas)
    with pytest.raises(AssertionError, match=r"does not meet bgcb's backend contract 2(.|\n)*required hook bgcb_cas is missing"):
        BackendConformance().test_plugin_meets_the_contract(config)


def _broken_distribution(root: Path) -> Path:
    """A distribution on sys.path whose backend lacks ``bgcb_cas``, found by entry point."""
    root.mkdir()
    (root / "bgcb_nocas.py").write_text(
        textwrap.dedent(
            """
            from bgcb_sqlite import SqliteBackend

            class NoCas(SqliteBackend):
                bgcb_cas = None
            """
        )
    )
    info = root / "bgcb_nocas-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bgcb-nocas\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bgcb.backends]\nnocas = bgcb_nocas:NoCas\n")
    return root


def test_missing_hook_by_name_fails_load_and_kit(tmp_path: Path) -> None:
    root = _broken_distribution(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    loading = subprocess.run(
        [sys.executable, "-c", "import bgcb.provider as p; p.load('nocas')"], capture_output=True, text=True, env=env
    )
    assert loading.returncode != 0
    assert "BackendInvalid" in loading.stderr and "required hook bgcb_cas is missing" in loading.stderr, loading.stderr
    kit = subprocess.run(
        [sys.executable, "-m", "bgcb_testing.conformance", "nocas", "--", "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    out = kit.stdout + kit.stderr
    assert kit.returncode != 0, out
    # the kit's own check, and the loading every other check starts with
    assert "does not meet bgcb's backend contract 2" in out and "required hook bgcb_cas is missing" in out, out
    assert "loading backend 'nocas' failed" in out, out


def test_load_by_name_uses_the_installed_distribution() -> None:
    backend = load(NAME, fresh=True)
    try:
        assert isinstance(backend.plugin, bgcb_sqlite.SqliteBackend)
        assert backend.info is not None and backend.info.distribution == "bgcb-sqlite"
    finally:
        backend.close()
