"""Checks of jobs driven through the core, as the Dash manager drives them: states, outcomes, updates, results.

The core runs the lifecycle; what these checks find wrong is the backend's
part of it: a worker loop that does not hand ids to ``jobs.execute``, a store
that loses or changes what the core wrote, updates that arrive late or twice.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pytest

from bgcb.jobs import Job, State, Status, is_job_id, new_job_id

from . import callbacks
from .contract_checks import non_json
from .kit import Kit, first_difference, until

_ORDER = [State.QUEUED, State.RUNNING, State.SUCCEEDED]


class JobChecks:
    """Jobs through :class:`bgcb.provider.Backend` (the core's lifecycle) on this backend."""

    def test_each_job_gets_its_own_id_and_result(self, kit: Kit) -> None:
        ids = [kit.submit("echo", i) for i in range(8)]
        assert all(is_job_id(j) for j in ids) and len(set(ids)) == len(ids), (
            f"the core minted ids {ids}: each submit stores a record under a fresh id (see hookspecs.BackendSpec.bgcb_enqueue)"
        )
        values = [kit.value(j)["value"] for j in ids]
        assert values == list(range(8)), (
            f"jobs 0..7 returned {values}: each id leads to its own job's record, stored by bgcb_enqueue under "
            "that id (see hookspecs.BackendSpec.bgcb_enqueue)."
        )

    def test_enqueue_does_not_run_the_job(self, kit: Kit) -> None:
        """Submit returns before the job runs: the job waits for a file the kit writes only once submit returned."""
        go = kit.tmp_path / "go"
        job_id = kit.submit("wait_for", {"path": str(go), "seconds": 3.0})
        go.write_text("go", encoding="utf-8")
        value = kit.value(job_id)
        where = value["where"]
        assert (where["pid"], where["thread"]) != (os.getpid(), threading.get_ident()), (
            "the job ran in the thread that submitted it: jobs run in the backend's workers "
            "(see hookspecs.BackendSpec.bgcb_enqueue)."
        )
        if where["host"] == socket.gethostname():  # the file is visible to the job
            assert value["appeared"], (
                "the job ran before submit returned (it waited for a file written right after): bgcb_enqueue only "
                "stores and queues the job, its caller is a web request (see hookspecs.BackendSpec.bgcb_enqueue)."
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
            if not seen or seen[-1] is not last.state:
                seen.append(last.state)
            if not last.state.active or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        names = [s.value for s in seen]
        assert State.UNKNOWN not in seen, (
            f"a job just submitted was reported unknown (states seen: {names}): bgcb_read finds every record "
            "bgcb_enqueue stored (see hookspecs.BackendSpec.bgcb_read)."
        )
        assert seen[-1] is State.SUCCEEDED and seen == sorted(seen, key=_ORDER.index), (
            f"states seen: {names}; a job goes queued -> running -> succeeded and never back "
            "(see hookspecs.BackendSpec.bgcb_cas)."
        )
        if blockers:
            assert seen[0] is State.QUEUED, (
                f"with all {kit.workers} workers busy a new job must be 'queued', got {seen[0].value!r}; if the "
                "backend runs more jobs at once than its 'workers' option, set KitConfig.workers "
                "(see hookspecs.BackendSpec.bgcb_enqueue)."
            )
        assert State.RUNNING in seen, (
            f"states seen: {names}: a job that takes 0.4 s must be seen 'running' while it runs "
            "(see hookspecs.BackendSpec.bgcb_cas)."
        )
        assert last.submitted_at and last.started_at and last.finished_at, (
            f"a finished job's Status carries submitted_at, started_at and finished_at, got {last!r}: bgcb_read returns "
            "the data text of the last bgcb_cas unchanged (see hookspecs.BackendSpec.bgcb_read)."
        )
        assert last.submitted_at <= last.started_at + 0.5 and last.started_at <= last.finished_at, (
            f"timestamps out of order: {last!r}; the data text is stored unchanged (see hookspecs.BackendSpec.bgcb_read)"
        )

    def test_value_outcome(self, kit: Kit) -> None:
        payload = {"text": "héllo ✓", "int": 2**53, "float": 1.5, "bool": True, "none": None, "list": [1, "2", [3]]}
        job_id = kit.submit("echo", payload)
        outcome = kit.outcome(job_id)
        assert kit.backend.status(job_id).state is State.SUCCEEDED, (
            "a job that returned a value ends 'succeeded' (see hookspecs.BackendSpec.bgcb_cas)"
        )
        assert outcome.kind == "value" and outcome.value["value"] == payload, (
            f"the outcome must carry the callback's return value unchanged, got {outcome!r}: the job text and the "
            "data text cross the store unchanged (see hookspecs.BackendSpec.bgcb_load, bgcb_read)."
        )
        again = kit.backend.result(job_id)
        assert again is not None and again.to_json() == outcome.to_json(), (
            "reading a result removed it: the record is kept until its ttl (see hookspecs.BackendSpec.bgcb_cas)."
        )
        kit.events.expect(job_id, State.SUCCEEDED, started=kit.in_process or None, ended_here=kit.in_process)

    def test_payloads_are_json(self, kit: Kit) -> None:
        job_id = kit.submit("echo", {"tuple": (1, 2), "dict": {"a": 1}})
        value = kit.value(job_id)
        assert value["types"] == {"tuple": "list", "dict": "dict"}, (
            f"the callback received argument types {value['types']}: jobs cross to the worker as JSON text "
            "(a tuple arrives as a list), never pickled (see hookspecs.BackendSpec.bgcb_load)."
        )
        updates = kit.drain(kit.submit("mixed", 2))
        bad = non_json(updates)
        assert bad is None, (
            f"an update holds a non-JSON value at {bad}: updates are stored as JSON text (see hookspecs.BackendSpec.bgcb_append)"
        )

    def test_no_update_outcome(self, kit: Kit) -> None:
        job_id = kit.submit("prevent", None)
        outcome = kit.outcome(job_id)
        assert outcome.kind == "no_update" and kit.backend.status(job_id).state is State.SUCCEEDED, (
            f"a callback that raised PreventUpdate ends 'succeeded' with Outcome.no_update(), got {outcome!r} "
            "(see hookspecs.BackendSpec.bgcb_cas)"
        )

    def test_error_outcome(self, kit: Kit) -> None:
        job_id = kit.submit("fail", "kit-boom-42")
        outcome = kit.outcome(job_id)
        assert kit.backend.status(job_id).state is State.FAILED, (
            "a job whose callback raised ends 'failed' (see hookspecs.BackendSpec.bgcb_cas)"
        )
        assert outcome.kind == "error" and outcome.error and "kit-boom-42" in outcome.error.get("msg", ""), (
            f"a raising callback ends with an error outcome carrying its message, got {outcome!r} "
            "(see hookspecs.BackendSpec.bgcb_read)"
        )
        assert "ValueError" in outcome.error.get("tb", ""), (
            f"the error's tb must carry the traceback, got {outcome.error!r} (see hookspecs.BackendSpec.bgcb_read)"
        )
        kit.events.expect(job_id, State.FAILED, started=kit.in_process or None, ended_here=kit.in_process)

    def test_unserialisable_return_is_an_error(self, kit: Kit) -> None:
        job_id = kit.submit("unserialisable", None)
        outcome = kit.outcome(job_id)
        assert outcome.kind == "error" and kit.backend.status(job_id).state is State.FAILED, (
            f"a return value that cannot be encoded as JSON ends the job 'failed', got {outcome!r}: the worker "
            "loop must not crash or hang on it (see bgcb.lifecycle.Lifecycle.execute)."
        )

    def test_unregistered_callback_is_an_error(self, kit: Kit) -> None:
        job_id = kit.backend.submit(Job(callback="0" * 40, args=[1]))
        kit.submitted.append(job_id)
        outcome = kit.outcome(job_id)
        assert outcome.kind == "error", (
            f"a job whose callback the worker does not know fails with the runner's message, got {outcome!r} "
            "(see hookspecs.BackendSpec.bgcb_run_worker)"
        )

    def test_async_callback(self, kit: Kit) -> None:
        value = kit.value(kit.submit("async_echo", [1, 2]))
        assert value == {"value": [1, 2], "async": True}, (
            f"an async callback's value was {value!r}: the worker loop must call jobs.execute outside any running "
            "event loop (see hookspecs.BackendSpec.bgcb_configure)."
        )

    def test_progress_delivered_once_in_order(self, kit: Kit) -> None:
        count = 30
        job_id = kit.submit("progress", count)
        updates = kit.drain(job_id)
        expected = [{"type": "progress", "value": [i, count]} for i in range(count)]
        assert updates == expected, (
            f"polls delivered {updates[:5]}... ({len(updates)} updates) for {count} set_progress calls: every update "
            "is delivered exactly once, oldest first, none lost, none repeated (see hookspecs.BackendSpec.bgcb_append, "
            "bgcb_read)."
        )
        assert kit.value(job_id) == f"progressed {count}", (
            "the progress callback's value must follow its updates (see hookspecs.BackendSpec.bgcb_read)"
        )

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
            f"{first_difference(updates, expected)}: progress and set_props updates are kept in one list, in the "
            "order the callback made them, each delivered once; several set_props between two polls must all "
            "arrive (see hookspecs.BackendSpec.bgcb_append)."
        )

    def test_status_does_not_take_updates(self, kit: Kit) -> None:
        """Status and result read without draining: the next poll still gets every update, with the outcome."""
        job_id = kit.submit("progress", 12)
        kit.wait(job_id)
        snap = kit.backend.poll(job_id)
        assert len(snap.updates) == 12, (
            f"after a job with 12 updates ended, read only through status(), the first poll delivered "
            f"{len(snap.updates)}: bgcb_read(drain=False) removes no update (see hookspecs.BackendSpec.bgcb_read)."
        )
        result = kit.backend.result(job_id)
        assert snap.outcome is not None and result is not None and snap.outcome.to_json() == result.to_json(), (
            f"the poll's outcome {snap.outcome!r} differs from result() {result!r} (see hookspecs.BackendSpec.bgcb_read)"
        )
        assert kit.backend.poll(job_id).updates == [], (
            "updates a poll delivered came again: drained updates are removed (see hookspecs.BackendSpec.bgcb_read)"
        )

    def test_results_are_per_job(self, kit: Kit) -> None:
        key = "kit-shared-" + new_job_id()
        first = kit.submit("echo", "first", cache_key=key)
        second = kit.submit("echo", "second", cache_key=key)
        assert [kit.value(first)["value"], kit.value(second)["value"]] == ["first", "second"], (
            "two jobs with the same cache_key must each get their own result: records are kept per job id "
            "(see hookspecs.BackendSpec.bgcb_enqueue)."
        )

    def test_cache_by_key_through_the_core(self, kit: Kit) -> None:
        if not kit.has_hook("bgcb_cache_get"):
            pytest.skip("the optional hooks bgcb_cache_put/bgcb_cache_get are not implemented: cache_by is not reused")
        key = "kit-cache-" + new_job_id()
        assert kit.backend.cached(key) is None, (
            "a key nothing was put under must not be cached (see hookspecs.BackendSpec.bgcb_cache_get)"
        )
        value = kit.value(kit.submit("echo", "cached", cache_key=key, cache=True, cache_expire=60.0))
        # the worker puts the outcome in the cache just after its final compare-and-set: give it a moment
        until(lambda: kit.backend.cached(key) is not None)
        hit = kit.backend.cached(key)
        assert hit is not None and hit.kind == "value" and hit.value == value, (
            f"3 s after a job with cache=True succeeded, cached(cache_key) returned {hit!r}: bgcb_cache_get returns "
            "what bgcb_cache_put stored (see hookspecs.BackendSpec.bgcb_cache_put)."
        )
        failed = "kit-cache-failed-" + new_job_id()
        kit.outcome(kit.submit("fail", "no cache", cache_key=failed, cache=True))
        plain = "kit-nocache-" + new_job_id()
        kit.value(kit.submit("echo", "plain", cache_key=plain))
        assert kit.backend.cached(failed) is None and kit.backend.cached(plain) is None, (
            "a failed job, or one submitted without cache=True, filled the cache: only the core calls "
            "bgcb_cache_put (see hookspecs.BackendSpec.bgcb_cache_put)."
        )

    def test_jobs_listing(self, kit: Kit) -> None:
        if not kit.has_hook("bgcb_active"):
            pytest.skip("the optional hook bgcb_active is not implemented (`bgcb jobs` will say so)")
        done = kit.submit("echo", 1)
        kit.value(done)
        running = kit.sleeper(1.0)
        listing = dict(kit.backend.jobs() or [])
        assert running in listing and listing[running].state.active, (
            f"jobs() must list active job {running}: bgcb_active returns the ids of running and queued jobs "
            "(see hookspecs.BackendSpec.bgcb_active)."
        )
        assert done not in listing, (
            "jobs() lists queued and running jobs only, not finished ones: bgcb_active returns active ids (one that "
            "ended a moment ago may slip in; the core drops it) (see hookspecs.BackendSpec.bgcb_active)"
        )

    def test_shared_secret(self, kit: Kit) -> None:
        if not kit.has_hook("bgcb_shared_secret"):
            pytest.skip("the optional hook bgcb_shared_secret is not implemented (Dash 4.4 needs server.secret_key then)")
        first = kit.backend.shared_secret(lambda: b"kit-secret-one")
        second = kit.backend.shared_secret(lambda: b"kit-secret-two")
        assert first and first == second, (
            f"bgcb_shared_secret returned {first!r} then {second!r}: the first stored secret wins and every later "
            "call returns it (see hookspecs.BackendSpec.bgcb_shared_secret)."
        )

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
        out = run.output(f"{callbacks.PREFIX}echo-out", "children")
        assert out and out["value"] == "via dash", (
            f"the Dash callback's output was {out!r} ({run.final!r}); see the other checks for the hook at fault"
        )
        prog = client.run(
            [(f"{callbacks.PREFIX}progress-out", "children")],
            [(f"{callbacks.PREFIX}progress-in", "value", 5)],
            timeout=kit.config.job_timeout,
        )
        assert prog.output(f"{callbacks.PREFIX}progress-out", "children") == "progressed 5", (
            f"the Dash progress callback ended with {prog.final!r}; see the other checks for the hook at fault"
        )
        assert prog.progress, (
            "the browser saw no progress from a callback that reported 5 times (see hookspecs.BackendSpec.bgcb_append)"
        )
