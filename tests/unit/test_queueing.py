"""The core's order of queued jobs (bgcb.queueing.FairQueue): priorities, owners' turns, FIFO."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from bgcb.queueing import FairQueue


def test_one_lane_is_first_in_first_out() -> None:
    q = FairQueue()
    for n in range(5):
        q.push(f"j{n}")
    assert [q.position(f"j{n}") for n in range(5)] == [0, 1, 2, 3, 4]
    assert [q.pop() for _ in range(6)] == ["j0", "j1", "j2", "j3", "j4", None]


def test_a_second_owner_waits_for_at_most_one_more_of_a_bursts_jobs() -> None:
    q = FairQueue()
    for n in range(20):
        q.push(f"a{n}", "alice")
    assert [q.pop(), q.pop()] == ["a0", "a1"]  # two workers took alice's first jobs
    q.push("b0", "bob")
    assert q.position("b0") == 0
    assert q.pop() == "b0"
    q.push("b1", "bob")
    q.push("b2", "bob")
    assert q.ids()[:5] == ["a2", "b1", "a3", "b2", "a4"]  # turns
    assert [q.position(i) for i in ("a2", "b1", "a3", "b2", "a4")] == [0, 1, 2, 3, 4]


def test_higher_priority_first_then_turns() -> None:
    q = FairQueue()
    q.push("batch1", "x", 0)
    q.push("batch2", "x", 0)
    q.push("click", "y", 10)
    assert q.position("click") == 0 and q.position("batch1") == 1
    assert q.pop() == "click"


def test_remove_and_state_round_trips_through_json() -> None:
    q = FairQueue()
    for lane in "aab":
        q.push(f"{lane}{len(q)}", lane)
    assert q.remove("a1") and not q.remove("zz")
    again = FairQueue(json.loads(json.dumps(q.to_json())))
    assert again.ids() == q.ids() == ["a0", "b2"]
    assert "b2" in again and "a1" not in again


@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from([0, 0, 1])), max_size=30), st.integers(0, 10))
def test_positions_are_the_order_of_pops(pushes, pops) -> None:
    q = FairQueue()
    for n, (lane, priority) in enumerate(pushes):
        q.push(f"j{n}", lane, priority)
    for _ in range(pops):
        q.pop()
    order = q.ids()
    assert [q.position(i) for i in order] == list(range(len(order)))
    assert [q.pop() for _ in order] == order
    within = {}
    for n, (lane, priority) in enumerate(pushes):
        within.setdefault((lane, priority), []).append(f"j{n}")
    for ids in within.values():  # each owner's jobs of one priority start in the order they came
        seen = [i for i in order if i in ids]
        assert seen == sorted(seen, key=ids.index)


def test_between_two_turns_of_a_lane_each_other_lane_has_at_most_one() -> None:
    rng = random.Random(7)
    q = FairQueue()
    lanes = {}
    for n in range(200):
        lanes[f"j{n}"] = rng.choice("abcd")
        q.push(f"j{n}", lanes[f"j{n}"])
    order = [lanes[j] for j in iter(q.pop, None)]
    for lane in "abcd":
        turns = [i for i, x in enumerate(order) if x == lane]
        for start, end in zip(turns, turns[1:], strict=False):
            between = order[start + 1 : end]
            assert all(between.count(other) <= 1 for other in "abcd"), (lane, between)


def test_a_lane_at_its_running_cap_is_passed_over_and_keeps_its_places() -> None:
    q = FairQueue()
    for n in range(3):
        q.push(f"a{n}", "alice", 0, 1)
    q.push("b0", "bob", 0, 1)
    assert q.pop() == "a0"
    assert q.pop() == "b0"  # alice has her one job running
    assert q.pop() is None  # only alice's jobs wait, and her cap is reached
    assert q.counts("alice") == (2, 2, 1)
    q.finished("a0")
    again = FairQueue(json.loads(json.dumps(q.to_json())))  # the running list survives the store
    assert again.pop() == "a1" and again.pop() is None
    q.finished("unknown")  # harmless


def test_a_capped_band_lets_a_lower_priority_go() -> None:
    q = FairQueue()
    q.push("hi0", "x", 5, 1)
    q.push("hi1", "x", 5, 1)
    q.push("lo0", "y", 0)
    assert [q.pop(), q.pop(), q.pop()] == ["hi0", "lo0", None]


def test_a_deferred_job_waits_outside_the_order_until_due() -> None:
    q = FairQueue()
    q.push("a0", "alice")
    q.defer("late", 100.0, "bob", 0, None)
    assert "late" in q and q.position("late") is None and q.ids() == ["a0", "late"]
    assert q.counts("bob") == (2, 1, 0) and q.next_due() == 100.0
    assert q.pop(now=50.0) == "a0"
    assert q.pop(now=50.0) is None
    again = FairQueue(json.loads(json.dumps(q.to_json())))
    assert again.pop(now=100.0) == "late" and again.next_due() is None


def test_a_deferred_job_cancelled_while_waiting_never_comes_back() -> None:
    q = FairQueue()
    q.defer("x", 1.0)
    assert q.remove("x")
    assert q.pop(now=5.0) is None and len(q) == 0


def test_a_lane_forgotten_in_its_priority_comes_back_as_a_new_lane() -> None:
    """A lane served before every present lane of its priority was comes back as a new lane (ahead of a
    lane opened after it), whatever other priorities hold: the rule bgcb-celery's Redis order follows."""
    fq = FairQueue()
    for job_id, lane, priority, cap in [("a1", "A", 0, None), ("b1", "B", 0, None), ("b2", "B", 0, None)]:
        fq.push(job_id, lane, priority, cap)
    fq.push("h1", "H", 1, 1)
    fq.push("h2", "H", 1, 1)
    assert [fq.pop(), fq.pop(), fq.pop()] == ["h1", "a1", "b1"], "H's cap of 1 runs: priority 0 goes meanwhile"
    fq.push("a2", "A", 0)  # A was served before B, the one lane of priority 0 still queued
    fq.push("c1", "C", 0)  # a new lane, opened after A came back
    assert fq.ids() == ["h2", "a2", "c1", "b2"]
