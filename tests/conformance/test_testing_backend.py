"""The conformance kit against the in-process ``testing`` backend."""

from __future__ import annotations

from bgcb_testing.conformance import BackendConformance


class TestTestingBackend(BackendConformance):
    backend = "testing"
    options = {"workers": 2}


class TestTestingBackendOneWorker(BackendConformance):
    """With one worker, FIFO order and the bound are strict."""

    backend = "testing"
    options = {"workers": 1}
