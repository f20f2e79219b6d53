"""``bgcb worker APP`` serves the backend the app configured, like ``celery -A app worker``."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from bgcb import provider
from bgcb.cli import app_backend as worker_backend
from bgcb.errors import ConfigurationError


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    made: list[str] = []

    def write(body: str) -> str:
        name = f"wd_app_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text("import bgcb\n" + textwrap.dedent(body))
        made.append(name)
        return name

    yield write
    for name in made:
        sys.modules.pop(name, None)
    for backend in provider.loaded():
        backend.close()


def test_uses_the_instance_and_options_the_app_configured(app_module) -> None:
    name = app_module("manager = bgcb.manager('testing', workers=3)\n")
    backend = worker_backend(name, None)
    assert backend is sys.modules[name].manager.backend
    assert backend.options["workers"] == 3 and backend.role == "worker"


def test_backend_name_narrows_the_choice(app_module) -> None:
    name = app_module("a = bgcb.manager('testing', workers=1)\nb = bgcb.manager('sqlite')\n")
    assert worker_backend(name, "testing") is sys.modules[name].a.backend


def test_several_backends_are_named_in_the_error(app_module) -> None:
    name = app_module("a = bgcb.manager('testing', workers=1)\nb = bgcb.manager('testing', workers=2)\n")
    with pytest.raises(ConfigurationError) as err:
        worker_backend(name, None)
    text = str(err.value)
    assert "configures 2 bgcb backends" in text and "workers=1" in text and "workers=2" in text and "--backend" in text


def test_app_without_manager_is_explained_or_uses_the_named_backend(app_module) -> None:
    name = app_module("x = 1\n")
    with pytest.raises(ConfigurationError, match="made no bgcb manager"):
        worker_backend(name, None)
    assert worker_backend(name, "testing").name == "testing"
