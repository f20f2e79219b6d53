"""Faults of a real bgcb-celery deployment, as ``tests/diskcache`` has them for diskcache: gunicorn web workers
SIGKILLed mid-poll, a corrupt job record, pickles planted in every key bgcb-celery uses, and a pickled Celery
message. Each test starts its own Redis, gunicorn serving ``apps/fault_app.py`` and ``bgcb worker fault_app``
(see :mod:`fault_harness`), and prints what it measured."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fault_harness import BIN, Deployment, Recorder, pickled, pickled_task_message
from harness import APPS

from bgcb_celery.layout import Keys
from bgcb_testing import DashClient
from bgcb_testing.client import Response
from bgcb_testing.server import wait_for

KEYS = Keys("bgcb")
SLOW = [("slow-out", "children")]
CACHED = [("cached-out", "children")]
TICKER = [("ticker-out", "children")]
UNKNOWN = "unknown to the backend"
CORRUPT = "it is corrupt"


def _slow(n: int, seconds: float) -> tuple[list, list]:
    return [("slow-btn", "n_clicks", n)], [("slow-in", "value", str(seconds))]


def _start(client: DashClient, n: int, seconds: float) -> dict:
    return client.start(SLOW, *_slow(n, seconds))


def _finish(client: DashClient, handles: dict, n: int, timeout: float = 15) -> float:
    """Poll a slow job to its end; its result must be its own. Returns when it arrived (monotonic)."""
    run = client.run(SLOW, *_slow(n, 0), handles=handles, timeout=timeout)
    assert run.final.status == 200, run.final.text[:500]
    assert json.loads(run.output("slow-out", "children"))["n"] == n
    return time.monotonic()


def _job_id(handles: dict) -> str:
    return str(handles["job"]).split("~")[0]


def _planted(resp: Response) -> bool:
    """The error of a job whose record or text bgcb did not write, as Dash shows a job's error (a 500)."""
    return UNKNOWN in resp.text or CORRUPT in resp.text


@pytest.fixture
def deployed(request, tmp_path) -> Iterator[Deployment]:
    options = getattr(request, "param", {})
    deployment = Deployment(tmp_path, **options)
    yield deployment
    deployment.close()


@pytest.mark.parametrize("deployed", [{"web_workers": 2}], indirect=True)
def test_a_gunicorn_worker_killed_mid_poll_loses_nothing(deployed: Deployment) -> None:
    """SIGKILL one gunicorn web worker, then the other, while a job's page polls: each poll is answered by the
    worker left (or by gunicorn's replacement), whose handle checks pass with the secret shared in Redis, and
    the job's result arrives."""
    client = DashClient.http(deployed.url).load()
    inputs, state = _slow(5, 4.0)
    handles = client.start(SLOW, inputs, state)
    wait_for(lambda: len(deployed.web_workers()) == 2, 15, "two gunicorn web workers")
    assert client.poll(handles, SLOW, inputs, state).status == 200
    killed_at = time.monotonic()
    polls = 0
    for victim in deployed.web_workers():
        os.kill(victim, signal.SIGKILL)

        def replaced(victim: int = victim) -> bool:
            nonlocal polls
            resp = client.poll(handles, SLOW, inputs, state)
            polls += 1
            assert resp.status == 200 and "response" not in (resp.body or {}), resp.text[:500]
            return len(deployed.web_workers()) == 2 and victim not in deployed.web_workers()

        wait_for(replaced, 20, "gunicorn to replace the killed web worker (polling meanwhile)", interval=0.1)
    respawned = time.monotonic() - killed_at
    arrived = _finish(client, handles, 5)
    print(
        f"gunicorn web workers SIGKILLed mid-poll (celery): both replaced after {respawned:.2f} s, {polls} polls "
        f"answered meanwhile; the result arrived {arrived - killed_at:.2f} s after the first kill (a 4 s job)"
    )
    assert deployed.worker.proc.poll() is None


