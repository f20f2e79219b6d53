"""Checks of the worker loop's scheduling: jobs start in the order they were queued, and no more run at once
than the backend promises."""

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
