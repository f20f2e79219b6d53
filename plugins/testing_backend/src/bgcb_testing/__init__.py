"""bgcb-testing: the in-process backend, pytest fixtures and the conformance kit."""

from .backend import TestingBackend
from .client import DashClient, Run
from .server import LiveServer

__all__ = ["DashClient", "LiveServer", "Run", "TestingBackend"]
__version__ = "0.2.0"
