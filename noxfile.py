"""Sessions: ``tests`` (every Dash version, every backend), ``lint``.

python3 -m pip install nox && python3 -m nox
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

DASH_VERSIONS = ["2.18.2", "3.4.0", "4.4.1"]
DISTRIBUTIONS = ["./core", "./plugins/testing_backend", "./plugins/diskcache_backend"]
#: Installed as a user installs it (not editable): the third-party backend the conformance tests check.
EXAMPLES = ["./examples/third_party_backend"]
#: Backends the integration suite runs on, in every Dash version.
BACKENDS = ["testing", "diskcache"]
#: Tools for tests/diskcache (real processes, gunicorn) and tests/browser.
TEST_TOOLS = ["psutil", "gunicorn", "selenium"]


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff on everything (runs in nox's own environment)."""
    session.run("python", "-m", "pip", "install", "-q", "ruff", external=True)
    session.run("python", "-m", "ruff", "check", ".", external=True)


@nox.session
@nox.parametrize("dash", DASH_VERSIONS)
def tests(session: nox.Session, dash: str) -> None:
    """Unit tests, then the integration suite once per backend."""
    session.install(*DISTRIBUTIONS, *EXAMPLES, f"dash[async]=={dash}", "pytest>=7", "plotly", *TEST_TOOLS)
    args = session.posargs or []
    session.run("pytest", "tests/unit", "-q", *args)
    # the conformance kit on every installed backend, and its self-tests
    session.run("pytest", "tests/conformance", "-q", *args)
    for backend in os.environ.get("BGCB_TEST_BACKENDS", ",".join(BACKENDS)).split(","):
        session.log(f"integration suite on backend {backend!r}, dash {dash}")
        session.run("pytest", "tests/integration", "-q", *args, env={"BGCB_BACKEND": backend})
    session.run("pytest", "tests/diskcache", "tests/browser", "-q", *args)
