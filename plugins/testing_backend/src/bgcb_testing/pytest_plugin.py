"""pytest fixtures for testing Dash background callbacks without a server.

    def test_report(bgcb_manager, bgcb_client):
        app = make_app(background_callback_manager=bgcb_manager)
        run = bgcb_client(app).run([("out", "children")], [("go", "n_clicks", 1)])
        assert run.output("out", "children") == "done"

``bgcb_manager`` uses the in-process ``testing`` backend unless
``--bgcb-backend`` (or ``$BGCB_BACKEND``) names another.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .client import DashClient


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bgcb")
    group.addoption("--bgcb-backend", default=None, help="bgcb backend for the bgcb_manager fixture (default: testing)")


@pytest.fixture
def bgcb_backend_name(request: pytest.FixtureRequest) -> str:
    """The backend the bgcb fixtures use."""
    return request.config.getoption("--bgcb-backend") or os.environ.get("BGCB_BACKEND") or "testing"


@pytest.fixture
def bgcb_manager(bgcb_backend_name: str) -> Iterator[Any]:
    """A bgcb Dash manager, closed after the test."""
    import bgcb

    manager = bgcb.manager(bgcb_backend_name)
    yield manager
    manager.close()


@pytest.fixture
def bgcb_client() -> Callable[[Any], DashClient]:
    """Make a protocol client for a Dash app: ``bgcb_client(app).run(...)``."""

    def make(app: Any) -> DashClient:
        return DashClient.wsgi(app).load()

    return make
