"""The order in which queued jobs start: the core's rule, as one small data structure.

Higher ``priority`` first. Within a priority, each owner has a lane and the
lanes take turns: the next job comes from the lane served least recently (a
lane never served, or empty since, goes first; ties go to the lane whose
oldest job came first); within a lane, first in first out. So a burst of one
owner's jobs delays another owner's job by at most one of its jobs per
worker, and a queue where every job has the same owner and priority is plain
first-in first-out.

:class:`FairQueue` is that rule over JSON-able state, for backends that keep
their queue as one value they rewrite inside a transaction (bgcb-testing,
bgcb-diskcache, and third-party ones): ``push``, ``pop``, ``remove`` and
``position``. A backend that keeps its queue otherwise (bgcb-celery, in
Redis) implements the same rule, and the conformance kit checks it against
this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["FairQueue"]


class FairQueue:
    """Queued job ids in the core's order; ``state`` is what :meth:`to_json` returned (None: empty)."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        #: [job id, lane, priority, arrival number], in arrival order.
        self.entries: list[list[Any]] = [list(e) for e in state.get("q", [])]
        #: "priority|lane" -> the serve count when that lane last gave a job (pruned, see :meth:`_prune`).
        self.served: dict[str, int] = dict(state.get("served", {}))
        self.served_count = int(state.get("n", 0))
        self.arrivals = int(state.get("seq", len(self.entries)))

    def to_json(self) -> dict[str, Any]:
        return {"q": self.entries, "served": self.served, "n": self.served_count, "seq": self.arrivals}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, job_id: object) -> bool:
        return any(e[0] == job_id for e in self.entries)

    def ids(self) -> list[str]:
        """Every queued id, in the order they would start if nothing else arrived."""
        return [e[0] for e in self._order()]

    def push(self, job_id: str, lane: str | None = None, priority: int | None = None) -> None:
        self.arrivals += 1
        self.entries.append([job_id, lane or "", int(priority or 0), self.arrivals])

    def pop(self) -> str | None:
        """Take the next job to start."""
        if not self.entries:
            return None
        top = max(e[2] for e in self.entries)
        lanes = self._lanes(top)
        lane = min(lanes, key=lambda name: self._turn(name, lanes, top))
        entry = lanes[lane][0]
        self.entries.remove(entry)
        self.served_count += 1
        self.served[_key(top, lane)] = self.served_count
        self._prune()
        return str(entry[0])

    def remove(self, job_id: str) -> bool:
        """Take ``job_id`` out (it was cancelled or expired while queued); True if it was there."""
        for entry in self.entries:
            if entry[0] == job_id:
                self.entries.remove(entry)
                self._prune()
                return True
        return False

    def position(self, job_id: str) -> int | None:
        """How many queued jobs start before ``job_id`` if nothing else arrives (None: not queued)."""
        entry = next((e for e in self.entries if e[0] == job_id), None)
        if entry is None:
            return None
        lane_name, priority = entry[1], entry[2]
        ahead = sum(1 for e in self.entries if e[2] > priority)
        lanes = self._lanes(priority)
        order = sorted(lanes, key=lambda name: self._turn(name, lanes, priority))
        mine, rank = lanes[lane_name].index(entry), order.index(lane_name)
        for i, name in enumerate(order):
            ahead += min(len(lanes[name]), mine + (1 if i < rank else 0))
        return ahead

    # -- the rule ---------------------------------------------------------------------

    def _lanes(self, priority: int) -> dict[str, list[list[Any]]]:
        lanes: dict[str, list[list[Any]]] = {}
        for entry in self.entries:  # arrival order: each lane's list is first in first out
            if entry[2] == priority:
                lanes.setdefault(entry[1], []).append(entry)
        return lanes

    def _turn(self, lane: str, lanes: dict[str, list[list[Any]]], priority: int) -> tuple[int, int]:
        """A lane's place in the rotation: least recently served first, then oldest job first."""
        return self.served.get(_key(priority, lane), -1), lanes[lane][0][3]

    def _order(self) -> Iterator[list[Any]]:
        """What successive pops would give, in one pass: band by band, round after round, the lanes in
        turn order give one job each (a served lane goes to the end of the rotation)."""
        for priority in sorted({e[2] for e in self.entries}, reverse=True):
            lanes = self._lanes(priority)
            order = sorted(lanes, key=lambda name: self._turn(name, lanes, priority))
            for k in range(max(len(jobs) for jobs in lanes.values())):
                for name in order:
                    if k < len(lanes[name]):
                        yield lanes[name][k]

    def _prune(self) -> None:
        """Forget lanes whose last turn can no longer matter: absent ones served before every present
        one was (a lane that comes back after that goes first anyway). A lane that emptied and refills
        still waits its turn behind lanes served less recently."""
        present = {_key(e[2], e[1]) for e in self.entries}
        floor = min((self.served[k] for k in present if k in self.served), default=None)
        if floor is None:
            self.served = {}
            return
        self.served = {k: n for k, n in self.served.items() if k in present or n > floor}


def _key(priority: int, lane: str) -> str:
    return f"{priority}|{lane}"
