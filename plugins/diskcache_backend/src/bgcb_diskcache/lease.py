"""The pool's heartbeat record: which supervisor serves a directory, how many workers it runs, and the
portable path's lock as a lease in the same record (taken over once its heartbeat is ``dead_after`` old)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from diskcache import Cache

POOL = "pool"


class PoolRecord:
    """The ``pool`` key of a :class:`~bgcb_diskcache.store.Store` (mixed into it)."""

    cache: Cache

    if TYPE_CHECKING:  # the store's own

        def _get(self, key: str, default: Any, kind: type) -> Any: ...

        def _set(self, key: str, value: Any, expire: float | None = None) -> None: ...

    def beat(self, workers: int, owner: str | None = None) -> bool:
        """Write the pool's heartbeat; with ``owner`` (a lease, the portable lock) only while it holds it."""
        with self.cache.transact(retry=True):
            if owner is not None and (self.pool() or {}).get("owner", owner) != owner:
                return False
            self._set(POOL, {"pid": os.getpid(), "beat": time.time(), "workers": workers, "owner": owner})
        return True

    def take_pool(self, owner: str, dead_after: float) -> bool:
        """Take the pool's lease unless another owner's heartbeat is younger than ``dead_after``."""
        with self.cache.transact(retry=True):
            info = self.pool()
            if info is not None and info.get("owner") != owner and time.time() - info["beat"] < dead_after:
                return False
            self._set(POOL, {"pid": os.getpid(), "beat": time.time(), "workers": 0, "owner": owner})
        return True

    def pool(self) -> dict[str, Any] | None:
        """The heartbeat of the pool serving this directory, if one beat."""
        info = self._get(POOL, None, dict)
        return info if isinstance(info, dict) and isinstance(info.get("beat"), (int, float)) else None

    def forget_pool(self, owner: str | None = None) -> None:
        with self.cache.transact(retry=True):
            if owner is None or (self.pool() or {}).get("owner") == owner:
                self.cache.delete(POOL)
