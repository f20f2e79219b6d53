"""Checks of the queue's limits and deferral, for backends that declare them (``bgcb_capabilities``):
a lane's running cap (``"running_limits"``), running a job again later without holding a worker
(``"deferral"``), and the queue's counts (``bgcb_counts``)."""

from __future__ import annotations

import pytest

from bgcb.jobs import State

from .kit import Kit, until


def _needs(kit: Kit, capability: str, why: str) -> None:
    if capability not in kit.backend.capabilities():
        pytest.skip(f"the backend does not declare {capability!r} (bgcb_capabilities): {why}")


class LimitChecks:
    """Running caps, deferral (retry_later, retries=) and counts, through the core."""

    def test_a_lanes_running_cap_holds_its_jobs_in_their_places(self, kit: Kit) -> None:
        _needs(kit, "running_limits", "max_running_per_owner has no effect on it")
        if not kit.workers or kit.workers < 2:
            pytest.skip("a cap shows only with two workers or more: the kit needs KitConfig.workers >= 2")
        kit.backend.order_jobs("the conformance kit")
        capped = [kit.submit("sleep", {"seconds": 0.3, "tick": 0.05}, owner="alice", running_cap=1) for _ in range(3)]
        other = kit.submit("sleep", {"seconds": 0.1, "tick": 0.05}, owner="bob", running_cap=1)
        spans = [(v["start"], v["end"]) for v in (kit.value(j) for j in capped)]
        overlaps = [(i, i + 1) for i in range(len(spans) - 1) if spans[i + 1][0] < spans[i][1] - 0.02]
        assert not overlaps, (
            f"alice's jobs with running_cap=1 ran at once (pairs {overlaps}, spans {spans}): while cap jobs of a lane "
            "run, the queue passes the lane over (cap= of bgcb_enqueue; see bgcb.queueing.FairQueue.pop)."
        )
        theirs = kit.value(other)["start"]
        assert theirs < spans[1][0], (
            f"bob's job started at {theirs:.3f}, after alice's second ({spans[1][0]:.3f}) although a worker was free: "
            "a capped lane must not hold up other lanes (see bgcb.queueing.FairQueue.pop)."
        )

    def test_a_job_run_again_later_frees_its_worker_meanwhile(self, kit: Kit) -> None:
        if "deferral" not in kit.backend.capabilities():
            outcome = kit.outcome(kit.submit("later", {"path": str(kit.tmp_path / "runs"), "seconds": 0.1}))
            assert outcome.kind == "error" and "deferral" in (outcome.error or {}).get("msg", ""), (
                f"without 'deferral' a job that calls bgcb.retry_later must fail saying so, got {outcome!r}"
            )
            pytest.skip("the backend does not declare 'deferral' (checked: retry_later fails with a clear message)")
        workers = kit.workers or 1
        later = [kit.submit("later", {"path": str(kit.tmp_path / f"runs-{i}"), "seconds": 2.0}) for i in range(workers)]
        assert until(lambda: all(kit.backend.status(j).retry_at for j in later), 10), (
            "jobs that called bgcb.retry_later did not go back to 'queued' with a retry time (see bgcb_defer)"
        )
        due = min(kit.backend.status(j).retry_at or 0.0 for j in later)
        meanwhile = kit.value(kit.submit("echo", "meanwhile"))
        assert meanwhile["at"] < due, (
            f"a job submitted while {workers} jobs waited to run again ended {meanwhile['at'] - due:.2f} s after they "
            "were due: a deferred job must not hold a worker while it waits (see hookspecs_queue.QueueSpec.bgcb_defer)."
        )
        runs = [kit.value(j)["run"] for j in later]
        assert runs == [2] * workers, f"each deferred job must run a second time once due, got runs {runs} (bgcb_defer)"
        assert [kit.backend.status(j).state for j in later] == [State.SUCCEEDED] * workers

    def test_a_failed_job_runs_again_up_to_its_retries(self, kit: Kit) -> None:
        _needs(kit, "deferral", "retries= cannot run a failed job again")
        spec = {"path": str(kit.tmp_path / "runs"), "succeed_on": 3}
        job_id = kit.submit("flaky", spec, retries=2, retry_delay=0.05)
        assert kit.value(job_id)["run"] == 3, "retries=2: a job failing twice succeeds on its third run (bgcb_defer)"
        assert kit.backend.status(job_id).attempt == 3
        spec = {"path": str(kit.tmp_path / "runs-b"), "succeed_on": 3}
        outcome = kit.outcome(kit.submit("flaky", spec, retries=1, retry_delay=0.05))
        assert outcome.kind == "error" and "run 2" in (outcome.error or {}).get("msg", ""), (
            f"retries=1: a job failing twice ends failed after its second run, got {outcome!r}"
        )

    def test_counts_say_how_many_wait_in_all_and_per_lane(self, kit: Kit) -> None:
        if not kit.has_hook("bgcb_counts"):
            pytest.skip("the backend has no bgcb_counts: max_queued and max_queued_per_owner have no effect on it")
        if not kit.workers:
            pytest.skip("queued jobs stay queued only with every worker busy: the kit needs KitConfig.workers")
        kit.backend.order_jobs("the conformance kit")
        kit.fill(0.8)
        for owner in ("alice", "alice", "alice", "bob"):
            kit.submit("sleep", {"seconds": 0.01, "tick": 0.01}, owner=owner)
        counts = kit.backend.counts("alice")
        assert counts is not None and (counts.queued, counts.lane_queued) == (4, 3), (
            f"with 3 of alice's and 1 of bob's jobs queued, bgcb_counts('alice') gave {counts!r}, not queued=4, "
            "lane_queued=3 (see hookspecs_queue.QueueSpec.bgcb_counts)"
        )
