"""A queued job's place and estimated wait, as the page shows them (pure logic)."""

from __future__ import annotations

import pytest
from dash import Output

import bgcb
from bgcb.jobs import Outcome, Snapshot, State, Status
from bgcb.waiting import RunTimes, Waiting, WaitingDisplay, describe_seconds


def _done(callback: str, seconds: float) -> Snapshot:
    return Snapshot(Status(State.SUCCEEDED, None, 0.0, 10.0, 10.0 + seconds, callback), [], Outcome.of_value(1))


def _queued(position: int | None, callback: str = "cb") -> Snapshot:
    return Snapshot(Status(State.QUEUED, position, 0.0, None, None, callback))


def test_run_times_count_each_job_once_and_estimate_rounds_of_work() -> None:
    times = RunTimes()
    for n, seconds in enumerate([2.0, 4.0, 100.0]):
        times.learn(f"job{n}", _done("cb", seconds))
        times.learn(f"job{n}", _done("cb", seconds))  # the same job polled again counts once
    assert times.median("cb") == 4.0
    assert times.eta("cb", ahead=0, capacity=2) == 4.0  # next to start: one round
    assert times.eta("cb", ahead=3, capacity=2) == 8.0  # 3 ahead on 2 workers: it starts in the second round
    assert times.eta("cb", ahead=3, capacity=None) == 16.0  # capacity unknown: one at a time
    assert times.eta("other", ahead=0, capacity=2) is None  # no history: no estimate


def test_only_successful_runs_teach_run_times() -> None:
    times = RunTimes()
    times.learn("j", Snapshot(Status(State.FAILED, None, 0.0, 1.0, 2.0, "cb")))
    times.learn("k", Snapshot(Status(State.SUCCEEDED, None, 0.0, None, 2.0, "cb")))  # never started: a cache hit
    assert times.median("cb") is None


def test_the_display_shows_the_place_while_queued_and_clears_after() -> None:
    times = RunTimes()
    times.learn("j", _done("cb", 30.0))
    display = WaitingDisplay(Output("status", "children"))
    assert display.props(_queued(0), times, lambda: 1) == {"status": {"children": "Queued: position 1 · about 30 s to start"}}
    assert display.props(_queued(4, "new"), times, lambda: 2) == {"status": {"children": "Queued: position 5"}}
    assert display.props(_queued(None), times, lambda: 1) == {}  # the backend cannot tell the place
    assert display.props(Snapshot(Status(State.RUNNING)), times, lambda: 1) == {"status": {"children": ""}}


def test_text_is_a_format_string_or_a_function() -> None:
    times = RunTimes()
    times.learn("j", _done("cb", 150.0))
    fmt = WaitingDisplay(("s", "title"), "{ahead} ahead, {eta}, {eta_seconds:.0f}")
    assert fmt.props(_queued(2), times, lambda: 1) == {"s": {"title": "2 ahead, 8 min, 450"}}
    fn = WaitingDisplay(({"type": "s", "index": 2}, "children"), lambda w: ["#", w.position])
    assert fn.props(_queued(0), times, lambda: 1) == {'{"index":2,"type":"s"}': {"children": ["#", 1]}}


def test_describe_seconds() -> None:
    assert [describe_seconds(s) for s in (0.2, 44.6, 89, 3600 + 600)] == ["1 s", "45 s", "1 min", "1 h 10 min"]


@pytest.mark.parametrize("target", ["status", ("status",), (Output, "x"), ({"type": "s", "index": object()}, "children")])
def test_a_wrong_target_is_a_clear_error(target) -> None:
    with pytest.raises(bgcb.ConfigurationError, match="waiting="):
        bgcb.manager("testing", waiting=target)


def test_waiting_fields_are_documented_in_the_default_text() -> None:
    assert Waiting(3, 2, None).fields()["eta_text"] == ""
    assert Waiting(1, 0, 75.0).eta_text == " · about 1 min to start"


def test_a_job_waiting_to_run_again_says_when() -> None:
    import time

    from bgcb.jobs import Snapshot, State, Status

    display = WaitingDisplay(("status", "children"))
    snap = Snapshot(Status(State.QUEUED, None, retry_at=time.time() + 4.2))
    assert display.props(snap, RunTimes(), lambda: 2) == {"status": {"children": "Runs again in about 4 s"}}
    seen: list[Waiting] = []
    custom = WaitingDisplay(("status", "children"), lambda w: seen.append(w) or f"{w.retry_in:.0f}")
    assert custom.props(snap, RunTimes(), lambda: 2) == {"status": {"children": "4"}}
    assert seen[0].position == 0 and seen[0].retry_in is not None
