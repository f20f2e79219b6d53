"""Values bgcb-celery did not write, planted in its keys (bytes that are not UTF-8, a pickle, text of
another shape), read through the backend's hooks on a real Redis with the stand-in Celery app of
``test_store``: each reads as absent or as "cannot tell", never as an error, and is never unpickled.
``test_faults`` drives the same through a deployment; these pin each key down."""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_store import FakeCelery, _job, _open, _running

from bgcb.provider import Backend


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def backend(redis_server, redis_client) -> Iterator[tuple[Backend, FakeCelery]]:
    redis_client.delete("fake")
    opened = _open(redis_server.url(), broker=redis_client)
    yield opened
    opened[0].close()


@pytest.fixture
def raw(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url())  # bytes: what a planter writes
    yield client
    client.close()


@pytest.fixture
def junk(tmp_path) -> Iterator[bytes]:
    marker = tmp_path / "unpickled"
    yield pickle.dumps(_Planted(marker))
    assert not marker.exists(), "a planted pickle was unpickled"


def test_junk_in_a_running_jobs_heartbeat_or_updates_leaves_it_running(backend, raw, junk) -> None:
    """A pickle in the heartbeat of a running job's worker, and one among its updates: the job still reads
    as running (its worker's state: cannot tell), with its real updates; read in one script call (the job
    was seen running) and in two round trips (a web process that had not seen it)."""
    jobs, _ = backend
    keys = jobs.plugin.store.keys
    job_id = jobs.submit(_job())
    jobs.plugin.store.beat("host:1", 1, [job_id], [])
    _running(jobs, job_id)
    assert jobs.hook.bgcb_read(job_id=job_id, drain=True).state == "running"  # seen running: one call next
    for planter in (lambda: raw.set(keys.worker("host:1"), junk), lambda: raw.rpush(keys.upd(job_id), junk)):
        planter()
        jobs.hook.bgcb_append(job_id=job_id, update='{"progress":["1"]}', ttl=60)
        read = jobs.hook.bgcb_read(job_id=job_id, drain=True)
        assert read is not None and read.state == "running", "a planted heartbeat or update is not the job's record"
        assert '{"progress":["1"]}' in read.updates and read.alive is not False
        raw.set(keys.worker("host:1"), junk)
        raw.rpush(keys.upd(job_id), junk)
        again, _ = _open(jobs.plugin.config.store_url, prefix=jobs.plugin.config.prefix)  # never saw the job
        try:
            stored = again.hook.bgcb_read(job_id=job_id, drain=True)
            assert stored is not None and stored.state == "running" and stored.alive is not False
        finally:
            again.close()
    assert jobs.status(job_id).state.value == "running"


@pytest.mark.parametrize("planted", ["pickle", "text"])
def test_a_junk_poll_time_reads_as_never_polled(backend, raw, junk, planted) -> None:
    jobs, _ = backend
    job_id = jobs.submit(_job())
    raw.set(jobs.plugin.store.keys.seen(job_id), junk if planted == "pickle" else b"not a time")
    assert jobs.hook.bgcb_seen(job_id=job_id) is None
    jobs.hook.bgcb_touch(job_id=job_id, ttl=60)
    assert abs(jobs.hook.bgcb_seen(job_id=job_id) - time.time()) < 5, "the next poll writes it again"


def test_a_junk_cached_outcome_reads_as_a_miss(backend, raw, junk) -> None:
    jobs, _ = backend
    raw.set(jobs.plugin.store.keys.cache("k"), junk)
    assert jobs.hook.bgcb_cache_get(cache_key="k") is None and jobs.cached("k") is None


@pytest.mark.parametrize("planted", ["pickle", "text"])
def test_a_junk_secret_gives_every_web_process_the_same_secret(backend, raw, junk, planted) -> None:
    """A secret that is not the base64 bgcb writes: every process derives the same one from it (Dash's
    handles signed by one web worker pass in another), none fails, and nothing replaces it (a race)."""
    jobs, _ = backend
    stored = junk if planted == "pickle" else b"not base64!"
    raw.set(jobs.plugin.store.keys.secret, stored)
    other, _ = _open(jobs.plugin.config.store_url, prefix=jobs.plugin.config.prefix)
    try:
        secrets = [b.hook.bgcb_shared_secret(generate=lambda: b"g" * 32) for b in (jobs, other)]
    finally:
        other.close()
    assert secrets[0] == secrets[1] and len(secrets[0]) >= 16 and secrets[0] != b"g" * 32
    assert raw.get(jobs.plugin.store.keys.secret) == stored


