"""bgcb-diskcache: Dash background callbacks on a local diskcache directory,
with a FIFO queue and warm worker processes; no server to run."""

from __future__ import annotations

from .backend import DiskcacheBackend, default_directory

__all__ = ["DiskcacheBackend", "default_directory"]
