"""The conformance checks, as a pytest base class.

Subclass it in your backend's tests (the class name must start with ``Test``)::

    from bgcb_testing.conformance import BackendConformance

    class TestMineConformance(BackendConformance):
        backend = "mine"              # entry-point name in bgcb.backends
        options = {"workers": 2}      # passed to bgcb.provider.load

Every check drives the backend through :func:`bgcb.provider.load` (its hooks,
as the Dash manager calls them) and runs real Dash callbacks from
:mod:`bgcb_testing.conformance.callbacks`. A failing check says what the
contract expects and which hook of :mod:`bgcb.hookspecs` documents it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bgcb import hookspecs
from bgcb.errors import BgcbError
from bgcb.jobs import Job, Outcome, State, Status, is_job_id, new_job_id
from bgcb.provider import Backend, installed, missing_hooks

from . import callbacks
from .kit import KillWorker, Kit, KitConfig, Workers, open_backend

_ORDER = [State.QUEUED, State.RUNNING, State.SUCCEEDED]
_JSON_SCALARS = (str, int, float, bool, type(None))


def _non_json(value: Any, where: str = "") -> str | None:
    """Where ``value`` holds something JSON cannot carry (a tuple betrays pickle)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{where}[{k!r}] (non-string key)"
            found = _non_json(v, f"{where}[{k!r}]")
            if found:
                return found
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _non_json(v, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if isinstance(value, _JSON_SCALARS) else f"{where} ({type(value).__name__})"


def _first_difference(got: list[Any], expected: list[Any]) -> int:
    return next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), min(len(got), len(expected)))