def test_a_corrupt_record_fails_only_its_job_and_the_worker_serves_on(deployed: Deployment, tmp_path: Path) -> None:
    """Junk planted in the records of two queued jobs (bytes that are not UTF-8, and a pickle) while two jobs
    run and another waits: each corrupt job reads as unknown and its page says so within 5 s, every other
    job completes, the worker skips the corrupt ones and serves a new job, and nothing is unpickled."""
    client = DashClient.http(deployed.url).load()
    marker = tmp_path / "unpickled"
    busy = {n: _start(client, n, 1.5) for n in (1, 2)}
    for handles in busy.values():
        wait_for(lambda h=handles: (deployed.job_record(h["job"]) or ("",))[0] == "running", 15, "two running jobs")
    junk, planted, bystander = (_start(client, n, 0) for n in (3, 4, 5))
    assert all((deployed.job_record(h["job"]) or ("",))[0] == "queued" for h in (junk, planted, bystander))
    deployed.raw.set(KEYS.rec(_job_id(junk)), b"\xff\xfe\x80 not UTF-8")
    deployed.raw.set(KEYS.rec(_job_id(planted)), pickled(marker))
    seconds = []
    for n, handles in ((3, junk), (4, planted)):
        t0 = time.monotonic()
        run = client.run(SLOW, *_slow(n, 0), handles=handles, timeout=10)
        seconds.append(time.monotonic() - t0)
        assert run.final.status == 500 and UNKNOWN in run.final.text, run.final.text[:500]
    print(
        f"corrupt record (celery): the page shows the error after {seconds[0]:.2f} s (junk bytes), {seconds[1]:.2f} s (a pickle)"
    )
    assert max(seconds) <= 5
    for n, handles in [*busy.items(), (5, bystander)]:
        _finish(client, handles, n)
    assert deployed.worker.proc.poll() is None and len(deployed.worker.pool_pids()) == 2, "the worker serves on"
    _finish(client, _start(client, 6, 0), 6)
    assert not marker.exists(), "a planted pickle was unpickled"
    assert "Traceback" not in deployed.worker.output(), deployed.worker.output()[-3000:]


def _plant_shared_keys(marker: Path, ordered: bool) -> Callable[[redis.Redis], None]:
    """Pickles in the keys a deployment reads before and beside any one job: the shared secret, the workers'
    announcements, the deferred sets, a heartbeat, and (ordered) every key of the core's order."""

    def plant(raw: redis.Redis) -> None:
        junk = pickled(marker)
        raw.set(KEYS.secret, junk)
        raw.set(KEYS.worker("ghost:1"), junk)
        raw.zadd(KEYS.serving("bgcb"), {junk: 4e12})
        raw.zadd(KEYS.later("bgcb"), {junk: 0})
        raw.zadd(KEYS.later("bgcb") + ":in:", {junk: 0})
        raw.hset(KEYS.later("bgcb") + ":of", junk, junk)
        if ordered:
            base = "bgcb:order:bgcb"
            for counter in (":seq", ":n", ":parked"):
                raw.set(base + counter, junk)
            raw.rpush(base + ":lane:0:alice", junk)
            raw.zadd(base + ":bands", {junk: 0})
            raw.zadd(base + ":lanes:0", {junk: 0})
            for field in (":where", ":cap", ":running", ":served"):
                raw.hset(base + field, junk, junk)
            raw.sadd(base + ":run:alice", junk)

    return plant


