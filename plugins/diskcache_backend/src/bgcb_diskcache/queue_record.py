"""The ``queue`` key of a bgcb-diskcache store: the core's :class:`~bgcb.queueing.FairQueue` as JSON,
rebuilt from the queued records should it prove unreadable, with the deferred jobs' due times in it."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from diskcache import Cache

from bgcb import Counts
from bgcb.queueing import FairQueue

QUEUE = "queue"

log = logging.getLogger("bgcb.diskcache")


class QueueRecord:
    """The queue of a :class:`~bgcb_diskcache.store.Store` (mixed into it)."""

    cache: Cache
    directory: str

    if TYPE_CHECKING:  # the store's own

        def _load(self, key: str, kind: type) -> tuple[Any, float | None, bool]: ...

        def _warn(self, key: str, why: str) -> None: ...

        def _set(self, key: str, value: Any, expire: float | None = None) -> None: ...

        def _record(self, job_id: str) -> tuple[dict[str, Any] | None, float | None]: ...

    def queue(self) -> list[str]:
        """Queued ids in the order they will start (the core's :class:`~bgcb.queueing.FairQueue`)."""
        return self.fair().ids()

    def fair(self) -> FairQueue:
        state, _, bad = self._load(QUEUE, dict)
        try:
            if not bad:
                return FairQueue(state)
        except (TypeError, ValueError, KeyError, IndexError):
            self._warn(QUEUE, "it is not a queue bgcb wrote")
        return self._rebuilt_queue()

    def _rebuilt_queue(self) -> FairQueue:
        """The queue as the queued records say (oldest first), after its key proved unreadable."""
        queued = []
        for key in list(self.cache.iterkeys()):
            if isinstance(key, str) and key.startswith("r:"):
                record, _ = self._record(key[2:])
                if record is not None and record["state"] == "queued":
                    at, lane, priority, cap = record.get("at") or 0, record.get("lane"), record.get("priority"), record.get("cap")
                    queued.append((float(at), key[2:], lane, priority, cap))
        fair = FairQueue()
        for _, job_id, lane, priority, cap in sorted(queued):
            fair.push(
                job_id,
                lane if isinstance(lane, str) else None,
                priority if isinstance(priority, int) else None,
                cap if isinstance(cap, int) else None,
            )
        self._set(QUEUE, fair.to_json())
        log.warning("bgcb-diskcache: rebuilt the queue of %s from its %d queued record(s)", self.directory, len(fair))
        return fair

    def defer(self, job_id: str, delay: float, lane: str | None, priority: int | None, cap: int | None) -> None:
        """Keep ``job_id`` out of the order for ``delay`` seconds (workers queue it once due, in a claim)."""
        with self.cache.transact(retry=True):
            fair = self.fair()
            fair.defer(job_id, time.time() + delay, lane, priority, cap)
            self._set(QUEUE, fair.to_json())

    def counts(self, lane: str) -> Counts:
        return self.fair().counts(lane)

    def has_queued(self) -> bool:
        """A cheap read, so that idle workers woken together do not all take the write lock for nothing."""
        fair = self.fair()
        return len(fair) > 0 or self.due(fair)

    def due(self, fair: FairQueue | None = None) -> bool:
        """Whether a deferred job is due to be queued (the supervisor then wakes a worker)."""
        soonest = (fair or self.fair()).next_due()
        return soonest is not None and soonest <= time.time()
