"""The kit itself: each check fails, with its message, on a backend that breaks the rule it checks.

The faulty backends are variants of the ``testing`` backend (storage faults,
caught by the checks) or small plugins that break the contract's shape
(refused on loading with BackendInvalid naming the hook, and by the kit's
contract check).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bgcb import Stored, hookimpl, observers
from bgcb.errors import BackendInvalid
from bgcb.hookspecs import Role
from bgcb.lifecycle import Lifecycle
from bgcb.provider import Backend
from bgcb.queueing import FairQueue
from bgcb_testing import TestingBackend
from bgcb_testing.conformance import BackendConformance, EventRecorder, Kit, KitConfig

# -- storage and worker-loop faults --------------------------------------------------------


class _Stack(FairQueue):
    def pop(self) -> str | None:  # the newest first
        return str(self.entries.pop()[0]) if self.entries else None


class LastInFirstOut(TestingBackend):
    def __init__(self) -> None:
        super().__init__()
        self._queue = _Stack()


class DeclaresOrderingKeepsFifo(TestingBackend):
    """Says it follows the core's order, but queues every job plainly."""

    @hookimpl
    def bgcb_enqueue(self, job_id: str, job: str, data: str, ttl: float) -> None:
        super().bgcb_enqueue(job_id, job, data, ttl, None, None, None)


class DeclaresCapsIgnoresThem(TestingBackend):
    """Says it honours a lane's running cap, but queues every job without it."""

    @hookimpl
    def bgcb_enqueue(self, job_id: str, job: str, data: str, ttl: float, lane: str | None, priority: int | None) -> None:
        super().bgcb_enqueue(job_id, job, data, ttl, lane, priority, None)


class DeferHoldsTheWorker(TestingBackend):
    """Says it defers, but waits out the delay in the worker that ran the job."""

    @hookimpl
    def bgcb_defer(self, job_id: str, delay: float, lane: str | None, priority: int | None, cap: int | None) -> None:
        time.sleep(delay)
        super().bgcb_defer(job_id, 0.0, lane, priority, cap)


class CountsNothing(TestingBackend):
    @hookimpl
    def bgcb_counts(self, lane: str) -> tuple[int, int, int]:
        return (0, 0, 0)


class MoreThreadsThanPromised(TestingBackend):
    @hookimpl
    def bgcb_configure(self, options: dict[str, Any], role: Role, jobs: Lifecycle) -> None:
        super().bgcb_configure({**options, "workers": 2 * options["workers"]}, role, jobs)


class CasIgnoresExpect(TestingBackend):
    @hookimpl
    def bgcb_cas(self, job_id: str, expect: Sequence[str], state: str, data: str, ttl: float) -> bool:
        with self._lock:
            current = self._live(job_id)
            expect = [current.state] if current else expect  # whatever it is: a terminal state is not final
        return super().bgcb_cas(job_id, expect, state, data, ttl)


class CasAlwaysSaysYes(TestingBackend):
    @hookimpl
    def bgcb_cas(self, job_id: str, expect: Sequence[str], state: str, data: str, ttl: float) -> bool:
        super().bgcb_cas(job_id, expect, state, data, ttl)
        return True  # two processes both believe they won


class LatestUpdateWins(TestingBackend):
    @hookimpl
    def bgcb_append(self, job_id: str, update: str) -> None:
        with self._lock:
            record = self._live(job_id)
            if record is not None:
                record.updates[:] = [update]  # Dash's own managers: the latest wins, the rest is lost


class MergesEqualUpdates(TestingBackend):
    @hookimpl
    def bgcb_append(self, job_id: str, update: str) -> None:
        with self._lock:
            record = self._live(job_id)
            if record is not None and record.updates[-1:] != [update]:
                record.updates.append(update)


class DrainKeepsUpdates(TestingBackend):
    @hookimpl
    def bgcb_read(self, job_id: str, drain: bool) -> Stored | None:
        stored = super().bgcb_read(job_id, False)
        if stored is not None and drain:
            with self._lock:
                stored.updates = list(self._records[job_id].updates)  # delivered, and delivered again
        return stored


class LosesPosition(TestingBackend):
    @hookimpl
    def bgcb_read(self, job_id: str, drain: bool) -> Stored | None:
        stored = super().bgcb_read(job_id, drain)
        if stored is not None and drain:
            stored.position = None  # the browser's polls never see it
        return stored


class CacheIgnoresTtl(TestingBackend):
    @hookimpl
    def bgcb_cache_put(self, cache_key: str, outcome: str, ttl: float) -> None:
        super().bgcb_cache_put(cache_key, outcome, 10**9)  # kept for good


