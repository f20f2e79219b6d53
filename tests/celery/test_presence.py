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


def test_doctor_checks_redis_the_broker_and_a_worker(worker, redis_server) -> None:
    """`bgcb doctor -b celery`: every check passes with Redis and a worker up; with Redis unreachable it exits 1
    and each failed check says how to fix it."""
    import os
    import subprocess
    import sys

    def doctor(url: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, BGCB_CELERY_RESULT_URL=url, BGCB_CELERY_BROKER_URL=url)
        command = [sys.executable, "-m", "bgcb.cli", "doctor", "-b", "celery"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    healthy = wait_for(lambda: (r := doctor(redis_server.url())).returncode == 0 and r, 20, "doctor to pass with a worker up")
    assert "ok   a worker serving queue 'bgcb'" in healthy.stdout, healthy.stdout
    assert "with celery " in healthy.stdout, "doctor names the versions the backend runs on"
    sick = doctor("redis://127.0.0.1:1/0")
    assert sick.returncode == 1, sick.stdout + sick.stderr
    assert "FAIL Redis job store" in sick.stdout and "Start Redis there" in sick.stdout, sick.stdout
