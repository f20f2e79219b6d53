"""bgcb-celery's hooks on a real Redis, with a stand-in Celery app that records what it is asked to send.

What the core relies on (records, queue places, updates, heartbeats, the
compare-and-set) and what the backend promises beyond it (time limits on the
message, a stop only for jobs that still run, polls that wait out a short
Redis outage, a job returned to the queue when Redis is gone at claim).
"""

from __future__ import annotations

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
from bgcb_celery.store import Keys
from bgcb_testing.server import wait_for


class FakeCelery:
    """Records send_task and revoke calls instead of talking to a broker."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.revoked: list[str] = []
        self.tasks: dict[str, Any] = {}
        self.conf = SimpleNamespace(broker_url="redis://127.0.0.1:1/0", task_default_queue="fake")
        self.control = SimpleNamespace(revoke=lambda job_id, **kw: self.revoked.append(job_id))

    def task(self, **options: Any) -> Any:
        def register(fn: Any) -> Any:
            self.tasks[options["name"]] = fn
            return fn

        return register

    def send_task(self, name: str, **kw: Any) -> None:
        self.sent.append({"name": name, **kw})


def _open(url: str, **options: Any) -> tuple[Backend, FakeCelery]:
    fake = FakeCelery()
    options.setdefault("prefix", "t-" + uuid.uuid4().hex[:8])
    return load("celery", fresh=True, celery_app=fake, result_url=url, **options), fake


@pytest.fixture
def backend(redis_server) -> Iterator[tuple[Backend, FakeCelery]]:
    opened = _open(redis_server.url())
    yield opened
    opened[0].close()


def _job(**fields: Any) -> Job:
    return Job(callback="0" * 16, args=[1], **fields)


def test_submit_stores_the_record_queues_the_id_and_sends_a_small_message(backend) -> None:
    jobs, fake = backend
    first, second = jobs.submit(_job(timeout=5.0)), jobs.submit(_job())
    assert [jobs.status(first).position, jobs.status(second).position] == [0, 1]
    assert jobs.hook.bgcb_load(job_id=first).startswith('{"callback":"0000')
    message = fake.sent[0]
    assert message["name"] == TASK_NAME and message["task_id"] == first
    assert message["args"] == [first] and message["kwargs"] == {"store": jobs.plugin.store_id}
    assert message["soft_time_limit"] == 5.0
    assert message["time_limit"] > 5.0 + jobs.settings["cancel_grace"], "the hard limit leaves the grace"
    assert "soft_time_limit" not in fake.sent[1], "no time limit without a timeout"


def test_cas_moves_state_leaves_the_queue_and_is_safe_to_retry(backend, redis_client) -> None:
    jobs, _ = backend
    first, second = jobs.submit(_job()), jobs.submit(_job())
    cas = jobs.hook.bgcb_cas
    assert not cas(job_id=first, expect=["running"], state="succeeded", data="{}", ttl=60)
    assert cas(job_id=first, expect=["queued"], state="running", data='{"a":1}', ttl=60)
    assert jobs.status(second).position == 0, "a claimed job leaves the queue"
    assert cas(job_id=first, expect=["queued"], state="running", data='{"a":1}', ttl=60), "a retried write that landed"
    assert not cas(job_id=first, expect=["queued"], state="running", data='{"a":2}', ttl=60)
    assert cas(job_id=second, expect=["queued", "running"], state="cancelled", data="{}", ttl=60)
    assert redis_client.zrank(Keys(jobs.plugin.store.keys.prefix).queue, second) is None
    assert 0 < redis_client.pttl(jobs.plugin.store.keys.job(second)) <= 60_000
    assert not cas(job_id="x" * 24, expect=["queued"], state="running", data="{}", ttl=60), "unknown id"


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


def test_alive_follows_the_heartbeat(backend, redis_client) -> None:
    jobs, _ = backend
    store = jobs.plugin.store
    wait_for(lambda: redis_client.info("server")["uptime_in_seconds"] > store.timing.quiet, 15, "Redis up a while")
    job_id = jobs.submit(_job())
    assert jobs.hook.bgcb_read(job_id=job_id, drain=True).alive is None, "queued: no worker to ask about"
    store.beat([job_id], "host:1")
    jobs.hook.bgcb_cas(job_id=job_id, expect=["queued"], state="running", data="{}", ttl=60)
    assert jobs.hook.bgcb_read(job_id=job_id, drain=True).alive is True
    store.unbeat(job_id)
    assert jobs.hook.bgcb_read(job_id=job_id, drain=True).alive is False
    store._last_outage = time.time()  # as if this process had just seen Redis go away
    assert jobs.hook.bgcb_read(job_id=job_id, drain=True).alive is None, "no deaths declared right after an outage"


def test_stop_revokes_only_a_job_that_still_runs(backend) -> None:
    jobs, fake = backend
    running, finished = jobs.submit(_job()), jobs.submit(_job())
    jobs.plugin.store.beat([running], "host:1")
    jobs.hook.bgcb_stop(job_id=running, after=0.0)
    jobs.hook.bgcb_stop(job_id=finished, after=0.0)
    for timer in list(jobs.plugin._timers):
        timer.join(5)
    assert fake.revoked == [running], "no broadcast for a job whose heartbeat is gone"


def test_active_lists_running_then_queued(backend) -> None:
    jobs, _ = backend
    a, b, c = jobs.submit(_job()), jobs.submit(_job()), jobs.submit(_job())
    jobs.plugin.store.beat([b], "host:1")
    jobs.hook.bgcb_cas(job_id=b, expect=["queued"], state="running", data="{}", ttl=60)
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


def test_the_task_keeps_a_heartbeat_while_the_core_runs_the_job(backend, redis_client, monkeypatch) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from bgcb_celery import worker

    jobs, _ = backend
    job_id = jobs.submit(_job())
    hb = jobs.plugin.store.keys.hb(job_id)
    seen: dict[str, Any] = {}

    def execute(given: str, *, stop_errors: tuple = ()) -> None:
        seen.update(job=given, beating=redis_client.exists(hb), stop_errors=stop_errors)
        claim = f'{{"claim":"{uuid.uuid4().hex}"}}'  # the core's claim data is unique (start time, worker)
        if jobs.hook.bgcb_cas(job_id=given, expect=["queued"], state="running", data=claim, ttl=60):
            worker.run_job(given, store=jobs.plugin.store_id)  # the same message again, while it runs here
            seen["beating_after_duplicate"] = redis_client.exists(hb)

    monkeypatch.setattr(jobs, "execute", execute)
    worker.run_job(job_id, "a payload of bgcb-celery 0.1", store=jobs.plugin.store_id)
    assert seen == {"job": job_id, "beating": 1, "stop_errors": (SoftTimeLimitExceeded,), "beating_after_duplicate": 1}
    assert not redis_client.exists(hb), "the heartbeat goes when the job returns"
    worker.run_job(job_id, store=jobs.plugin.store_id)  # delivered again elsewhere: its claim fails
    assert redis_client.pttl(hb) > 0, "a run that did not claim the job leaves the key to expire"
