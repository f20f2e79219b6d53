"""Checks of the ways a job ends early: cancelled while queued or running, timed out, lost with its worker.

Each also checks the observer events of its path (see :meth:`EventRecorder.expect`).
"""

from __future__ import annotations

import time

import pytest

from bgcb.jobs import State

from .kit import Kit


class EndingChecks:
    """Cancel, timeout and a killed worker, through the core."""

    def test_cancel_queued_job_never_starts(self, kit: Kit) -> None:
        if not kit.workers:
            pytest.skip("the backend declares no concurrency bound (KitConfig.workers): a queued job cannot be forced")
        blockers = kit.fill(0.5)
        marker = kit.tmp_path / "queued-ran"
        job_id = kit.submit("touch", str(marker))
        assert kit.backend.status(job_id).state is State.QUEUED, (
            "with every worker busy the new job must be queued (see hookspecs.BackendSpec.bgcb_enqueue)"
        )
        assert kit.backend.cancel(job_id) is True, "cancel of a queued job must return True (see bgcb.lifecycle.Lifecycle.cancel)"
        assert kit.backend.status(job_id).state is State.CANCELLED, (
            "a cancelled queued job is 'cancelled' at once (see hookspecs.BackendSpec.bgcb_cas)"
        )
        for blocker in blockers:
            kit.wait(blocker)
        time.sleep(0.5)
        assert not marker.exists(), (
            "a job cancelled while queued was started anyway: bgcb_cas removes the id from the queue when the record "
            "leaves 'queued', and the worker loop hands only queued ids to jobs.execute (see hookspecs.BackendSpec.bgcb_cas)."
        )
        outcome = kit.backend.result(job_id)
        assert kit.backend.status(job_id).state is State.CANCELLED and outcome is not None and outcome.kind == "cancelled", (
            f"a cancelled job stays 'cancelled' with Outcome.cancelled(), got {outcome!r} (see hookspecs.BackendSpec.bgcb_cas)."
        )
        kit.events.expect(job_id, State.CANCELLED, started=False if kit.in_process else None, ended_here=True, cancelled=True)

    def test_cancel_running_job(self, kit: Kit) -> None:
        marker = kit.tmp_path / "running"
        job_id = kit.sleeper(1.5, marker=str(marker), tick=0.05)
        kit.wait(job_id, {State.RUNNING}, what="start running")
        started = time.monotonic()
        assert kit.backend.cancel(job_id) is True, (
            "cancel of a running job must return True (see bgcb.lifecycle.Lifecycle.cancel)"
        )
        kit.wait(job_id, {State.CANCELLED}, timeout=kit.config.stop_timeout, what="be cancelled")
        time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
        state, outcome = kit.backend.status(job_id).state, kit.backend.result(job_id)
        assert state is State.CANCELLED and outcome is not None and outcome.kind == "cancelled", (
            f"a cancelled job must stay 'cancelled' with Outcome.cancelled(), later it was {state.value!r} / {outcome!r}: "
            "the worker's own final compare-and-set must fail on it (see hookspecs.BackendSpec.bgcb_cas)."
        )
        assert not marker.exists() or "finished" not in marker.read_text(), (
            "the cancelled callback ran to its end: the worker's channel reads the record (bgcb_read, drain=False), "
            "sees it is no longer running and stops the callback; a backend with bgcb_stop also stops it hard "
            "(see hookspecs.BackendSpec.bgcb_read, bgcb_stop)."
        )
        kit.events.expect(job_id, State.CANCELLED, started=kit.in_process or None, ended_here=True, cancelled=True)

    def test_cancel_is_idempotent(self, kit: Kit) -> None:
        job_id = kit.sleeper(2.0)
        assert kit.backend.cancel(job_id) is True, (
            "the first cancel of an active job returns True (see hookspecs.BackendSpec.bgcb_cas)"
        )
        assert kit.backend.cancel(job_id) is False, (
            "a second cancel of the same job returned True: a terminal state is final, so the second compare-and-set "
            "fails (see hookspecs.BackendSpec.bgcb_cas)."
        )
        kit.events.expect(job_id, State.CANCELLED, started=None, ended_here=True, cancelled=True)
        done = kit.submit("echo", "done")
        kit.value(done)
        assert kit.backend.cancel(done) is False, (
            "cancel of a job that has ended returns False: a terminal state is final (see hookspecs.BackendSpec.bgcb_cas)"
        )
        assert kit.backend.status(done).state is State.SUCCEEDED, (
            "cancelling a finished job changed its state: a terminal state is final (see hookspecs.BackendSpec.bgcb_cas)"
        )
        assert kit.value(done)["value"] == "done", (
            "cancelling a finished job changed its result: a terminal record is final (see hookspecs.BackendSpec.bgcb_cas)"
        )

    def test_timeout_ends_the_job(self, kit: Kit) -> None:
        marker = kit.tmp_path / "timeout"
        job_id = kit.submit("sleep", {"seconds": 3.0, "tick": 0.05, "marker": str(marker)}, timeout=0.5)
        status = kit.wait(job_id, timeout=0.5 + kit.config.stop_timeout, what="end after its 0.5 s timeout")
        outcome = kit.backend.result(job_id)
        assert status.state is State.TIMED_OUT and outcome is not None and outcome.kind == "timeout", (
            f"a job past its timeout ends 'timed_out' with a timeout outcome (bgcb.lifecycle.timeout_outcome), got "
            f"{status.state.value!r} / {outcome!r} (see hookspecs.BackendSpec.bgcb_enqueue, param timeout)."
        )
        assert "timed out" in (outcome.error or {}).get("msg", ""), (
            f"the timeout's message must say so, got {outcome.error!r} (see bgcb.lifecycle.timeout_outcome)"
        )
        kit.events.expect(job_id, State.TIMED_OUT, started=kit.in_process or None, ended_here=kit.in_process)

    def test_timeout_stops_a_callback_that_never_reports(self, kit: Kit) -> None:
        """A callback with no progress or set_props call can only be stopped by the backend (``bgcb_stop``, time limits)."""
        if not kit.has_hook("bgcb_stop"):
            pytest.skip(
                "the backend does not implement bgcb_stop: stopping is cooperative only, so a callback that never "
                "reports progress runs on past its timeout (its record still ends timed_out)"
            )
        marker = kit.tmp_path / "block"
        job_id = kit.submit("block", {"seconds": 30.0, "marker": str(marker)}, timeout=0.5)
        status = kit.wait(job_id, timeout=0.5 + kit.config.stop_timeout, what="end after its 0.5 s timeout")
        assert status.state is State.TIMED_OUT, f"a job past its timeout ends timed_out, got {status.state.value!r}"

        def ticks() -> int:
            return marker.read_text().count("tick") if marker.exists() else 0

        deadline, before = time.monotonic() + kit.config.stop_timeout, ticks()
        while True:
            time.sleep(0.5)
            now = ticks()
            if now == before:
                break  # no tick for half a second: the callback was stopped
            assert time.monotonic() < deadline, (
                f"the callback kept running {kit.config.stop_timeout:g} s after its job timed out: the backend "
                "never stopped it. Stop a job's execution timeout + cancel_grace seconds after it started "
                "(see hookspecs.BackendSpec.bgcb_enqueue, param timeout, and bgcb_stop)."
            )
            before = now

    def test_killed_worker_loses_the_job(self, kit: Kit) -> None:
        if kit.config.kill_worker is None:
            pytest.skip(
                "no kill_worker configured: for a backend with worker processes set KitConfig.kill_worker "
                "(e.g. bgcb_testing.conformance.kill_pid, or BGCB_CONFORMANCE_KILL_WORKER=pid) to check that a killed "
                "worker's job is declared lost"
            )
        job_id = kit.submit("report_pid", 60)
        deadline = time.monotonic() + kit.config.job_timeout
        pid = None
        while pid is None:
            for update in kit.backend.poll(job_id).updates:
                if update.get("type") == "progress":
                    pid = int(update["value"][0])
            assert time.monotonic() < deadline, (
                "the report_pid job never reported its worker's pid: polls deliver appended updates "
                "(see hookspecs.BackendSpec.bgcb_read)"
            )
            time.sleep(0.02)
        try:
            kit.config.kill_worker(kit.backend, job_id, pid)
            status = kit.wait(job_id, timeout=kit.config.crash_timeout, what="end after its worker was killed")
        finally:
            if kit.processes is not None:
                kit.processes.revive()
        outcome = kit.backend.result(job_id)
        assert status.state is State.LOST and outcome is not None and outcome.kind == "lost", (
            f"after its worker was killed the job ended {status.state.value!r} with {outcome!r}: it must end 'lost' "
            "within a bounded time, either because bgcb_read reports alive=False for it or because the backend's "
            "supervisor calls jobs.lost (see hookspecs.BackendSpec.bgcb_read, bgcb_configure)."
        )
        kit.events.expect(job_id, State.LOST, started=None, ended_here=False)

    # -- abandoned jobs (optional hooks bgcb_touch and bgcb_seen) ---------------------------------------

    def _abandoning(self, kit: Kit) -> None:
        if not (kit.has_hook("bgcb_touch") and kit.has_hook("bgcb_seen")):
            pytest.skip(
                "the backend does not implement bgcb_touch and bgcb_seen: jobs whose page stopped polling are "
                "never cancelled as abandoned"
            )

    def test_an_abandoned_running_job_is_cancelled(self, kit: Kit) -> None:
        self._abandoning(kit)
        job_id = kit.submit("sleep", {"seconds": 20, "tick": 0.05}, abandon_after=1.5)
        deadline = time.monotonic() + kit.config.job_timeout
        while kit.backend.poll(job_id).status.state is State.QUEUED:  # its page polls until it starts...
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.2)
        status = kit.wait(job_id, timeout=1.5 + 4)  # ...then goes away
        assert status.state is State.CANCELLED, (
            f"a running job nobody polled for abandon_after (1.5 s) ended {status.state.value}, not cancelled: "
            "bgcb_seen must return when bgcb_touch last noted a poll (None: never), and the core's watch in the "
            "worker cancels it (see hookspecs.BackendSpec.bgcb_seen)."
        )

    def test_an_abandoned_queued_job_never_starts(self, kit: Kit) -> None:
        self._abandoning(kit)
        if not kit.workers:
            pytest.skip("the backend declares no concurrency bound (KitConfig.workers): a queued job cannot be forced")
        kit.fill(2.5)
        job_id = kit.submit("sleep", {"seconds": 0.1, "tick": 0.05}, abandon_after=1.0)
        for _ in range(3):  # a page polling keeps it: the core notes the polls with bgcb_touch
            kit.backend.poll(job_id)
            time.sleep(0.3)
        status = kit.wait(job_id)
        assert status.state is State.CANCELLED and status.started_at is None, (
            f"a queued job whose page stopped polling ended {status.state.value} (started at {status.started_at}): "
            "once its page is silent for abandon_after it must never start (see hookspecs.BackendSpec.bgcb_touch)."
        )
