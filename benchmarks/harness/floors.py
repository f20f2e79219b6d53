"""Floors for the turnaround phase: what a store's bare round trip costs, without Dash or bgcb.

* :func:`diskcache_floor`: ``set()`` then ``get()`` on a diskcache ``Cache`` in a
  temporary directory, in this process.
* :func:`celery_floor`: a no-op task's round trip (``apply_async().get()``) through
  a tiny Celery app on a given Redis, run by a Celery worker (prefork, one
  process) that this module starts and stops. If that fails, the round trip of
  Redis ``PING`` + ``SET`` + ``GET`` instead, with the reason.

The worker imports this module as ``harness.floors:celery_app``; it finds its
Redis in ``BENCH_FLOOR_REDIS``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .stack import BENCHMARKS, Proc, this_python

#: The queue and the task name of the floor's Celery app (nothing else uses them).
QUEUE = "bench-floor"
NOOP = "bench_floor.noop"
#: The Redis database the floor uses on the side's server, away from the side's own keys.
FLOOR_DB = 1


def make_celery_app(url: str) -> Any:
    """A Celery app with one no-op task, its broker and results on ``url``."""
    from celery import Celery

    app = Celery("bench_floor", broker=url, backend=url)
    app.conf.update(
        task_default_queue=QUEUE,
        worker_prefetch_multiplier=1,
        result_expires=600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name=NOOP)
    def noop() -> None:
        return None

    return app


celery_app = make_celery_app(os.environ["BENCH_FLOOR_REDIS"]) if os.environ.get("BENCH_FLOOR_REDIS") else None


def floor_url(redis_url: str) -> str:
    """``redis_url`` (``redis://host:port/0``) with the floor's database."""
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    return f"{base}/{FLOOR_DB}"


def diskcache_floor(n: int, warmup: int = 20) -> list[float]:
    """Seconds of ``n`` set()+get() pairs of a small value on a diskcache Cache (after ``warmup`` pairs)."""
    import diskcache

    directory = tempfile.mkdtemp(prefix="bench-floor-diskcache-")
    out: list[float] = []
    try:
        with diskcache.Cache(directory) as cache:
            value = {"response": {"out": {"children": 1}}, "multi": True}
            for i in range(warmup + n):
                key = f"k{i % 50}"
                started = time.perf_counter()
                cache.set(key, value)
                got = cache.get(key)
                seconds = time.perf_counter() - started
                if got != value:
                    raise RuntimeError("diskcache floor: get() did not return what set() stored")
                if i >= warmup:
                    out.append(seconds)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return out


def celery_floor(redis_url: str, n: int, warmup: int = 3, log=print) -> dict[str, Any]:
    """``{"kind", "seconds": [...], "error"}``: ``n`` no-op Celery round trips, or Redis round trips if Celery fails."""
    url = floor_url(redis_url)
    try:
        return {"kind": "celery", "seconds": _celery_round_trips(url, n, warmup, log), "error": ""}
    except Exception as exc:  # the floor is a reference, not the subject: fall back and say why
        log(f"turnaround: the Celery floor failed ({exc!r}); timing Redis PING+SET+GET instead")
        return {"kind": "redis", "seconds": redis_round_trips(url, n, warmup), "error": repr(exc)[:300]}


def _celery_round_trips(url: str, n: int, warmup: int, log) -> list[float]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-floor-celery-"))
    env = dict(os.environ, BENCH_FLOOR_REDIS=url)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")]))
    cmd = [this_python(), "-m", "celery", "-A", "harness.floors:celery_app", "worker", "--pool=prefork", "-c1", "-Q", QUEUE]
    cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING", "-n", f"floor{os.getpid()}@%h"]
    worker = Proc("floor-worker", cmd, env, workdir / "worker.log")
    app = make_celery_app(url)
    noop = app.tasks[NOOP]
    try:
        _first_round_trip(noop, worker, timeout=60.0)
        for _ in range(max(0, warmup - 1)):
            noop.apply_async().get(timeout=30)
        out: list[float] = []
        for _ in range(n):
            started = time.perf_counter()
            noop.apply_async().get(timeout=30)
            out.append(time.perf_counter() - started)
        return out
    except Exception:
        log((workdir / "worker.log").read_text(errors="replace")[-2000:])
        raise
    finally:
        worker.stop()
        app.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _first_round_trip(noop: Any, worker: Proc, timeout: float) -> None:
    """Wait for the worker to run one task (it takes a second or two to start)."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    result = noop.apply_async()
    deadline = time.monotonic() + timeout
    while True:
        try:
            result.get(timeout=1)
            return
        except CeleryTimeout:
            if not worker.alive():
                raise RuntimeError("the floor's Celery worker exited") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the floor's Celery worker ran nothing in {timeout:g} s") from None


def redis_round_trips(url: str, n: int, warmup: int = 3) -> list[float]:
    """Seconds of ``n`` PING + SET + GET round trips (three requests) on one connection."""
    import redis

    client = redis.Redis.from_url(url)
    out: list[float] = []
    try:
        for i in range(warmup + n):
            started = time.perf_counter()
            client.ping()
            client.set("bench-floor", b"x" * 64, ex=600)
            client.get("bench-floor")
            if i >= warmup:
                out.append(time.perf_counter() - started)
    finally:
        client.close()
    return out
