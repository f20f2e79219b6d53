"""The gate's pure logic: splicing handles into an answer, bounded waits, cancel clicks
matched to held first requests, and the effect driver. Servers and backends are in
tests/integration/test_hold.py."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from bgcb import defaults, hold
from bgcb.gate import Gate, HeldFirst
from bgcb.hold import Call, Holding, Io, Reply, with_handles
from bgcb.jobs import Snapshot, State, Status
from bgcb.serve import run_sync

RUNNING = Snapshot(Status(State.RUNNING))
DONE = Snapshot(Status(State.SUCCEEDED))


def _reply(body: bytes, status: int = 200) -> Reply:
    return Reply(status, "OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body)


def test_with_handles_keeps_the_answer_and_adds_the_handles() -> None:
    first = {"cacheKey": "k", "job": "j", "progressDefault": {"bar.value": "0"}}
    merged = with_handles(_reply(b'{"multi":true,"response":{"out":{"children":"x"}}}'), first)
    body = json.loads(merged.body)
    assert body == {**first, "multi": True, "response": {"out": {"children": "x"}}}
    assert merged.header("content-length") == str(len(merged.body))
    assert json.loads(with_handles(_reply(b"{}"), first).body) == first


def test_with_handles_leaves_no_update_errors_and_compressed_answers_alone() -> None:
    for reply in (_reply(b"", 204), _reply(b'{"error": 1}', 500), Reply(200, "OK", [("Content-Encoding", "gzip")], b"\x1f")):
        assert with_handles(reply, {"job": "j"}) is reply


def test_news_means_ended_or_something_to_show() -> None:
    assert not hold.news(RUNNING)
    assert hold.news(DONE)
    assert hold.news(Snapshot(Status(State.RUNNING), [{"type": "progress", "value": [1]}]))
    assert hold.news(Snapshot(Status.unknown()))


class Reads:
    """A job's successive snapshots, as the backend would answer them."""

    def __init__(self, *snaps: Snapshot) -> None:
        self.snaps, self.count = list(snaps), 0

    def __call__(self, job_id: str) -> Snapshot:
        self.count += 1
        return self.snaps.pop(0) if len(self.snaps) > 1 else self.snaps[0]


def test_a_wait_ends_at_the_first_news() -> None:
    reads = Reads(RUNNING, RUNNING, DONE)
    assert Holding(reads).wait("j", 10.0, limit=1, snap=RUNNING) is DONE
    assert reads.count == 3


def test_a_wait_ends_when_stopped_or_out_of_time() -> None:
    stop = threading.Event()
    stop.set()
    assert Holding(Reads(RUNNING)).wait("j", 10.0, limit=1, stop=stop).status.state is State.RUNNING
    assert Holding(Reads(RUNNING)).wait("j", 0.02, limit=1, snap=RUNNING).status.state is State.RUNNING


def test_a_backend_that_can_wait_for_a_change_is_read_only_when_woken() -> None:
    """With bgcb_wait the core reads after each wake-up (or each bounded wait), not on its half-millisecond schedule."""
    waits: list[float] = []

    def watch(job_id: str, seconds: float) -> bool:
        waits.append(seconds)
        return len(waits) >= 3  # two waits time out, the third is woken by the change

    reads = Reads(RUNNING, RUNNING, DONE)
    assert Holding(reads, watch).wait("j", 10.0, limit=1, snap=RUNNING) is DONE
    assert reads.count == 3 and len(waits) == 3, "one read after each wait"
    assert all(0 < s <= defaults.HOLD_PAUSE_MAX for s in waits), "each wait is bounded, so a missed wake-up costs little"


def test_a_backend_that_cannot_wait_here_falls_back_to_the_schedule() -> None:
    reads, calls = Reads(RUNNING, RUNNING, DONE), []
    assert Holding(reads, lambda job_id, seconds: calls.append(seconds)).wait("j", 10.0, limit=1, snap=RUNNING) is DONE
    assert reads.count == 3 and len(calls) == 3, "asked each time, then the scheduled sleep"


def test_a_stopped_wait_answers_with_a_read_made_after_the_stop() -> None:
    """The gate sets ``stop`` once its cancel is written: the held request must answer with that, not
    with a snapshot read a moment before (found by CI: the first answer came back 200 instead of 204)."""
    stop = threading.Event()
    stop.set()
    cancelled = Snapshot(Status(State.CANCELLED))
    reads = Reads(cancelled)
    assert Holding(reads).wait("j", 10.0, limit=1, stop=stop, snap=RUNNING) is cancelled
    assert reads.count == 1


