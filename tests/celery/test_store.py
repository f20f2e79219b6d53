"""bgcb-celery's hooks on a real Redis, with a stand-in Celery app that records what it is asked to send.

What the core relies on (records, queue places, updates, heartbeats, the
compare-and-set) and what the backend promises beyond it (time limits on the
message, a stop only for jobs that still run, polls that wait out a short
Redis outage, a job returned to the queue when Redis is gone at claim).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from harness import free_port, start_redis

from bgcb.jobs import Job
from bgcb.provider import Backend, load
from bgcb_celery import TASK_NAME, StoreUnavailable
from bgcb_testing.server import wait_for


class FakeCelery:
    """Records send_task and revoke calls instead of talking to a broker; with ``broker`` (a Redis
    client) it also pushes a message naming the task id on the queue's list, as kombu does."""

    def __init__(self, broker_url: str = "redis://127.0.0.1:1/0", broker: Any = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.revoked: list[str] = []
        self.tasks: dict[str, Any] = {}
        self.broker = broker
        self.conf = SimpleNamespace(broker_url=broker_url, task_default_queue="fake", broker_transport_options={})
        self.control = SimpleNamespace(revoke=lambda job_id, **kw: self.revoked.append(job_id))

    def task(self, **options: Any) -> Any:
        def register(fn: Any) -> Any:
            self.tasks[options["name"]] = fn
            return fn

        return register

    def send_task(self, name: str, **kw: Any) -> None:
        self.sent.append({"name": name, **kw})
        if self.broker is not None:
            self.broker.lpush("fake", json.dumps({"body": "...", "headers": {"id": kw["task_id"], "task": name}}))


def _open(url: str, broker: Any = None, **options: Any) -> tuple[Backend, FakeCelery]:
    fake = FakeCelery(url, broker) if broker is not None else FakeCelery()
    options.setdefault("prefix", "t-" + uuid.uuid4().hex[:8])
    options.setdefault("direct_publish", False)  # the fake records send_task; test_direct_publish covers the other path
    return load("celery", fresh=True, celery_app=fake, result_url=url, **options), fake


@pytest.fixture
def backend(redis_server, redis_client) -> Iterator[tuple[Backend, FakeCelery]]:
    redis_client.delete("fake")
    opened = _open(redis_server.url(), broker=redis_client)
    yield opened
    opened[0].close()


def _running(jobs: Backend, job_id: str, worker: str = "host:1", beat: int = 1) -> None:
    """Claim ``job_id`` as the worker process ``worker`` whose last beat was ``beat``."""
    store = jobs.plugin.store
    assert store.cas(job_id, ["queued"], "running", json.dumps({"worker": worker}), 60, beat=str(beat))


def _job(**fields: Any) -> Job:
    return Job(callback="0" * 16, args=[1], **fields)


def test_submit_stores_the_record_and_sends_the_job_in_its_message(backend) -> None:
    jobs, fake = backend
    first, second = jobs.submit(_job(timeout=5.0)), jobs.submit(_job())
    assert [jobs.status(first).position, jobs.status(second).position] == [0, 1], "read from the broker's list"
    payload = jobs.hook.bgcb_load(job_id=first)
    assert payload.startswith('{"callback":"0000')
    message = fake.sent[0]
    assert message["name"] == TASK_NAME and message["task_id"] == first
    assert message["args"] == [first] and message["kwargs"] == {"store": jobs.plugin.store_id, "job": payload}
    assert message["soft_time_limit"] == 5.0
    assert message["time_limit"] > 5.0 + jobs.settings["cancel_grace"], "the hard limit leaves the grace"
    assert "soft_time_limit" not in fake.sent[1], "no time limit without a timeout"
    big = jobs.submit(Job(callback="0" * 16, args=["x" * 20_000]))
    assert fake.sent[-1]["kwargs"] == {"store": jobs.plugin.store_id}, "a large job stays only in Redis"
    assert len(jobs.hook.bgcb_load(job_id=big)) > 20_000


def test_positions_follow_the_broker_and_are_unknown_elsewhere(backend, redis_client, redis_server) -> None:
    jobs, _ = backend
    first, second = jobs.submit(_job()), jobs.submit(_job())
    redis_client.rpop("fake")  # a worker takes the first message
    assert jobs.status(second).position == 0
    assert jobs.status(first).position == 0, "taken by a worker but not yet claimed: it starts next"
    elsewhere, _ = _open(redis_server.url())  # its broker is another server
    try:
        assert elsewhere.status(elsewhere.submit(_job())).position is None
    finally:
        elsewhere.close()


def test_cas_moves_state_once_and_is_safe_to_retry(backend, redis_client) -> None:
    jobs, _ = backend
    first, second = jobs.submit(_job()), jobs.submit(_job())
    cas = jobs.hook.bgcb_cas
    assert not cas(job_id=first, expect=["running"], state="succeeded", data="{}", ttl=60)
    assert jobs.hook.bgcb_read(job_id=first, drain=False).state == "queued", "a failed CAS leaves the record as it was"
    assert cas(job_id=first, expect=["queued"], state="running", data='{"a":1}', ttl=60)
    assert cas(job_id=first, expect=["queued"], state="running", data='{"a":1}', ttl=60), "a retried write that landed"
    assert not cas(job_id=first, expect=["queued"], state="running", data='{"a":2}', ttl=60)
    assert jobs.hook.bgcb_read(job_id=first, drain=False).data == '{"a":1}'
    assert cas(job_id=second, expect=["queued", "running"], state="cancelled", data="{}", ttl=60)
    assert not cas(job_id=second, expect=["queued"], state="running", data="{}", ttl=600)
    assert 0 < redis_client.pttl(jobs.plugin.store.keys.rec(second)) <= jobs.settings["result_ttl"] * 1000
    assert jobs.hook.bgcb_read(job_id=second, drain=False).state == "cancelled", "a terminal state is final"
    assert not cas(job_id="x" * 24, expect=["queued"], state="running", data="{}", ttl=60), "unknown id"
    assert not redis_client.exists(jobs.plugin.store.keys.rec("x" * 24)), "a CAS never creates a record"


def test_updates_are_drained_once_in_order(backend) -> None:
    jobs, _ = backend
    job_id = jobs.submit(_job())
    hook = jobs.hook
    hook.bgcb_cas(job_id=job_id, expect=["queued"], state="running", data="{}", ttl=60)
    for n in range(3):
        hook.bgcb_append(job_id=job_id, update=f'{{"n":{n}}}', ttl=60)
    assert hook.bgcb_read(job_id=job_id, drain=False).updates == []
    assert hook.bgcb_read(job_id=job_id, drain=True).updates == ['{"n":0}', '{"n":1}', '{"n":2}']
    assert hook.bgcb_read(job_id=job_id, drain=True).updates == []


def test_a_job_run_here_delivers_its_last_updates_after_it_ended(backend) -> None:
    jobs, _ = backend
    plugin, hook = jobs.plugin, jobs.hook
    with_updates, without = jobs.submit(_job()), jobs.submit(_job())
    for job_id in (with_updates, without):
        plugin.runner.executing.add(job_id)
        assert hook.bgcb_cas(job_id=job_id, expect=["queued"], state="running", data="{}", ttl=60)
    hook.bgcb_append(job_id=with_updates, update='{"last":1}', ttl=60)
    for job_id in (with_updates, without):
        assert hook.bgcb_cas(job_id=job_id, expect=["running"], state="succeeded", data="{}", ttl=60)
        plugin.runner.executing.discard(job_id)
    assert hook.bgcb_read(job_id=with_updates, drain=True).updates == ['{"last":1}']
    assert hook.bgcb_read(job_id=without, drain=True).updates == []


def test_alive_follows_the_workers_heartbeat(backend, redis_client) -> None:
    jobs, _ = backend
    store = jobs.plugin.store
    wait_for(lambda: redis_client.info("server")["uptime_in_seconds"] > store.timing.quiet, 15, "Redis up a while")
    job_id = jobs.submit(_job())
    queued = jobs.hook.bgcb_read(job_id=job_id, drain=True)
    assert queued.alive is False and "no Celery worker serves queue 'fake'" in str(queued.reason), "queued: nobody serves it"
    store.beat("host:1", 1, [job_id], [])
    _running(jobs, job_id, beat=1)
    assert jobs.hook.bgcb_read(job_id=job_id, drain=True).alive is True
    store.beat("host:1", 2, [], [])
    gone = jobs.hook.bgcb_read(job_id=job_id, drain=True)
    assert gone.alive is False and "no longer runs it" in str(gone.reason)
    redis_client.delete(store.keys.worker("host:1"))
    dead = jobs.hook.bgcb_read(job_id=job_id, drain=True)
    assert dead.alive is False and "no heartbeat from its worker process host:1" in str(dead.reason)
    store._last_outage = time.time()  # as if this process had just seen Redis go away
    assert jobs.hook.bgcb_read(job_id=job_id, drain=True).alive is None, "no deaths declared right after an outage"


def test_a_job_seen_running_is_read_in_one_script_call_with_the_same_answer(backend, redis_client) -> None:
    jobs, _ = backend
    store = jobs.plugin.store
    job_id = jobs.submit(_job())
    store.beat("host:1", 1, [job_id], [])
    _running(jobs, job_id)
    store.append(job_id, '{"n":1}', 60)
    plain, scripted = store.read(job_id, drain=False), store.read(job_id, drain=False, running=True)
    assert plain == scripted and scripted.alive is True and scripted.updates == []
    assert store.read(job_id, drain=True, running=True).updates == ['{"n":1}'], "drains like the plain read"
    store.beat("host:1", 2, [], [])
    assert store.read(job_id, drain=True, running=True).alive is False
    assert store.cas(job_id, ["running"], "succeeded", "{}", 60)
    ended = store.read(job_id, drain=True, running=True)
    assert (ended.state, ended.alive, ended.updates) == ("succeeded", None, [])
    assert store.read("q" * 24, drain=True, running=True) is None
    before = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    jobs.hook.bgcb_read(job_id=jobs.submit(_job()), drain=True)  # never seen running: a plain GET (and its queue place)
    after = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert after - before == 1, "only the queue-place script"


def test_a_record_bgcb_did_not_write_reads_as_an_unknown_job(backend, redis_client) -> None:
    jobs, _ = backend
    keys = jobs.plugin.store.keys
    garbled, hashed, shapeless = jobs.submit(_job()), jobs.submit(_job()), jobs.submit(_job())
    jobs.plugin.store.beat("host:1", 1, [garbled], [])
    _running(jobs, garbled)
    assert jobs.hook.bgcb_read(job_id=garbled, drain=True).state == "running"  # seen running: read in one call next
    redis_client.set(keys.rec(garbled), b"\xff\xfe not utf-8")
    redis_client.set(keys.payload(garbled), b"\xff")
    redis_client.delete(keys.rec(hashed))
    redis_client.hset(keys.rec(hashed), "s", "running")
    redis_client.set(keys.rec(shapeless), "no separators")
    for job_id in (garbled, hashed, shapeless):
        assert jobs.hook.bgcb_read(job_id=job_id, drain=True) is None
        assert jobs.hook.bgcb_read(job_id=job_id, drain=True) is None, "and again"
        assert jobs.status(job_id).state.value == "unknown"
    assert jobs.execute(garbled) is None, "a worker that takes it neither runs it nor fails"  # its text: as read


def test_stop_revokes_only_a_job_that_still_runs(backend) -> None:
    jobs, fake = backend
    running, finished = jobs.submit(_job()), jobs.submit(_job())
    jobs.plugin.store.beat("host:1", 1, [running], [])
    _running(jobs, running)
    jobs.hook.bgcb_stop(job_id=running, after=0.0)
    jobs.hook.bgcb_stop(job_id=finished, after=0.0)
    for timer in list(jobs.plugin._timers):
        timer.join(5)
    assert fake.revoked == [running], "no broadcast for a job no worker lists"


def test_active_lists_running_then_queued(backend) -> None:
    jobs, _ = backend
    a = jobs.submit(_job(submitted_at=1.0))
    b = jobs.submit(_job(submitted_at=2.0))
    c = jobs.submit(_job(submitted_at=3.0))
    _running(jobs, b)
    assert jobs.hook.bgcb_active() == [b, a, c]


def test_cache_and_secret(backend) -> None:
    jobs, _ = backend
    hook = jobs.hook
    assert hook.bgcb_cache_get(cache_key="k") is None
    hook.bgcb_cache_put(cache_key="k", outcome='{"kind":"value"}', ttl=30)
    assert hook.bgcb_cache_get(cache_key="k") == '{"kind":"value"}'
    first = hook.bgcb_shared_secret(generate=lambda: b"one")
    other, _ = _open(jobs.plugin.store.url, prefix=jobs.plugin.store.keys.prefix)
    try:
        assert other.hook.bgcb_shared_secret(generate=lambda: b"two") == first == b"one"
    finally:
        other.close()


def test_a_short_outage_keeps_polls_waiting_and_submit_fails_clearly() -> None:
    server = start_redis()
    jobs, _ = _open(server.url(), outage_grace=1.0)
    try:
        job_id = jobs.submit(_job())
        seen = jobs.hook.bgcb_read(job_id=job_id, drain=True)
        server.stop()
        during = jobs.hook.bgcb_read(job_id=job_id, drain=True)
        assert (during.state, during.data, during.updates) == ("queued", seen.data, []), "the last read, no updates"
        assert jobs.hook.bgcb_read(job_id="y" * 24, drain=True).state == "running", "never read here: still going"
        with pytest.raises(StoreUnavailable, match="cannot reach the Redis job store at " + server.url()):
            jobs.submit(_job())
        with pytest.raises(StoreUnavailable):
            jobs.hook.bgcb_read(job_id=job_id, drain=False)  # only polls wait
        time.sleep(1.1)
        with pytest.raises(StoreUnavailable):
            jobs.hook.bgcb_read(job_id=job_id, drain=True)  # past outage_grace: the browser gets the error
        server.start()
        assert jobs.hook.bgcb_read(job_id=job_id, drain=True).state == "queued"
    finally:
        jobs.close()
        server.close()


def test_a_job_is_returned_to_the_queue_when_redis_is_gone_at_claim() -> None:
    from celery.exceptions import Reject

    from bgcb_celery import worker

    jobs, _ = _open(f"redis://127.0.0.1:{free_port()}/0", store_retry=0.2)
    try:
        with pytest.raises(Reject) as caught:
            worker.run_job("z" * 24, store=jobs.plugin.store_id)
        assert caught.value.requeue
        assert "cannot reach the Redis job store" in str(caught.value.reason)
    finally:
        jobs.close()


def test_the_task_lists_the_job_in_its_heartbeat_while_the_core_runs_it(backend, redis_client, monkeypatch) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from bgcb.lifecycle import worker_name
    from bgcb_celery import worker

    jobs, _ = backend
    job_id = jobs.submit(_job())
    keys, runner = jobs.plugin.store.keys, jobs.plugin.runner
    listed = lambda: job_id in (redis_client.get(keys.worker(worker_name())) or "").split()[1:]  # noqa: E731
    seen: dict[str, Any] = {}

    def execute(given: str, *, stop_errors: tuple = ()) -> None:
        seen.update(job=given, payload=jobs.hook.bgcb_load(job_id=given), stop_errors=stop_errors)
        seen["beating"] = listed()  # the first beat of the process is written before the claim
        claim = json.dumps({"worker": worker_name(), "claim": uuid.uuid4().hex})
        if jobs.hook.bgcb_cas(job_id=given, expect=["queued"], state="running", data=claim, ttl=60):
            worker.run_job(given, store=jobs.plugin.store_id)  # the same message again, while it runs here
            seen["alive"] = jobs.hook.bgcb_read(job_id=given, drain=False).alive

    monkeypatch.setattr(jobs, "execute", execute)
    worker.run_job(job_id, "a payload of bgcb-celery 0.1", store=jobs.plugin.store_id, job="from the message")
    assert seen == {
        "job": job_id,
        "payload": "from the message",
        "stop_errors": (SoftTimeLimitExceeded,),
        "beating": True,
        "alive": True,
    }
    with runner.heart._lock:
        runner.heart._beat()
    assert not listed(), "the next beat leaves out a job that returned"
    assert not redis_client.exists(keys.payload(job_id)), "and drops the payload of a job this process ended"
    other = jobs.submit(_job())
    jobs.hook.bgcb_cas(job_id=other, expect=["queued"], state="cancelled", data="{}", ttl=60)
    worker.run_job(other, store=jobs.plugin.store_id)  # not claimed here: its payload is not ours to drop
    with runner.heart._lock:
        runner.heart._beat()
    assert redis_client.exists(keys.payload(other))


def test_ordered_jobs_queue_in_the_cores_order_and_a_stop_revokes_the_ticket_that_runs_them(backend) -> None:
    """With owners, messages are tickets: a worker holding alice's second ticket runs bob's job (his turn),
    and stopping bob's job revokes that ticket's task, not bob's own id (whose message still waits and
    would be dropped by a revoke, stranding a job)."""
    jobs, fake = backend
    jobs.order_jobs("the test")
    alice = [jobs.submit(_job(owner="alice")) for _ in range(3)]
    bob = jobs.submit(_job(owner="bob"))
    assert [jobs.status(j).position for j in (*alice, bob)] == [0, 2, 3, 1], "bob's turn comes second"
    assert all(m["kwargs"].get("ordered") for m in fake.sent), "every message of an ordering process is a ticket"
    order = jobs.plugin.store.places.order
    assert order.pop(alice[0]) == (alice[0], False), "no running cap: not counted"
    assert order.pop(alice[1]) == (bob, False), "alice's second ticket runs bob's job"
    assert order.task_of(bob) == alice[1] and order.task_of(alice[0]) == alice[0]
    jobs.plugin.store.beat("host:1", 1, [bob], [])
    _running(jobs, bob)
    jobs.hook.bgcb_stop(job_id=bob, after=0.0)
    for timer in list(jobs.plugin._timers):
        timer.join(5)
    assert fake.revoked == [alice[1]]
    assert jobs.cancel(alice[2]) and jobs.status(alice[1]).position == 0, "a cancel while queued gives up its place"
