"""bgcb-testing: the in-process backend, pytest fixtures and the conformance kit."""

from bgcb.contract import built_for

built_for("bgcb-testing", 2)  # a core of another backend contract is refused here, at import
# ruff: noqa: E402 (the imports below come after the contract check)

from importlib.metadata import version as _version

from .backend import TestingBackend
from .client import DashClient, Run
from .server import LiveServer

__all__ = ["DashClient", "LiveServer", "Run", "TestingBackend"]
__version__ = _version("bgcb-testing")
