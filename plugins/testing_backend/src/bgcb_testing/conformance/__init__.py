"""bgcb's conformance kit: backend contract 2 (:mod:`bgcb.hookspecs`), checked
against any backend, by name.

Run it on an installed backend::

    pytest --pyargs bgcb_testing.conformance --bgcb-backend=mine
    python -m bgcb_testing.conformance mine -o workers=2

or subclass :class:`BackendConformance` in your own tests::

    class TestMine(BackendConformance):
        backend = "mine"

Jobs run the Dash callbacks of :mod:`bgcb_testing.conformance.callbacks`; a
backend whose workers are separate processes must make them import that
module (:data:`APP_MODULE`), e.g. through ``app_option`` or ``spawn_workers``.
"""

from __future__ import annotations

from .callbacks import APP_MODULE
from .config import KillWorker, KitConfig, kill_pid
from .kit import Kit, open_backend
from .observing import EventRecorder, HookSpy
from .suite import BackendConformance

__all__ = [
    "APP_MODULE",
    "BackendConformance",
    "EventRecorder",
    "HookSpy",
    "KillWorker",
    "Kit",
    "KitConfig",
    "kill_pid",
    "open_backend",
]