@pytest.mark.parametrize("ordered", [False, True], ids=["broker-order", "core-order"])
def test_pickles_planted_in_every_key_are_never_unpickled(ordered: bool, tmp_path: Path) -> None:
    """Pickles planted in each key bgcb-celery uses, around a page that submits, polls, cancels and hits its
    cache, and `bgcb jobs`: nothing is unpickled, no request fails but the one whose record was replaced
    (it reads as unknown, as documented), every other job completes and the worker serves on."""
    marker = tmp_path / "unpickled"
    junk = pickled(marker)
    deployed = Deployment(tmp_path, web_workers=2, ordered=ordered, plant=_plant_shared_keys(marker, ordered))
    try:
        page = Recorder(deployed.url, headers={"X-User": "alice"})
        client, raw = page.client, deployed.raw
        t0 = time.monotonic()
        # cache_by: a cached outcome replaced by a pickle reads as a miss (the job runs again), then hits
        first = client.run(CACHED, [("cached-btn", "n_clicks", 1)]).output("cached-out", "children")
        cache_keys = wait_for(lambda: raw.keys(KEYS.cache("*")), 5, "the outcome to be cached (after its record)")
        for key in cache_keys:
            raw.set(key, junk, px=60_000)
        again = client.run(CACHED, [("cached-btn", "n_clicks", 1)]).output("cached-out", "children")
        hit = client.run(CACHED, [("cached-btn", "n_clicks", 1)])
        assert again != first and hit.output("cached-out", "children") == again, "a miss, then a hit"
        # a running job: pickles in its heartbeat, its updates, its poll time, its payload and its ticket
        ticker = client.start(TICKER, [("ticker-btn", "n_clicks", 1)])
        ticker_id = _job_id(ticker)
        wait_for(lambda: (deployed.job_record(ticker["job"]) or ("",))[0] == "running", 15, "the ticker to run")
        worker = deployed.job_record(ticker["job"])[1]["worker"]
        raw.set(KEYS.worker(worker), junk, px=60_000)
        raw.rpush(KEYS.upd(ticker_id), junk)
        for key in (KEYS.seen(ticker_id), KEYS.payload(ticker_id), f"bgcb:order:bgcb:ticket:{ticker_id}"):
            raw.set(key, junk, px=60_000)
        for _ in range(10):
            resp = client.poll(ticker, TICKER, [("ticker-btn", "n_clicks", 1)])
            assert resp.status == 200 and "response" not in (resp.body or {}), resp.text[:500]
            time.sleep(0.1)
        # queued jobs behind two running ones: one record and one payload replaced by pickles
        busy = {n: _start(client, n, 1.0) for n in (1, 2)}
        victim, carried, bystander = (_start(client, n, 0) for n in (3, 4, 5))
        raw.set(KEYS.rec(_job_id(victim)), junk)
        raw.set(KEYS.payload(_job_id(carried)), junk)
        for n, handles in ((3, victim), (4, carried), (5, bystander)):  # their places in the queue
            assert client.poll(handles, SLOW, *_slow(n, 0)).status in (200, 500)
        assert client.cancel(("ticker-cancel", "n_clicks"), ticker["job"]).status in (200, 204)
        listing = subprocess.run(
            [str(BIN / "bgcb"), "jobs", "fault_app"],
            cwd=APPS,
            env={**os.environ, **deployed.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stdout + listing.stderr
        gone = client.run(SLOW, *_slow(3, 0), handles=victim, timeout=10)
        assert gone.final.status == 500 and UNKNOWN in gone.final.text, gone.final.text[:500]
        for n, handles in [*busy.items(), (5, bystander)]:
            _finish(client, handles, n)
        # Its text travels in its message (it runs), unless the worker reads it from Redis (it fails as corrupt).
        carried_run = client.run(SLOW, *_slow(4, 0), handles=carried, timeout=15)
        assert carried_run.final.status == 200 or CORRUPT in carried_run.final.text, carried_run.final.text[:500]
        stopped = client.run(TICKER, [("ticker-btn", "n_clicks", 1)], handles=ticker, timeout=10)
        assert stopped.final.status == 204, "the cancelled job ends with no update"
        _finish(client, _start(client, 6, 0), 6)
        seconds = time.monotonic() - t0
        mode = "the core's order" if ordered else "the broker's order"
        print(f"planted pickles ({mode}): every request answered, none unpickled, in {seconds:.2f} s")
        assert page.server_errors(allowed=_planted) == []
        assert deployed.worker.proc.poll() is None
        assert not marker.exists(), "a planted pickle was unpickled"
    finally:
        deployed.close()


def test_a_pickled_celery_message_is_refused_and_the_worker_serves_on(deployed: Deployment, tmp_path: Path) -> None:
    """The Celery app bgcb builds accepts JSON only: a task message whose body is a pickle, pushed onto the
    queue's list, is refused by the worker without being unpickled, and the worker keeps serving."""
    from bgcb_celery.config import build_celery_app

    built = build_celery_app(deployed.redis.url(), "bgcb", False)
    assert built.conf.accept_content == ["json"]
    built.close()
    marker = tmp_path / "unpickled"
    client = DashClient.http(deployed.url).load()
    t0 = time.monotonic()
    deployed.raw.lpush("bgcb", pickled_task_message(marker))
    wait_for(lambda: "Refusing to deserialize" in deployed.worker.output(), 10, "the worker to refuse the message")
    seconds = time.monotonic() - t0
    _finish(client, _start(client, 1, 0), 1)
    print(f"pickled Celery message (celery): refused by the worker {seconds:.2f} s after it was queued, which then served a job")
    assert not marker.exists(), "the message's pickle was unpickled"
    assert deployed.worker.proc.poll() is None and len(deployed.worker.pool_pids()) == 2
