"""Running caps, deferral and counts of bgcb-celery on a real Redis, with the stand-in Celery app of
``test_store`` (no worker): the order in Redis against the core's :class:`bgcb.queueing.FairQueue`,
kept-back tickets, deferred jobs' bookkeeping and ``bgcb_counts``."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator

import pytest
from test_store import FakeCelery, _job, _open

from bgcb.jobs import State
from bgcb.provider import Backend
from bgcb.queueing import FairQueue


@pytest.fixture
def backend(redis_server, redis_client) -> Iterator[tuple[Backend, FakeCelery]]:
    redis_client.delete("fake")
    opened = _open(redis_server.url(), broker=redis_client)
    yield opened
    opened[0].close()


def _claim(jobs: Backend, job_id: str, worker: str = "host:1") -> None:
    assert jobs.plugin.store.cas(job_id, ["queued"], "running", json.dumps({"worker": worker}), 60, beat="1")


def _end(jobs: Backend, job_id: str) -> None:
    """The web ends a running job (as a cancel or a lost job does)."""
    assert jobs.hook.bgcb_cas(job_id=job_id, expect=["running"], state="succeeded", data="{}", ttl=60)


def _tickets(fake: FakeCelery) -> list[dict]:
    return [m for m in fake.sent if str(m["task_id"]).startswith("ticket-")]


@pytest.mark.parametrize("seed", [7, 11, 23, 42])
def test_running_caps_follow_the_cores_fair_queue(backend, seed) -> None:
    """Random pushes, pops and ends over two priorities, in Redis and in FairQueue: the same jobs start,
    in the same order, and the counts agree (lane a may run 1 job, b 2, c any)."""
    jobs, _ = backend
    jobs.order_jobs("the test")
    store, order = jobs.plugin.store, jobs.plugin.store.places.order
    caps = {"a": 1, "b": 2, "c": None}
    rng = random.Random(seed)
    fair = FairQueue()
    running: list[str] = []
    kept_back = 0
    for step in range(300):
        store.beat("host:1", 1, running, [])  # the worker running them is alive
        move = rng.random()
        if move < 0.45:
            lane, priority = rng.choice("abc"), rng.choice((0, 1))
            job_id = jobs.submit(_job(owner=lane, priority=priority, running_cap=caps[lane]))
            fair.push(job_id, lane, priority, caps[lane])
        elif move < 0.8:
            got, want = order.pop(f"ticket-{step}"), fair.pop()
            assert (got[0] if got else None) == want, f"step {step}"
            kept_back += got is None and len(fair) > 0
            if got is not None:
                assert got[1] == (want in fair.running), "counted against its lane's cap exactly when capped"
                _claim(jobs, got[0])
                running.append(got[0])
        elif running:
            job_id = running.pop(rng.randrange(len(running)))
            _end(jobs, job_id)
            fair.finished(job_id)
        for lane in "abc":
            assert tuple(jobs.counts(lane)) == tuple(fair.counts(lane)), f"step {step}, lane {lane}"
    assert kept_back > 0, "some pops found only full lanes"


def test_a_lane_forgotten_in_its_priority_comes_back_as_in_the_cores_queue(backend) -> None:
    """A lane served before every queued lane of its priority comes back as a new lane, whatever a
    higher priority holds (FairQueue's test of the same name, in Redis)."""
    jobs, _ = backend
    jobs.order_jobs("the test")
    order = jobs.plugin.store.places.order
    ids = {
        name: jobs.submit(_job(owner=lane, priority=p, running_cap=cap))
        for name, lane, p, cap in [
            ("a1", "A", 0, None),
            ("b1", "B", 0, None),
            ("b2", "B", 0, None),
            ("h1", "H", 1, 1),
            ("h2", "H", 1, 1),
        ]
    }
    names = {job_id: name for name, job_id in ids.items()}
    popped = [order.pop(f"t{i}")[0] for i in range(3)]  # each message its own ticket
    assert [names[j] for j in popped] == ["h1", "a1", "b1"]
    _claim(jobs, ids["h1"])
    jobs.plugin.store.beat("host:1", 1, [ids["h1"]], [])  # h1 runs: H's cap of 1 holds h2 back
    for name, lane in (("a2", "A"), ("c1", "C")):
        ids[name] = jobs.submit(_job(owner=lane, priority=0))
        names[ids[name]] = name
    assert [names[order.pop(f"t{i}")[0]] for i in range(3, 6)] == ["a2", "c1", "b2"]


def test_a_ticket_whose_worker_died_before_the_claim_takes_the_same_job_again(backend) -> None:
    """A worker that pops a job and dies before claiming it returns its ticket's message (acks late):
    the ticket takes that job again, instead of the next one, so the first is not stranded."""
    jobs, _ = backend
    jobs.order_jobs("the test")
    order = jobs.plugin.store.places.order
    first, second = (jobs.submit(_job(owner=lane)) for lane in "ab")
    assert order.pop("ticket-1") == (first, False)
    assert order.pop("ticket-1") == (first, False), "the message came back: the same job, still queued"
    _claim(jobs, first)
    assert order.pop("ticket-1") == (second, False), "once its job started, a ticket takes the next, as any does"


def test_a_full_lane_of_a_higher_priority_lets_a_lower_one_go(backend) -> None:
    jobs, _ = backend
    jobs.order_jobs("the test")
    order = jobs.plugin.store.places.order
    urgent = [jobs.submit(_job(owner="a", priority=5, running_cap=1)) for _ in range(2)]
    low = jobs.submit(_job(owner="b", priority=0))
    assert order.pop("t1") == (urgent[0], True)
    _claim(jobs, urgent[0])
    jobs.plugin.store.beat("host:1", 1, [urgent[0]], [])
    assert order.pop("t2") == (low, False), "a's second job keeps its place; b's goes"
    assert jobs.status(urgent[1]).position == 0
    _end(jobs, urgent[0])
    assert order.pop("t3") == (urgent[1], True)


def test_a_ticket_that_finds_only_full_lanes_waits_for_an_end(backend, redis_client) -> None:
    """A ticket that finds every lane at its cap is kept back, not lost and not retried in a loop; the end
    of a capped job sends it again (the web's cancel or lost, or a worker's look after a crash)."""
    jobs, fake = backend
    jobs.order_jobs("the test")
    order = jobs.plugin.store.places.order
    first, second, third = (jobs.submit(_job(owner="a", running_cap=1)) for _ in range(3))
    assert order.pop(first) == (first, True)
    _claim(jobs, first)
    jobs.plugin.store.beat("host:1", 1, [first], [])
    assert order.pop(second) is None and order.pop(third) is None
    assert redis_client.get(order.parked_key()) == "2"
    assert order.pop("spare") is None and redis_client.get(order.parked_key()) == "2", "never more than places"
    _end(jobs, first)
    assert len(_tickets(fake)) == 1, "the lane has room for one: one ticket goes again"
    assert redis_client.get(order.parked_key()) == "1"
    assert order.pop(_tickets(fake)[0]["task_id"]) == (second, True)
    _claim(jobs, second, worker="host:gone")  # its worker dies: no heartbeat, and nobody reports the end
    jobs.plugin.later.tick()
    assert len(_tickets(fake)) == 2, "a worker's look finds the lane free again"
    assert order.pop(_tickets(fake)[1]["task_id"]) == (third, True)
    assert redis_client.get(order.parked_key()) is None
    jobs.plugin.later.tick()
    assert len(_tickets(fake)) == 2, "nothing kept back: the look sends nothing"


def test_a_deferred_job_waits_outside_the_queue_and_counts_as_queued(backend, redis_client) -> None:
    jobs, fake = backend
    later = jobs.plugin.later
    job_id = jobs.submit(_job(timeout=5.0))
    redis_client.delete("fake")  # a worker took its message
    _claim(jobs, job_id)
    waiting = json.dumps({"attempt": 2, "retry_at": 4e9})
    assert jobs.hook.bgcb_cas(job_id=job_id, expect=["running"], state="queued", data=waiting, ttl=60)
    jobs.hook.bgcb_defer(job_id=job_id, delay=30.0, lane=None, priority=None, cap=None)
    message = fake.sent[-1]
    assert message["countdown"] == 30.0 and message["task_id"] == job_id and message["soft_time_limit"] == 5.0
    assert message["kwargs"]["later"] == [None, 0, None] and "job" in message["kwargs"]
    redis_client.delete("fake")  # a worker holds the delayed message
    status = jobs.status(job_id)
    assert status.state is State.QUEUED and status.position is None and status.retry_at == 4e9
    assert tuple(jobs.counts("")) == (1, 1, 0)
    later.arrive(job_id, None, None, None)
    assert tuple(jobs.counts("")) == (0, 0, 0)
    other = jobs.submit(_job())
    redis_client.delete("fake")
    _claim(jobs, other)
    assert jobs.hook.bgcb_cas(job_id=other, expect=["running"], state="queued", data=waiting, ttl=60)
    jobs.hook.bgcb_defer(job_id=other, delay=30.0, lane=None, priority=None, cap=None)
    assert tuple(jobs.counts("")) == (2, 2, 0), "its delayed message not yet taken by a worker counts twice"
    assert jobs.cancel(other) and tuple(jobs.counts("")) == (0, 0, 0), "a cancel while it waits: counted no more"


def test_a_deferred_job_of_the_order_arrives_as_a_new_arrival_and_frees_its_lane(backend) -> None:
    jobs, fake = backend
    jobs.order_jobs("the test")
    order, runner = jobs.plugin.store.places.order, jobs.plugin.runner
    first, second = (jobs.submit(_job(owner="a", running_cap=1)) for _ in range(2))
    assert order.pop(first) == (first, True)
    _claim(jobs, first)
    jobs.plugin.store.beat("host:1", 1, [first], [])
    assert order.pop(second) is None, "a's one slot runs"
    runner.capped.add(first)  # as the worker that took it notes
    waiting = json.dumps({"attempt": 2, "retry_at": 4e9})
    assert jobs.hook.bgcb_cas(job_id=first, expect=["running"], state="queued", data=waiting, ttl=60)
    jobs.hook.bgcb_defer(job_id=first, delay=5.0, lane="a", priority=0, cap=1)
    runner.capped.discard(first)
    message = [m for m in fake.sent if m.get("countdown")][-1]
    assert message["kwargs"]["ordered"] and message["kwargs"]["ticket"] == message["task_id"] != first
    assert message["kwargs"]["later"] == ["a", 0, 1] and "job" not in message["kwargs"]
    assert len(_tickets(fake)) == 1, "deferring gave a's slot back: the kept-back ticket goes again"
    assert tuple(jobs.counts("a")) == (2, 2, 0) and jobs.status(first).position is None
    assert order.pop(_tickets(fake)[0]["task_id"]) == (second, True)
    _claim(jobs, second)
    jobs.plugin.store.beat("host:1", 1, [second], [])
    due = json.dumps({"attempt": 2, "retry_at": time.time() - 0.1})  # its delayed message comes when it is due
    assert jobs.plugin.store.cas(first, ["queued"], "queued", due, 60)
    jobs.plugin.later.arrive(first, "a", 0, 1)
    jobs.plugin.later.arrive(first, "a", 0, 1)  # a duplicate message: it joins once
    assert jobs.status(first).position == 0 and tuple(jobs.counts("a")) == (1, 1, 1)
    assert order.pop(message["task_id"]) is None, "its lane is full again: its own ticket waits"


def test_counts_of_jobs_queued_with_no_worker(backend) -> None:
    jobs, _ = backend
    for _ in range(4):
        jobs.submit(_job())
    assert tuple(jobs.counts("")) == (4, 4, 0), "plain mode: the broker's list"
    jobs.order_jobs("the test")
    for owner in ("alice", "alice", "alice", "bob", "bob"):
        jobs.submit(_job(owner=owner))
    assert tuple(jobs.counts("alice")) == (5, 3, 0), "in the core's order: its jobs only"
    assert tuple(jobs.counts("bob")) == (5, 2, 0)
    assert tuple(jobs.counts("nobody")) == (5, 0, 0)


def test_counts_are_unknown_when_the_broker_is_elsewhere(redis_server) -> None:
    jobs, _ = _open(redis_server.url())
    try:
        assert jobs.counts("") is None
    finally:
        jobs.close()


def test_a_delayed_message_lost_with_its_worker_is_sent_again(backend, redis_client, monkeypatch) -> None:
    from bgcb_celery import defaults

    monkeypatch.setattr(defaults, "LATER_RESEND", 0.2)
    jobs, fake = backend
    later = jobs.plugin.later
    kept, ended = jobs.submit(_job()), jobs.submit(_job())
    for job_id in (kept, ended):
        _claim(jobs, job_id)
        data = json.dumps({"retry_at": 4e9})
        assert jobs.hook.bgcb_cas(job_id=job_id, expect=["running"], state="queued", data=data, ttl=60)
        jobs.hook.bgcb_defer(job_id=job_id, delay=0.0, lane=None, priority=None, cap=None)
    jobs.plugin.store.cas(ended, ["queued"], "cancelled", "{}", 60)  # ended by a process that did not clear it
    sent = len(fake.sent)
    later.tick()
    assert len(fake.sent) == sent, "not overdue yet"
    time.sleep(0.3)
    later.tick()
    assert [m["task_id"] for m in fake.sent[sent:]] == [kept], "only the job still waiting, once"
    later.tick()
    assert len(fake.sent) == sent + 1, "not again until it is overdue again"
    assert redis_client.zcard(later.key) == 1


def test_a_job_taken_by_a_worker_that_died_before_starting_it_is_queued_again(backend, monkeypatch) -> None:
    """A worker process killed between the pop and the claim loses its message (reject_on_worker_lost is
    off): the workers' look puts the job back in the order after CLAIM_GRACE, with a ticket; a job that
    started, and a deferred one, stay as they are."""
    from bgcb_celery import defaults

    monkeypatch.setattr(defaults, "CLAIM_GRACE", 0.2)
    jobs, fake = backend
    jobs.order_jobs("the test")
    order, later = jobs.plugin.store.places.order, jobs.plugin.later
    stranded, started, waiting = (jobs.submit(_job(owner=lane)) for lane in "abc")
    assert [order.pop(f"t{i}")[0] for i in range(3)] == [stranded, started, waiting]
    _claim(jobs, started)
    _claim(jobs, waiting)  # it runs, then waits to run again later
    assert jobs.hook.bgcb_cas(job_id=waiting, expect=["running"], state="queued", data=json.dumps({"retry_at": 4e9}), ttl=60)
    jobs.hook.bgcb_defer(job_id=waiting, delay=60.0, lane="c", priority=0, cap=None)
    assert later.rescue(time.time()) == [], "not before CLAIM_GRACE"
    time.sleep(0.3)
    sent = len(_tickets(fake))
    assert later.rescue(time.time()) == [stranded]
    assert len(_tickets(fake)) == sent + 1, "one ticket for the job put back"
    assert jobs.status(stranded).position == 0
    assert order.pop("t0") == (stranded, False), "its first ticket, come back late, takes it from the order"
    assert order.pop("t9") is None, "so it is not left there for another ticket"
    _claim(jobs, stranded)
    assert later.rescue(time.time() + 1) == [], "taken again, and this time started"
