"""Checks of the worker loop's scheduling: jobs start in the order they were queued (or, for a backend that
declares "ordering", in the core's order: priorities, owners' turns), and no more run at once than the
backend promises."""

from __future__ import annotations

import pytest

from .kit import Kit


class QueueChecks:
    """FIFO start order and the concurrency bound, through the core."""

    def test_fifo_order(self, kit: Kit) -> None:
        if not kit.config.fifo:
            pytest.skip("the backend does not promise FIFO order (KitConfig.fifo = False)")
        if kit.workers:
            kit.fill(0.4)
        # each job lasts 0.15 s, so that jobs taken out of order start visibly out of order
        ids = [kit.sleeper(0.15, tick=0.05, tag=i) for i in range(6)]
        starts = [kit.value(j)["start"] for j in ids]
        late = [(i, i + 1) for i in range(len(starts) - 1) if starts[i + 1] < starts[i] - 0.05]
        assert not late, (
            f"jobs started out of submission order (pairs {late}, start times {starts}): the worker loop takes ids "
            "in the order bgcb_enqueue queued them, FIFO (see hookspecs.BackendSpec.bgcb_enqueue)."
        )

    def test_concurrency_bound(self, kit: Kit) -> None:
        bound = kit.workers
        if not bound:
            pytest.skip("the backend declares no concurrency bound (its 'workers' option or KitConfig.workers)")
        ids = [kit.sleeper(0.3, tick=0.05) for _ in range(bound + 2)]
        spans = [(v["start"], v["end"]) for v in (kit.value(j) for j in ids)]
        peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
        assert peak <= bound, (
            f"{peak} jobs ran at once with workers={bound}: the worker loop runs at most as many jobs as the backend "
            "promises (see hookspecs.BackendSpec.bgcb_configure)."
        )

    # -- the core's order (bgcb.queueing.FairQueue), for backends that declare "ordering" -----------------

    def _ordering(self, kit: Kit) -> int:
        if "ordering" not in kit.backend.capabilities():
            pytest.skip(
                "the backend does not declare 'ordering' (bgcb_capabilities): its queue is first in first out, "
                "and managers' owner= and priority= do not change the order jobs start in"
            )
        if not kit.workers:
            pytest.skip("the order is only visible with every worker busy: the kit needs KitConfig.workers")
        kit.backend.order_jobs("the conformance kit")
        return kit.workers

    def test_owners_take_turns(self, kit: Kit) -> None:
        workers = self._ordering(kit)
        kit.fill(0.6)
        burst = [kit.submit("sleep", {"seconds": 0.15, "tick": 0.05}, owner="alice") for _ in range(2 * workers + 3)]
        late = kit.submit("sleep", {"seconds": 0.15, "tick": 0.05}, owner="bob")
        place = kit.backend.status(late).position
        assert place == 1, (
            f"bob's one job queued behind {len(burst)} of alice's is at position {place}: with owners taking "
            "turns it is next but one (see hookspecs.BackendSpec.bgcb_enqueue and bgcb.queueing.FairQueue)."
        )
        starts = [kit.value(j)["start"] for j in (*burst[:2], late)]
        assert starts[2] <= starts[1] + 0.05, (
            f"bob's job started at {starts[2]:.3f}, after alice's second ({starts[1]:.3f}): the queue must let owners "
            "take turns (lane= of bgcb_enqueue; see bgcb.queueing.FairQueue)."
        )

    def test_a_higher_priority_starts_first(self, kit: Kit) -> None:
        workers = self._ordering(kit)
        kit.fill(0.6)
        low = [kit.submit("sleep", {"seconds": 0.15, "tick": 0.05}) for _ in range(2 * workers + 3)]
        high = kit.submit("sleep", {"seconds": 0.15, "tick": 0.05}, priority=5)
        place = kit.backend.status(high).position
        assert place == 0, (
            f"a priority-5 job queued behind {len(low)} priority-0 jobs is at position {place}, not 0 "
            "(priority= of bgcb_enqueue; see bgcb.queueing.FairQueue)."
        )
        starts = [kit.value(j)["start"] for j in (low[0], high)]
        assert starts[1] <= starts[0] + 0.05, (
            f"the priority-5 job started at {starts[1]:.3f}, after the first priority-0 one ({starts[0]:.3f}) "
            "(priority= of bgcb_enqueue; see bgcb.queueing.FairQueue)."
        )