def test_waits_beyond_the_limit_answer_at_once() -> None:
    gate, release = threading.Event(), threading.Event()

    def slow(job_id: str) -> Snapshot:
        gate.set()
        release.wait(5)
        return DONE

    holding = Holding(slow)
    waiter = threading.Thread(target=holding.wait, args=("a", 10.0, 1, None, RUNNING))
    waiter.start()
    assert gate.wait(5) and holding.held == 1
    assert Holding.wait(holding, "b", 10.0, limit=1, snap=RUNNING) is RUNNING, "over the limit: no wait, no read"
    release.set()
    waiter.join(5)
    assert holding.held == 0
    assert holding.wait("c", 10.0, limit=0) is DONE, "limit 0 (a single-threaded server): one read, no wait"


class _Manager:
    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.backend = self
        self.hold, self.hold_first, self.hold_max = 5.0, 0.25, None
        self.on_retrigger = "cancel"

    def cancel(self, job: str) -> bool:
        self.cancelled.append(job)
        return True


def test_a_click_on_a_cancel_input_reaches_the_held_first_request_of_its_page() -> None:
    gate, manager = Gate(app=None, limit_default=2), _Manager()
    pm = {"type": "stop", "index": 2}
    stops = [{"id": "stop", "property": "n_clicks"}, {"id": pm, "property": "n_clicks"}]
    held = gate._hold_first(HeldFirst("page-1", "out.children", "job-1", stops, manager))  # type: ignore[arg-type]
    gate._hold_first(HeldFirst("page-2", "out.children", "job-2", stops[:1], manager))  # type: ignore[arg-type]
    click = {"output": "stop.id", "inputs": [[{"id": pm, "property": "n_clicks", "value": 1}]]}
    effects = _effects(gate.flow([("endId", "page-1")], json.dumps(click).encode()))
    assert manager.cancelled == ["job-1"] and held.stop.is_set()
    assert isinstance(effects[-1], Call) and effects[-1].visit is None, "then Dash handles the click as usual"
    other = {"output": "x.children", "inputs": [{"id": "go", "property": "n_clicks", "value": 1}]}
    _effects(gate.flow([("endId", "page-1")], json.dumps(other).encode()))
    assert manager.cancelled == ["job-1"], "other inputs cancel nothing"
    again = {"output": "out.children", "inputs": [{"id": "go", "property": "n_clicks", "value": 2}]}
    _effects(gate.flow([("endId", "page-2")], json.dumps(again).encode()))
    assert manager.cancelled == ["job-1", "job-2"], "the callback fired again on the same page ends its held job"


def test_the_first_wait_stretches_for_callbacks_whose_jobs_end_quickly() -> None:
    gate, manager = Gate(app=None, limit_default=2), _Manager()
    assert gate.first_wait(manager, "out.children") == 0.25  # type: ignore[arg-type]
    for took in (0.3, 0.32):
        gate._learn("out.children", Snapshot(Status(State.SUCCEEDED, submitted_at=100.0, finished_at=100.0 + took)))
    assert gate.first_wait(manager, "out.children") == pytest.approx(0.32 * 1.25 + 0.05)  # type: ignore[arg-type]
    gate._learn("out.children", Snapshot(Status(State.SUCCEEDED, submitted_at=100.0, finished_at=101.2)))
    assert gate.first_wait(manager, "out.children") == 0.25, "one slow run: back to hold_first"  # type: ignore[arg-type]


def _effects(flow: Any) -> list[Any]:
    """Drive ``flow`` like run_sync, recording each effect; Dash answers ``{}``."""
    seen: list[Any] = []
    sent: Any = None
    while True:
        try:
            effect = flow.send(sent)
        except StopIteration:
            return seen
        seen.append(effect)
        sent = effect.fn(*effect.args) if isinstance(effect, Io) else _reply(b"{}")


def test_run_sync_throws_failures_into_the_flow() -> None:
    def flow() -> Any:
        try:
            yield Io(lambda: 1 / 0, ())
        except ZeroDivisionError:
            reply = yield Call([("a", "1")], None)
            return reply
        pytest.fail("the failure did not reach the flow")

    answered = run_sync(flow(), lambda query, visit: _reply(json.dumps(dict(query)).encode()))
    assert json.loads(answered.body) == {"a": "1"}
