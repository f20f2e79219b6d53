"""Shared fixtures: the feature app served over real HTTP."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgcb_testing import LiveServer

APPS = Path(__file__).parent / "apps"
sys.path.insert(0, str(APPS))
os.environ.setdefault("BGCB_BACKEND", "testing")
# A queue of this run's own for the diskcache backend (its default is per project folder).
os.environ.setdefault("BGCB_DISKCACHE_DIRECTORY", tempfile.mkdtemp(prefix="bgcb-it-"))
# Workers started by a backend import the app from here too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")]))

if os.environ["BGCB_BACKEND"] == "celery":
    # bgcb-celery: a Redis of our own and a Celery worker for feature_app, started before any test imports the app.
    sys.path.insert(0, str(Path(__file__).parent / "celery"))
    from celery_integration import pytest_configure, pytest_unconfigure  # noqa: E402, F401


@pytest.fixture(scope="session")
def feature_app():
    import feature_app

    return feature_app


@pytest.fixture(scope="session")
def live_server(feature_app) -> Iterator[LiveServer]:
    server = LiveServer(feature_app.app)
    yield server
    server.stop()


@pytest.fixture
def client(live_server):
    from bgcb_testing import DashClient

    return DashClient.http(live_server.url).load()


# -- measured figures: what fault, browser and scenario tests print, shown after a quiet (-q) run -----------

#: A line a test prints to report a measured figure: "<scenario>: <words and a number>".
_FIGURE = __import__("re").compile(r"^[\w'(),./ -]{3,80}: .*\d")
_figures: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        for line in report.capstdout.splitlines():
            if _FIGURE.match(line) and len(line) < 300:
                _figures.append((report.nodeid.split("::")[-1], line.strip()))


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _figures:
        terminalreporter.section("measured figures")
        for test, line in _figures:
            terminalreporter.write_line(f"{line}    [{test}]")
