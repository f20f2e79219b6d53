"""The order in which queued jobs start: the core's rule, as one small data structure.

Higher ``priority`` first. Within a priority, each owner has a lane and the
lanes take turns: the next job comes from the lane served least recently (a
lane never served, or emptied before every queued lane of its priority was
served, goes first; ties go to the lane whose oldest job came first); within
a lane, first in first out. So a burst of one
owner's jobs delays another owner's job by at most one of its jobs per
worker, and a queue where every job has the same owner and priority is plain
first-in first-out. Two additions, used only when asked: a lane with a running
``cap`` (``max_running_per_owner``) is passed over while that many of its
jobs run (the backend reports ends with :meth:`FairQueue.finished`), its jobs
keeping their places; and a job to run again later waits outside the order
(:meth:`FairQueue.defer`) until it is due, then arrives anew.

:class:`FairQueue` is that rule over JSON-able state, for backends that keep
their queue as one value they rewrite inside a transaction (bgcb-testing,
bgcb-diskcache, and third-party ones): ``push``, ``pop``, ``remove`` and
``position``, ``defer``, ``finished`` and ``counts``. A backend that keeps its queue otherwise (bgcb-celery, in
Redis) implements the same rule, and the conformance kit checks it against
this one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from .record import Counts

__all__ = ["FairQueue"]


class FairQueue:
    """Queued job ids in the core's order; ``state`` is what :meth:`to_json` returned (None: empty)."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        #: [job id, lane, priority, arrival number, running cap or None], in arrival order.
        self.entries: list[list[Any]] = [list(e) + [None] * (5 - len(e)) for e in state.get("q", [])]
        #: Jobs of capped lanes taken and not yet finished: job id -> lane.
        self.running: dict[str, str] = dict(state.get("run", {}))
        #: Jobs waiting to be queued again: [due time, job id, lane, priority, cap], soonest first.
        self.later: list[list[Any]] = [list(e) for e in state.get("later", [])]
        #: "priority|lane" -> the serve count when that lane last gave a job (pruned, see :meth:`_prune`).
        self.served: dict[str, int] = dict(state.get("served", {}))
        self.served_count = int(state.get("n", 0))
        self.arrivals = int(state.get("seq", len(self.entries)))

    def to_json(self) -> dict[str, Any]:
        state: dict[str, Any] = {"q": self.entries, "served": self.served, "n": self.served_count, "seq": self.arrivals}
        if self.running:
            state["run"] = self.running
        if self.later:
            state["later"] = self.later
        return state

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, job_id: object) -> bool:
        return any(e[0] == job_id for e in self.entries) or any(e[1] == job_id for e in self.later)

    def ids(self) -> list[str]:
        """Every queued id, in the order they would start if nothing else arrived (jobs waiting to
        be queued again last, soonest due first)."""
        return [e[0] for e in self._order()] + [e[1] for e in self.later]

    def push(self, job_id: str, lane: str | None = None, priority: int | None = None, cap: int | None = None) -> None:
        self.arrivals += 1
        self.entries.append([job_id, lane or "", int(priority or 0), self.arrivals, cap])

    def pop(self, now: float | None = None) -> str | None:
        """Take the next job to start (first queuing the deferred jobs due by ``now``)."""
        self.release(time.time() if now is None else now)
        running = self._running_per_lane()
        for top in sorted({e[2] for e in self.entries}, reverse=True):
            lanes = {name: jobs for name, jobs in self._lanes(top).items() if not _full(jobs[0][4], running.get(name, 0))}
            if not lanes:
                continue  # every lane of this priority has its cap running: lower ones may go
            lane = min(lanes, key=lambda name: self._turn(name, lanes, top))
            entry = lanes[lane][0]
            self.entries.remove(entry)
            self.served_count += 1
            self.served[_key(top, lane)] = self.served_count
            self._prune()
            if entry[4] is not None:
                self.running[str(entry[0])] = lane
            return str(entry[0])
        return None

    def remove(self, job_id: str) -> bool:
        """Take ``job_id`` out (it was cancelled or expired while queued); True if it was there."""
        for entry in self.entries:
            if entry[0] == job_id:
                self.entries.remove(entry)
                self._prune()
                return True
        for waiting in self.later:
            if waiting[1] == job_id:
                self.later.remove(waiting)
                return True
        return False

    def finished(self, job_id: str) -> None:
        """``job_id`` stopped running (any end, or queued again): its lane's cap has room again."""
        self.running.pop(job_id, None)

    def defer(
        self, job_id: str, due: float, lane: str | None = None, priority: int | None = None, cap: int | None = None
    ) -> None:
        """Keep ``job_id`` out of the order until ``due`` (seconds since the epoch), then queue it anew."""
        self.finished(job_id)
        self.later.append([due, job_id, lane or "", int(priority or 0), cap])
        self.later.sort(key=lambda e: e[0])

    def release(self, now: float) -> list[str]:
        """Queue the deferred jobs due by ``now``; return their ids."""
        due = [e for e in self.later if e[0] <= now]
        self.later = self.later[len(due) :]
        for _, job_id, lane, priority, cap in due:
            self.push(job_id, lane, priority, cap)
        return [e[1] for e in due]

    def next_due(self) -> float | None:
        """When the soonest deferred job is due, or None."""
        return self.later[0][0] if self.later else None

    def counts(self, lane: str) -> Counts:
        """Queued jobs in all and in ``lane`` (deferred ones included), and ``lane``'s tracked running jobs."""
        queued = sum(1 for e in self.entries if e[1] == lane) + sum(1 for e in self.later if e[2] == lane)
        return Counts(len(self.entries) + len(self.later), queued, self._running_per_lane().get(lane, 0))

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

    def _running_per_lane(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for lane in self.running.values():
            counts[lane] = counts.get(lane, 0) + 1
        return counts

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
        one of their priority was (a lane that comes back after that goes first anyway, as a new lane).
        A lane that emptied and refills still waits its turn behind lanes of its priority served less
        recently. Each priority on its own, as bgcb-celery's ``ORDER_PUSH`` decides it."""
        floors: dict[int, int] = {}
        for entry in self.entries:
            n = self.served.get(_key(entry[2], entry[1]))
            if n is not None and n < floors.get(entry[2], n + 1):
                floors[entry[2]] = n
        present = {_key(e[2], e[1]) for e in self.entries}

        def kept(key: str, n: int) -> bool:
            floor = floors.get(int(key.split("|", 1)[0]))
            return key in present or (floor is not None and n > floor)

        self.served = {k: n for k, n in self.served.items() if kept(k, n)}


def _key(priority: int, lane: str) -> str:
    return f"{priority}|{lane}"


def _full(cap: int | None, running: int) -> bool:
    return cap is not None and running >= cap
