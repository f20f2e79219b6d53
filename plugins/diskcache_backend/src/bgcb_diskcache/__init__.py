"""bgcb-diskcache: Dash background callbacks on a local diskcache directory,
with a FIFO queue and warm worker processes; no server to run."""

from __future__ import annotations

from bgcb.contract import built_for

built_for("bgcb-diskcache", 2)  # a core of another backend contract is refused here, at import
# ruff: noqa: E402 (the imports below come after the contract check)

from .backend import DiskcacheBackend, default_directory

__all__ = ["DiskcacheBackend", "default_directory"]