class LoadReencodes(TestingBackend):
    @hookimpl
    def bgcb_load(self, job_id: str) -> str | None:
        text = super().bgcb_load(job_id)
        return json.dumps(json.loads(text)) if text else text  # same data, other text


class WaitsForTheJob(TestingBackend):
    @hookimpl
    def bgcb_enqueue(self, job_id: str, job: str, data: str, ttl: float) -> None:
        super().bgcb_enqueue(job_id, job, data, ttl, None, None, None)
        deadline = time.monotonic() + 10
        while self._records[job_id].state in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.01)  # the web request waits for the job


class StopsNothing(TestingBackend):
    """Claims a hard stop (bgcb_stop) but never stops anything: its threads run callbacks past their timeout."""

    @hookimpl
    def bgcb_stop(self, job_id: str, after: float) -> None:
        pass


@contextmanager
def _kit(plugin: type, tmp_path: Path) -> Iterator[Kit]:
    backend = Backend.from_plugin("faulty", plugin(), {"workers": 2})
    recorder = EventRecorder()
    observers.register(recorder)
    kit = Kit(backend, KitConfig(backend="faulty", plugin=plugin, job_timeout=10, stop_timeout=3), tmp_path, events=recorder)
    try:
        yield kit
    finally:
        kit.cleanup()
        observers.unregister(recorder)
        backend.close()


FAULTS = [
    (LastInFirstOut, "test_fifo_order", r"jobs started out of submission order.*FIFO"),
    (MoreThreadsThanPromised, "test_concurrency_bound", r"jobs ran at once with workers=2"),
    (DeclaresOrderingKeepsFifo, "test_owners_take_turns", r"with owners taking turns it is next but one"),
    (DeclaresOrderingKeepsFifo, "test_a_higher_priority_starts_first", r"a priority-5 job queued behind"),
    (DeclaresCapsIgnoresThem, "test_a_lanes_running_cap_holds_its_jobs_in_their_places", r"ran at once .* passes the lane"),
    (DeferHoldsTheWorker, "test_a_job_run_again_later_frees_its_worker_meanwhile", r"must not hold a worker"),
    (CountsNothing, "test_counts_say_how_many_wait_in_all_and_per_lane", r"bgcb_counts\('alice'\) gave"),
    (CasIgnoresExpect, "test_cas_is_compare_and_set", r"it writes only when the current state is in expect"),
    (CasAlwaysSaysYes, "test_cas_has_one_winner", r"concurrent bgcb_cas.*exactly one wins"),
    (CasAlwaysSaysYes, "test_cancel_running_job", r"bgcb_job_finished fires exactly once"),
    (LatestUpdateWins, "test_drain_delivers_each_update_once_in_order", r"none merged or dropped"),
    (LatestUpdateWins, "test_progress_delivered_once_in_order", r"exactly once, oldest first, none lost"),
    (LatestUpdateWins, "test_set_props_and_progress_in_order", r"several set_props between two polls must all arrive"),
    (MergesEqualUpdates, "test_drain_delivers_each_update_once_in_order", r"none merged or dropped, even two equal ones"),
    (DrainKeepsUpdates, "test_drain_delivers_each_update_once_in_order", r"drained updates are removed"),
    (DrainKeepsUpdates, "test_progress_delivered_once_in_order", r"none repeated"),
    (LosesPosition, "test_queue_positions_and_removal", r"reports it on every read, drain or not"),
    (CacheIgnoresTtl, "test_cache_pair_and_expiry", r"cached outcomes expire after their ttl"),
    (LoadReencodes, "test_texts_come_back_unchanged", r"returned unchanged, byte for byte"),
    (WaitsForTheJob, "test_enqueue_does_not_run_the_job", r"the job ran before submit returned"),
    (StopsNothing, "test_timeout_stops_a_callback_that_never_reports", r"kept running .* after its job timed out"),
]


@pytest.mark.parametrize("plugin, check, message", FAULTS, ids=[f"{p.__name__}-{c}" for p, c, _ in FAULTS])
def test_check_fails_with_its_message(plugin: type, check: str, message: str, tmp_path: Path) -> None:
    with _kit(plugin, tmp_path) as kit:
        with pytest.raises(AssertionError, match=message):
            getattr(BackendConformance(), check)(kit)


def test_same_checks_pass_on_the_sound_backend(tmp_path: Path) -> None:
    with _kit(TestingBackend, tmp_path) as kit:
        suite = BackendConformance()
        for check in sorted({c for _, c, _ in FAULTS}) + ["test_forged_ids_reach_no_hook"]:
            try:
                getattr(suite, check)(kit)
            except pytest.skip.Exception:
                assert check == "test_timeout_stops_a_callback_that_never_reports", f"{check} skipped on the sound backend"


