"""bgcb's conformance kit: the contract of :mod:`bgcb.hookspecs`, checked
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
from .kit import KillWorker, Kit, KitConfig, kill_pid, open_backend
from .suite import BackendConformance

__all__ = ["APP_MODULE", "BackendConformance", "Kit", "KitConfig", "KillWorker", "kill_pid", "open_backend"]
