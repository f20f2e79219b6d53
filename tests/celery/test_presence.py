"""Workers announce the queues they serve; a job on a queue nobody serves fails after no_worker_after, saying what to start."""

from __future__ import annotations

import time
import uuid

from bgcb.jobs import Job, State
from bgcb.provider import load
from bgcb_celery import presence
from bgcb_testing.server import wait_for


def test_a_running_worker_announces_its_queue(worker, redis_client) -> None:
    def members() -> list[str]:
        return redis_client.zrangebyscore("bgcb:serving:bgcb", int(time.time() * 1000), "+inf")

    assert wait_for(members, 15, "the worker to announce queue 'bgcb'"), "a live worker is listed until its entry expires"


def test_a_queue_nobody_serves_fails_its_jobs_with_what_to_start(redis_server) -> None:
    queue = "nobody-" + uuid.uuid4().hex[:6]
    backend = load(
        "celery", fresh=True, broker_url=redis_server.url(), result_url=redis_server.url(), queue=queue, no_worker_after=1.0
    )
    try:
        job_id = backend.submit(Job(callback="0" * 16, args=[1]))
        assert backend.poll(job_id).status.state is State.QUEUED
        time.sleep(1.2)
        snap = backend.poll(job_id)
        assert snap.status.state is State.LOST, snap
        message = snap.outcome.error["msg"]
        assert f"no Celery worker serves queue '{queue}'" in message and f"worker -Q {queue}" in message, message
        assert isinstance(backend.plugin._serving, presence.Serving)
    finally:
        backend.close()