class BackendConformance:
    """The contract of :mod:`bgcb.hookspecs`, checked against one backend.

    Class attributes configure the run (see :class:`~.kit.KitConfig` for each):
    ``backend``, ``options``, ``plugin`` (a factory used instead of the entry
    point, e.g. before the distribution is installed), ``workers``, ``fifo``,
    ``app_option``, ``spawn_workers``, ``worker_options``, ``kill_worker``, and the timeouts.
    Override :meth:`conformance_config` to compute them instead.
    """

    backend: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    plugin: ClassVar[Callable[[], object] | None] = None
    workers: ClassVar[int | None] = None
    fifo: ClassVar[bool] = True
    app_option: ClassVar[str | None] = None
    spawn_workers: ClassVar[int] = 0
    worker_options: ClassVar[dict[str, Any]] = {}
    kill_worker: ClassVar[KillWorker | None] = None
    job_timeout: ClassVar[float] = 20.0
    stop_timeout: ClassVar[float] = 10.0
    crash_timeout: ClassVar[float] = 30.0

    # -- fixtures ------------------------------------------------------------------

    def conformance_config(self, pytestconfig: pytest.Config) -> KitConfig:
        """The kit's configuration for this class (from its attributes)."""
        if not self.backend:
            pytest.fail(f"{type(self).__name__}: set `backend = '<entry-point name>'` on the class", pytrace=False)
        # read callables from the class dict: a function attribute would bind as a method
        plugin = next((c.__dict__["plugin"] for c in type(self).__mro__ if c.__dict__.get("plugin")), None)
        kill = next((c.__dict__["kill_worker"] for c in type(self).__mro__ if c.__dict__.get("kill_worker")), None)
        return KitConfig(
            backend=self.backend,
            options=dict(self.options),
            plugin=plugin,
            workers=self.workers,
            fifo=self.fifo,
            app_option=self.app_option,
            spawn_workers=self.spawn_workers,
            worker_options=dict(self.worker_options),
            kill_worker=kill,
            job_timeout=self.job_timeout,
            stop_timeout=self.stop_timeout,
            crash_timeout=self.crash_timeout,
        )

    # Class-scoped fixtures are classmethods: pytest gives each test a new instance.
    @pytest.fixture(scope="class")
    @classmethod
    def kit_config(cls, pytestconfig: pytest.Config) -> KitConfig:
        return cls().conformance_config(pytestconfig)

    @pytest.fixture(scope="class")
    @classmethod
    def kit_backend(cls, kit_config: KitConfig) -> Iterator[Backend]:
        """One backend instance for the class (worker start-up is paid once)."""
        workers = Workers(kit_config) if kit_config.spawn_workers else None
        try:
            try:
                backend = open_backend(kit_config)
            except BgcbError as exc:
                failure = str(exc)
            else:
                failure = ""
            if failure:  # outside the except block: the message alone says it all
                pytest.fail(f"loading backend {kit_config.backend!r} failed: {failure}", pytrace=False)
            yield backend
            backend.close()
        finally:
            if workers is not None:
                workers.stop()

    @pytest.fixture
    def kit(self, kit_backend: Backend, kit_config: KitConfig, tmp_path: Path) -> Iterator[Kit]:
        helper = Kit(kit_backend, kit_config, tmp_path)
        yield helper
        helper.cleanup()

    # -- the contract's shape ------------------------------------------------------------

    def test_required_hooks(self, kit_config: KitConfig) -> None:
        """A backend implements every hook in hookspecs.REQUIRED."""
        if kit_config.plugin is not None:
            plugin = kit_config.plugin()
            where = "the plugin factory"
        else:
            found = installed()
            assert kit_config.backend in found, (
                f"no backend named {kit_config.backend!r} in the entry-point group 'bgcb.backends' "
                f"(installed: {', '.join(found) or 'none'}). Declare it in pyproject.toml under "
                '[project.entry-points."bgcb.backends"] and pip install the distribution.'
            )
            factory = found[kit_config.backend].entry_point.load()
            plugin = factory() if callable(factory) else factory
            where = f"entry point {found[kit_config.backend].entry_point.value}"
        missing = missing_hooks(plugin)
        assert not missing, (
            f"backend {kit_config.backend!r} ({where}) lacks the required hook(s) {', '.join(missing)}: "
            f"every backend implements {', '.join(hookspecs.REQUIRED)} as methods marked @bgcb.hookimpl "
            f"(see hookspecs.{missing[0]})."
        )

    def test_options_are_plain_values(self, kit: Kit) -> None:
        """Options come from bgcb_options and can be set from the environment."""
        bad = _non_json(kit.backend.options)
        assert bad is None, (
            f"option {bad} is not a plain value: bgcb_options returns defaults of type int, float, bool or str "
            "(or None) so that BGCB_<BACKEND>_<OPTION> variables can set them (see hookspecs.bgcb_options)."
        )

    # -- submit and status ------------------------------------------------------------------

    def test_submit_returns_opaque_unique_ids(self, kit: Kit) -> None:
        ids = [kit.submit("echo", i) for i in range(8)]
        for job_id in ids:
            assert is_job_id(job_id), (
                f"bgcb_submit returned {job_id!r}: a job id must come from bgcb.jobs.new_job_id() (an opaque random "
                "token), never a pid, a counter or a store key (see hookspecs.bgcb_submit)."
            )
        assert len(set(ids)) == len(ids), "bgcb_submit returned the same id twice: every job gets a fresh id"
        assert [kit.value(j)["value"] for j in ids] == list(range(8)), "each job id must lead to its own job's result"

    def test_submit_does_not_run_the_job_in_the_caller(self, kit: Kit) -> None:
        started = time.monotonic()
        job_id = kit.sleeper(1.5)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, (
            f"bgcb_submit took {elapsed:.2f} s for a 1.5 s job: it must only queue the job, the caller is a web "
            "request (see hookspecs.bgcb_submit)."
        )
        where = kit.value(job_id)["where"]
        assert (where["pid"], where["thread"]) != (os.getpid(), threading.get_ident()), (
            "the job ran in the thread that called bgcb_submit: jobs run in the backend's workers (see hookspecs.bgcb_submit)."
        )

    def test_status_transitions(self, kit: Kit) -> None:
        """queued -> running -> succeeded, never backwards, with timestamps in order."""
        blockers = kit.fill(0.6) if kit.workers else []
        job_id = kit.sleeper(0.4)
        seen: list[State] = []
        last: Status = kit.backend.status(job_id)
        deadline = time.monotonic() + kit.config.job_timeout
        while True:
            last = kit.backend.status(job_id)
            assert isinstance(last, Status), f"bgcb_status must return a bgcb.jobs.Status, got {last!r}"
            if not seen or seen[-1] is not last.state:
                seen.append(last.state)
            if last.state.terminal or last.state is State.UNKNOWN or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        names = [s.value for s in seen]
        assert State.UNKNOWN not in seen, f"a job the backend just created was reported unknown (states seen: {names})"
        assert seen[-1] is State.SUCCEEDED, f"a 0.4 s sleep job must end 'succeeded', states seen: {names}"
        assert seen == sorted(seen, key=_ORDER.index), (
            f"states seen: {[s.value for s in seen]}; a job goes queued -> running -> succeeded (or failed/cancelled) "
            "and never back (see hookspecs.bgcb_status)."
        )
        if blockers:
            assert seen[0] is State.QUEUED, (
                f"with all {kit.workers} workers busy a new job must be reported 'queued', got {seen[0].value!r}; if "
                "the backend runs more jobs at once than its 'workers' option, set KitConfig.workers (see hookspecs)."
            )
        assert State.RUNNING in seen, (
            f"states seen: {[s.value for s in seen]}: a job that takes 0.4 s must be reported 'running' while it runs."
        )
        st = last
        assert st.submitted_at and st.started_at and st.finished_at, (
            f"a finished job's Status carries submitted_at, started_at and finished_at (epoch seconds), got {st!r}"
        )
        assert st.submitted_at <= st.started_at + 0.5 and st.started_at <= st.finished_at, (
            f"timestamps out of order: {st!r}; submitted_at <= started_at <= finished_at"
        )

    def test_queue_positions(self, kit: Kit) -> None:
        if not kit.workers:
            pytest.skip("the backend declares no concurrency bound (KitConfig.workers): a queue cannot be forced")
        kit.fill(1.0)
        queued = [kit.submit("echo", i) for i in range(3)]
        statuses = [kit.backend.status(j) for j in queued]
        for status in statuses:
            assert status.state is State.QUEUED, (
                f"with all {kit.workers} workers busy, a new job must be 'queued', got {status.state.value!r} "
                "(see hookspecs.bgcb_status and the concurrency bound)."
            )
        positions = [s.position for s in statuses]
        if all(p is None for p in positions):
            return  # positions are optional
        assert all(isinstance(p, int) for p in positions) and positions == sorted(set(positions)), (
            f"queued positions {positions} for jobs submitted in order: Status.position is the 0-based place in "
            "the FIFO queue, increasing with submission order (see jobs.Status)."
        )
        for job_id in queued:
            kit.value(job_id)  # and they all run once workers are free

    # -- outcomes ------------------------------------------------------------------------

    def test_value_outcome(self, kit: Kit) -> None:
        payload = {"text": "héllo ✓", "int": 2**53, "float": 1.5, "bool": True, "none": None, "list": [1, "2", [3]]}
        job_id = kit.submit("echo", payload)
        outcome = kit.outcome(job_id)
        assert kit.backend.status(job_id).state is State.SUCCEEDED, "a job that returned a value ends 'succeeded'"
        assert outcome.kind == "value" and outcome.value["value"] == payload, (
            f"the outcome must carry the callback's return value unchanged, got {outcome!r} (see hookspecs.bgcb_result)."
        )
        again = kit.backend.result(job_id)
        assert again is not None and again.to_json() == outcome.to_json(), (
            "reading a result must not remove it: bgcb_result returns it again until the record expires "
            "(see hookspecs.bgcb_result)."
        )

    def test_payloads_are_json(self, kit: Kit) -> None:
        job_id = kit.submit("echo", {"tuple": (1, 2), "dict": {"a": 1}})
        value = kit.value(job_id)
        assert value["types"] == {"tuple": "list", "dict": "dict"}, (
            f"the callback received argument types {value['types']}: jobs cross to the worker as JSON (a tuple "
            "arrives as a list); never pickle payloads (see the rules in bgcb.hookspecs)."
        )
        outcome = kit.backend.result(job_id)
        assert isinstance(outcome, Outcome), f"bgcb_result must return a bgcb.jobs.Outcome, got {outcome!r}"
        bad = _non_json(outcome.to_json())
        assert bad is None, f"the stored outcome holds a non-JSON value at {bad}: outcomes are stored as JSON"
        updates = kit.drain(kit.submit("mixed", 2))
        bad = _non_json(updates)
        assert bad is None, f"an update holds a non-JSON value at {bad}: updates are stored as JSON"

    def test_no_update_outcome(self, kit: Kit) -> None:
        job_id = kit.submit("prevent", None)
        outcome = kit.outcome(job_id)
        assert outcome.kind == "no_update", (
            f"a callback that raised PreventUpdate ends with Outcome.no_update(), got {outcome!r}: store what "
            "bgcb.runner.run returns (see hookspecs.bgcb_result)."
        )
        assert kit.backend.status(job_id).state is State.SUCCEEDED, "a no_update outcome ends the job 'succeeded'"

    def test_error_outcome(self, kit: Kit) -> None:
        job_id = kit.submit("fail", "kit-boom-42")
        outcome = kit.outcome(job_id)
        assert kit.backend.status(job_id).state is State.FAILED, "a job whose callback raised ends 'failed'"
        assert outcome.kind == "error" and outcome.error, f"a raising callback ends with an error outcome, got {outcome!r}"
        assert "kit-boom-42" in outcome.error.get("msg", ""), (
            f"the error's msg must carry the exception's message, got {outcome.error!r} (see jobs.Outcome)."
        )
        assert "ValueError" in outcome.error.get("tb", ""), (
            f"the error's tb must carry the traceback (for Dash's on_error and the browser), got {outcome.error!r}"
        )

    def test_unserialisable_return_is_an_error(self, kit: Kit) -> None:
        job_id = kit.submit("unserialisable", None)
        outcome = kit.outcome(job_id)
        assert outcome.kind == "error" and kit.backend.status(job_id).state is State.FAILED, (
            f"a return value that cannot be encoded as JSON must end the job 'failed' with an error outcome, got "
            f"{outcome!r}; a backend must not crash or hang on it (see bgcb.runner.run)."
        )

    def test_unregistered_callback_is_an_error(self, kit: Kit) -> None:
        job_id = kit.backend.submit(Job(callback="0" * 40, args=[1]))
        kit.submitted.append(job_id)
        outcome = kit.outcome(job_id)
        assert outcome.kind == "error", (
            f"a job whose callback the worker does not know must fail with the runner's message, got {outcome!r}"
        )

    def test_async_callback(self, kit: Kit) -> None:
        value = kit.value(kit.submit("async_echo", [1, 2]))
        assert value == {"value": [1, 2], "async": True}, (
            f"an async callback's value was {value!r}: the worker must let bgcb.runner.run await it (do not call "
            "run() from inside a running event loop)."
        )

    # -- progress and set_props -------------------------------------------------------------

    def test_progress_delivered_once_in_order(self, kit: Kit) -> None:
        count = 30
        job_id = kit.submit("progress", count)
        updates = kit.drain(job_id)
        expected = [{"type": "progress", "value": [i, count]} for i in range(count)]
        assert updates == expected, (
            f"bgcb_progress delivered {updates[:5]}... ({len(updates)} updates) for {count} set_progress calls: every "
            "update is delivered exactly once, oldest first, none lost, none repeated (see hookspecs.bgcb_progress)."
        )
        assert kit.value(job_id) == f"progressed {count}", "the progress callback's value must follow its updates"
        assert kit.backend.hook.bgcb_progress(job_id=job_id) == [], "updates already delivered must not come again"

    def test_set_props_and_progress_in_order(self, kit: Kit) -> None:
        count = 10
        updates = kit.drain(kit.submit("mixed", count))
        expected: list[dict[str, Any]] = []
        for i in range(count):
            expected.append({"type": "progress", "value": [i]})
            expected.append({"type": "props", "id": f"{callbacks.PREFIX}a", "props": {"children": f"a{i}"}})
            expected.append({"type": "props", "id": f"{callbacks.PREFIX}b", "props": {"title": f"b{i}", "hidden": i % 2 == 0}})
        assert updates == expected, (
            f"got {len(updates)} updates, expected {len(expected)}; first difference at "
            f"{_first_difference(updates, expected)}: "
            "progress and set_props updates are kept in one list, in the order the callback made them, each "
            "delivered once; several set_props between two polls must all arrive (see hookspecs.Channel.set_props)."
        )

    def test_poll_is_consistent(self, kit: Kit) -> None:
        if not kit.has_poll:
            pytest.skip("optional hook bgcb_poll is not implemented (the manager falls back to status/progress/result)")
        job_id = kit.submit("sleep", {"seconds": 0.3, "tick": 0.02})
        running = kit.backend.poll(job_id)
        assert running.status.state.active or running.status.state.terminal, f"bgcb_poll of a new job: {running!r}"
        if running.status.state.active:
            assert running.outcome is None, "bgcb_poll of an active job must carry no outcome (see hookspecs.bgcb_poll)"
        updates = kit.drain(job_id, via_poll=True)
        assert updates, "bgcb_poll delivered no progress for a job that reported progress every 20 ms"
        assert kit.backend.hook.bgcb_progress(job_id=job_id) == [], (
            "updates delivered by bgcb_poll came again from bgcb_progress: both read the same delivery mark "
            "(see hookspecs.bgcb_poll)."
        )
        snap = kit.backend.poll(job_id)
        status, result = kit.backend.status(job_id), kit.backend.result(job_id)
        assert snap.status.state is status.state and snap.outcome is not None and result is not None, (
            f"bgcb_poll {snap!r} disagrees with bgcb_status {status!r} / bgcb_result {result!r}"
        )
        assert snap.outcome.to_json() == result.to_json(), "bgcb_poll's outcome must be bgcb_result's outcome"

    # -- cancel ----------------------------------------------------------------------

    def test_cancel_queued_job_never_starts(self, kit: Kit) -> None:
        if not kit.workers:
            pytest.skip("the backend declares no concurrency bound (KitConfig.workers): a queued job cannot be forced")
        blockers = kit.fill(0.5)
        marker = kit.tmp_path / "queued-ran"
        job_id = kit.submit("touch", str(marker))
        assert kit.backend.status(job_id).state is State.QUEUED, "with every worker busy the new job must be queued"
        assert kit.backend.cancel(job_id) is True, "bgcb_cancel of a queued job must return True (see hookspecs.bgcb_cancel)"
        assert kit.backend.status(job_id).state is State.CANCELLED, "a cancelled queued job is 'cancelled' at once"
        for blocker in blockers:
            kit.wait(blocker)
        time.sleep(0.5)
        assert not marker.exists(), "a job cancelled while queued was started anyway: it must never start"
        assert kit.backend.status(job_id).state is State.CANCELLED, "a cancelled job stays 'cancelled'"
        outcome = kit.backend.result(job_id)
        assert outcome is None or outcome.kind == "cancelled", (
            f"a cancelled job's result is None or Outcome.cancelled(), got {outcome!r}"
        )

    def test_cancel_running_job(self, kit: Kit) -> None:
        marker = kit.tmp_path / "running"
        job_id = kit.sleeper(1.5, marker=str(marker), tick=0.05)
        kit.wait(job_id, {State.RUNNING}, what="start running")
        started = time.monotonic()
        assert kit.backend.cancel(job_id) is True, "bgcb_cancel of a running job must return True (see hookspecs.bgcb_cancel)"
        kit.wait(job_id, {State.CANCELLED}, timeout=kit.config.stop_timeout, what="be cancelled after bgcb_cancel")
        time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
        state = kit.backend.status(job_id).state
        assert state is State.CANCELLED, f"a cancelled job must stay 'cancelled', later it was {state.value!r}"
        outcome = kit.backend.result(job_id)
        assert outcome is None or outcome.kind == "cancelled", (
            f"a cancelled job's result is None or Outcome.cancelled(), got {outcome!r} (see hookspecs.bgcb_cancel)."
        )
        if marker.exists():
            assert "finished" not in marker.read_text(), (
                "the cancelled callback ran to its end: a running job is asked to stop (Channel.cancelled() turns True, "
                "the runner stops it at its next progress call) and forced within a bound (see hookspecs.bgcb_cancel)."
            )

    def test_cancel_is_idempotent(self, kit: Kit) -> None:
        job_id = kit.sleeper(2.0)
        assert kit.backend.cancel(job_id) is True, "the first bgcb_cancel of an active job returns True"
        assert kit.backend.cancel(job_id) is False, (
            "a second bgcb_cancel of the same job must return False: cancel is idempotent (see hookspecs.bgcb_cancel)"
        )
        done = kit.submit("echo", "done")
        kit.value(done)
        assert kit.backend.cancel(done) is False, "bgcb_cancel of a job that has ended returns False and changes nothing"
        assert kit.backend.status(done).state is State.SUCCEEDED, "cancelling a finished job must not change its state"
        assert kit.value(done)["value"] == "done", "cancelling a finished job must not change its result"

    # -- ids the backend did not issue ------------------------------------------------------

    def test_unknown_and_forged_ids(self, kit: Kit) -> None:
        live = kit.sleeper(0.5)
        forged = [
            new_job_id(),
            live[:-1] + ("A" if live[-1] != "A" else "B"),
            "12345",
            "",
            "../../etc/passwd",
            "x" * 24,
            "*",
            "' OR 1=1 --",
            live + "~signature",
        ]
        for job_id in forged:
            status = kit.backend.status(job_id)
            assert status.state is State.UNKNOWN, (
                f"bgcb_status({job_id!r}) = {status.state.value!r}: ids the backend never issued are 'unknown' "
                "(see hookspecs.bgcb_status)."
            )
            assert kit.backend.cancel(job_id) is False, (
                f"bgcb_cancel({job_id!r}) must return False for an id the backend never issued; see hookspecs.bgcb_cancel."
            )
            assert kit.backend.result(job_id) is None, f"bgcb_result({job_id!r}) must be None for an unknown id"
            assert (kit.backend.hook.bgcb_progress(job_id=job_id) or []) == [], (
                f"bgcb_progress({job_id!r}) must be [] for an unknown id (see hookspecs.bgcb_progress)"
            )
            if kit.has_poll:
                snap = kit.backend.poll(job_id)
                assert snap.status.state is State.UNKNOWN and snap.outcome is None and not snap.updates, (
                    f"bgcb_poll({job_id!r}) must report 'unknown' with no outcome and no updates, got {snap!r}"
                )
        assert kit.value(live) is not None and kit.backend.status(live).state is State.SUCCEEDED, (
            "cancelling forged ids that resemble a live job's id stopped that job: cancel acts only on the exact id"
        )

    # -- the queue ------------------------------------------------------------------------

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
            f"jobs started out of submission order (pairs {late}, start times {starts}): jobs start in FIFO order "
            "(see the rules in bgcb.hookspecs)."
        )

    def test_concurrency_bound(self, kit: Kit) -> None:
        bound = kit.workers
        if not bound:
            pytest.skip("the backend declares no concurrency bound (its 'workers' option or KitConfig.workers)")
        ids = [kit.sleeper(0.3, tick=0.05) for _ in range(bound + 2)]
        spans = [(v["start"], v["end"]) for v in (kit.value(j) for j in ids)]
        peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
        assert peak <= bound, (
            f"{peak} jobs ran at once with workers={bound}: concurrency is bounded by the backend's promise "
            "(see the rules in bgcb.hookspecs)."
        )

    # -- results per job, cache, timeout ----------------------------------------------------

    def test_results_are_per_job(self, kit: Kit) -> None:
        key = "kit-shared-" + new_job_id()
        first = kit.submit("echo", "first", cache_key=key)
        second = kit.submit("echo", "second", cache_key=key)
        assert [kit.value(first)["value"], kit.value(second)["value"]] == ["first", "second"], (
            "two jobs with the same cache_key must each get their own result: results are kept per job id "
            "(see the rules in bgcb.hookspecs)."
        )
        assert kit.value(first)["value"] == "first", "a job's result must still be there after another job's was read"

    def test_cache_by_key_and_expiry(self, kit: Kit) -> None:
        if not kit.has_hook("bgcb_cached"):
            pytest.skip("optional hook bgcb_cached is not implemented: cache_by never reuses results on this backend")
        key = "kit-cache-" + new_job_id()
        assert kit.backend.cached(key) is None, "bgcb_cached of a key nothing was stored under must return None"
        job_id = kit.submit("echo", "cached", cache_key=key, cache=True, cache_expire=1.0)
        value = kit.value(job_id)
        hit = kit.backend.cached(key)
        assert hit is not None and hit.kind == "value" and hit.value == value, (
            f"after a job with cache=True succeeded, bgcb_cached(cache_key) must return its outcome, got {hit!r} "
            "(see hookspecs.bgcb_cached)."
        )
        plain_key = "kit-nocache-" + new_job_id()
        kit.value(kit.submit("echo", "plain", cache_key=plain_key))
        assert kit.backend.cached(plain_key) is None, "a job submitted without cache=True must not fill the cache"
        time.sleep(1.3)
        assert kit.backend.cached(key) is None, (
            "bgcb_cached still returned an outcome after job.cache_expire (1 s) passed: cached outcomes expire "
            "(see hookspecs.bgcb_cached)."
        )
        assert kit.backend.result(job_id) is not None, "the cache's expiry must not remove the job's own result"

    def test_timeout_fails_the_job(self, kit: Kit) -> None:
        marker = kit.tmp_path / "timeout"
        job_id = kit.submit("sleep", {"seconds": 3.0, "tick": 0.05, "marker": str(marker)}, timeout=0.5)
        kit.wait(job_id, timeout=0.5 + kit.config.stop_timeout, what="fail after its 0.5 s timeout")
        outcome = kit.backend.result(job_id)
        assert kit.backend.status(job_id).state is State.FAILED and outcome is not None and outcome.kind == "error", (
            f"a job past job.timeout is stopped and fails with an error outcome (bgcb.runner.timeout_outcome), got "
            f"{kit.backend.status(job_id).state.value!r} / {outcome!r} (see the rules in bgcb.hookspecs)."
        )

    # -- optional hooks ----------------------------------------------------------------------

    def test_jobs_listing(self, kit: Kit) -> None:
        if not kit.has_hook("bgcb_jobs"):
            pytest.skip("optional hook bgcb_jobs is not implemented (`bgcb jobs` will say so)")
        done = kit.submit("echo", 1)
        kit.value(done)
        running = kit.sleeper(1.0)
        listing = dict(kit.backend.jobs() or [])
        assert running in listing and listing[running].state.active, (
            f"bgcb_jobs must list active jobs with their Status; job {running} is missing or not active"
        )
        assert done not in listing, "bgcb_jobs lists queued and running jobs only, not finished ones"

    def test_shared_secret(self, kit: Kit) -> None:
        if not kit.has_hook("bgcb_shared_secret"):
            pytest.skip("optional hook bgcb_shared_secret is not implemented (Dash 4.4 needs server.secret_key then)")
        first = kit.backend.shared_secret(lambda: b"kit-secret-one")
        second = kit.backend.shared_secret(lambda: b"kit-secret-two")
        assert first and first == second, (
            f"bgcb_shared_secret returned {first!r} then {second!r}: the first stored secret wins and every later "
            "call returns it (see hookspecs.bgcb_shared_secret)."
        )

    # -- through Dash ------------------------------------------------------------------------

    def test_dash_app_end_to_end(self, kit: Kit) -> None:
        """A Dash app on this backend runs a background callback as the browser drives it."""
        from dash import Dash, html

        from bgcb.dash_manager import DashManager

        from ..client import DashClient

        app = callbacks.attach(Dash(__name__, background_callback_manager=DashManager(kit.backend)))
        app.layout = html.Div(
            [html.Div(id=f"{callbacks.PREFIX}{n}-{part}") for n in ("echo", "progress") for part in ("in", "out", "progress")]
        )
        client = DashClient.wsgi(app).load()
        run = client.run(
            [(f"{callbacks.PREFIX}echo-out", "children")],
            [(f"{callbacks.PREFIX}echo-in", "value", "via dash")],
            timeout=kit.config.job_timeout,
        )
        assert run.final is not None and run.final.status == 200, f"the Dash callback failed: {run.final!r}"
        out = run.output(f"{callbacks.PREFIX}echo-out", "children")
        assert out and out["value"] == "via dash", f"the Dash callback's output was {out!r}"
        prog = client.run(
            [(f"{callbacks.PREFIX}progress-out", "children")],
            [(f"{callbacks.PREFIX}progress-in", "value", 5)],
            timeout=kit.config.job_timeout,
        )
        assert prog.output(f"{callbacks.PREFIX}progress-out", "children") == "progressed 5", (
            f"the Dash progress callback ended with {prog.final!r}"
        )
        assert prog.progress, "the browser saw no progress from a callback that reported 5 times (see hookspecs.bgcb_progress)"

    # -- workers that die ----------------------------------------------------------------------

    def test_killed_worker_fails_the_job(self, kit: Kit) -> None:
        if kit.config.kill_worker is None:
            pytest.skip(
                "no kill_worker configured: for a backend with worker processes set KitConfig.kill_worker "
                "(e.g. bgcb_testing.conformance.kill_pid, or BGCB_CONFORMANCE_KILL_WORKER=pid) to check that a killed "
                "worker turns its job into a failed one"
            )
        job_id = kit.submit("report_pid", 60)
        deadline = time.monotonic() + kit.config.job_timeout
        pid = None
        while pid is None:
            for update in kit.backend.hook.bgcb_progress(job_id=job_id) or []:
                if update.get("type") == "progress":
                    pid = int(update["value"][0])
            assert time.monotonic() < deadline, "the report_pid job never reported its worker's pid"
            time.sleep(0.02)
        kit.config.kill_worker(kit.backend, job_id, pid)
        status = kit.wait(job_id, timeout=kit.config.crash_timeout, what="end after its worker was killed")
        outcome = kit.backend.result(job_id)
        assert status.state is State.FAILED and outcome is not None and outcome.kind == "error", (
            f"after its worker was killed the job ended {status.state.value!r} with {outcome!r}: a killed worker "
            "turns its job into 'failed' with an error outcome within a bounded time (see the rules in bgcb.hookspecs)."
        )