# -- the core's guards: the checks fail when the core lets a fault through ---------------------


def test_forged_ids_check_catches_a_core_without_the_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bgcb.lifecycle.is_job_id", lambda value: isinstance(value, str))
    with _kit(TestingBackend, tmp_path) as kit:
        with pytest.raises(AssertionError, match=r"the malformed id '\.\./x' reached the backend's \['bgcb_"):
            BackendConformance().test_forged_ids_reach_no_hook(kit)


def test_broken_copies_check_catches_a_core_that_does_not_name_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bgcb.contract.problems", lambda plugin: [])
    config = KitConfig(backend="testing", plugin=TestingBackend)
    with pytest.raises(AssertionError, match=r"with bgcb_read without @hookimpl was refused, but the message does not say"):
        BackendConformance().test_broken_copies_are_refused(config)


# -- contract faults: refused on loading, naming the hook --------------------------------------


class UnmarkedRead(TestingBackend):
    def bgcb_read(self, job_id: str, drain: bool) -> Stored | None:  # no @hookimpl
        return super().bgcb_read(job_id, drain)


class MisspeltRead(TestingBackend):
    @hookimpl
    def bgcb_reed(self, job_id: str, drain: bool) -> Stored | None:
        return super().bgcb_read(job_id, drain)


class MisspeltPoll(TestingBackend):
    @hookimpl
    def bgcb_pol(self, job_id: str) -> None:
        return None


class HalfCachePair(TestingBackend):
    bgcb_cache_get = None  # type: ignore[assignment]  # left out; bgcb_cache_put stays


class ContractOne:
    """A backend of contract 1: it ran the lifecycle itself."""

    @hookimpl
    def bgcb_submit(self, job: Any) -> str:
        return ""

    @hookimpl
    def bgcb_status(self, job_id: str) -> Any:
        return None

    @hookimpl
    def bgcb_progress(self, job_id: str) -> list[Any]:
        return []

    @hookimpl
    def bgcb_result(self, job_id: str) -> Any:
        return None

    @hookimpl
    def bgcb_cancel(self, job_id: str) -> bool:
        return False


CONTRACT_FAULTS = [
    (UnmarkedRead, r"bgcb_read is not marked as a hook implementation: decorate it with @bgcb.hookimpl"),
    (MisspeltRead, r"bgcb_reed is not a bgcb backend hook\. Did you mean bgcb_read\?"),
    (MisspeltPoll, r"bgcb_pol is not a bgcb backend hook\. Did you mean bgcb_poll\? That was a contract-1 hook"),
    (HalfCachePair, r"bgcb_cache_put and bgcb_cache_get go together"),
    (ContractOne, r"required hook bgcb_enqueue is missing(.|\n)*bgcb_submit belongs to contract 1"),
]


@pytest.mark.parametrize("plugin, message", CONTRACT_FAULTS, ids=[p.__name__ for p, _ in CONTRACT_FAULTS])
def test_contract_fault_is_refused_on_loading(plugin: type, message: str) -> None:
    with pytest.raises(BackendInvalid, match=message):
        Backend.from_plugin("faulty", plugin())


@pytest.mark.parametrize("plugin, message", CONTRACT_FAULTS, ids=[p.__name__ for p, _ in CONTRACT_FAULTS])
def test_contract_fault_fails_the_kit(plugin: type, message: str) -> None:
    config = KitConfig(backend="faulty", plugin=plugin)
    with pytest.raises(AssertionError, match=r"does not meet bgcb's backend contract 2(.|\n)*" + message):
        BackendConformance().test_plugin_meets_the_contract(config)


class LeftoverPoll(TestingBackend):
    """Contract 2, plus a contract-1 hook the core never calls: loads (with a warning), but the kit says so."""

    @hookimpl
    def bgcb_poll(self, job_id: str) -> None:
        return None


def test_leftover_contract_one_hook_fails_the_kit() -> None:
    with pytest.warns(DeprecationWarning, match="bgcb_poll is a hook of bgcb's backend contract 1"):
        Backend.from_plugin("leftover", LeftoverPoll()).close()
    config = KitConfig(backend="leftover", plugin=LeftoverPoll)
    with pytest.raises(AssertionError, match=r"still implements hooks of contract 1.*bgcb_poll"):
        BackendConformance().test_plugin_meets_the_contract(config)


def test_contract_checks_pass_on_the_sound_backend() -> None:
    config = KitConfig(backend="testing", plugin=TestingBackend)
    BackendConformance().test_plugin_meets_the_contract(config)
    BackendConformance().test_broken_copies_are_refused(config)