def test_bgcb_jobs_lists_the_jobs_around_junk_records(backend, raw, junk) -> None:
    jobs, _ = backend
    keys = jobs.plugin.store.keys
    good, planted = jobs.submit(_job()), jobs.submit(_job())
    raw.set(keys.rec(planted), junk)
    raw.set(keys.rec("0" * 32), b"\xff\xfe")
    assert jobs.hook.bgcb_active() == [good]
    assert [job_id for job_id, _ in jobs.jobs()] == [good]


def test_junk_in_the_deferred_set_does_not_hold_back_overdue_jobs(backend, raw, junk, monkeypatch) -> None:
    """A worker's periodic look sends overdue deferred jobs again: a pickle among the deferred ids (and
    as the kept-back ticket count) is passed over."""
    from bgcb_celery import defaults

    monkeypatch.setattr(defaults, "LATER_RESEND", 0.2)
    jobs, fake = backend
    later = jobs.plugin.later
    kept = jobs.submit(_job())
    _running(jobs, kept)
    data = json.dumps({"retry_at": 4e9})
    assert jobs.hook.bgcb_cas(job_id=kept, expect=["running"], state="queued", data=data, ttl=60)
    jobs.hook.bgcb_defer(job_id=kept, delay=0.0, lane=None, priority=None, cap=None)
    raw.zadd(later.key, {junk: 0})
    raw.set(later.order.parked_key(), junk)
    sent = len(fake.sent)
    time.sleep(0.3)
    later.tick()
    assert [m["task_id"] for m in fake.sent[sent:]] == [kept], "the overdue job is sent again"


def test_junk_in_the_order_neither_fails_a_submit_nor_strands_a_job(backend, raw, junk) -> None:
    """The core's order (owners, running caps) with pickles in its counters, its lanes, its places and its
    running jobs: jobs are still queued, cancelled and taken, each ticket takes a real job, and a junk id in a
    lane is passed over (it has no ticket of its own: taking it would strand a real job)."""
    jobs, _ = backend
    jobs.order_jobs("the test")
    order = jobs.plugin.store.places.order
    base = order.base
    for counter in (":seq", ":n", ":parked"):
        raw.set(base + counter, junk)
    raw.rpush(base + ":lane:0:alice", junk)
    raw.zadd(base + ":bands", {junk: 0})
    raw.zadd(base + ":lanes:0", {junk: -2e12})  # the first lane in turn
    for field in (":where", ":cap", ":running", ":served"):
        raw.hset(base + field, junk, junk)
    raw.sadd(base + ":run:alice", junk)
    first, second, third = (jobs.submit(_job(owner="alice", running_cap=2)) for _ in range(3))
    assert jobs.status(second).position is not None
    assert jobs.cancel(third)
    # The junk lane, first in turn and empty, keeps one ticket back (sent again by a worker's look: a wait, not
    # a loss); the junk id in alice's lane is passed over; her jobs come in order.
    taken = [order.pop(f"ticket-{i}") for i in range(3)]
    assert [t[0] for t in taken if t] == [first, second], taken
    assert order.leave("") >= 0 and jobs.counts("alice") is not None


def test_a_junk_job_text_fails_its_job_as_corrupt(backend, raw, junk) -> None:
    """A worker that reads a job's text from Redis (a large job, or one taken from the core's order) and finds
    a pickle: the job fails with the core's "corrupt" error at once, instead of staying queued for ever."""
    jobs, _ = backend
    job_id = jobs.submit(_job())
    raw.set(jobs.plugin.store.keys.payload(job_id), junk)
    assert jobs.execute(job_id) is None
    assert jobs.status(job_id).state.value == "failed"
    assert "corrupt" in jobs.result(job_id).error["msg"]
