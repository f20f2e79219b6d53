"""Fixtures for the Celery backend tests: our own Redis server, real Celery
worker processes, and the test apps served over real HTTP."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from harness import APPS, LiveServer, RedisServer, Worker, start_redis, start_worker

sys.path.insert(0, str(APPS))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    saved = {k: os.environ.get(k) for k in ("BGCB_CELERY_RESULT_URL", "BGCB_CELERY_BROKER_URL", "CEL_REDIS_URL")}
    os.environ["BGCB_CELERY_RESULT_URL"] = server.url()
    os.environ["BGCB_CELERY_BROKER_URL"] = server.url()
    os.environ["CEL_REDIS_URL"] = server.url()
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.close()


@pytest.fixture(scope="session")
def redis_client(redis_server):
    import redis

    return redis.Redis.from_url(redis_server.url(), decode_responses=True)


@pytest.fixture(scope="session")
def worker(redis_server) -> Iterator[Worker]:
    """Two prefork pool processes, started the documented Celery way."""
    proc = start_worker("cel_app", {}, celery_app="cel_app:celery_app")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def cel_app(redis_server, worker):
    os.environ["CEL_WEB_ONLY"] = "1"
    import cel_app

    return cel_app


@pytest.fixture(scope="session")
def cel_server(cel_app) -> Iterator[LiveServer]:
    server = LiveServer(cel_app.app)
    yield server
    server.stop()


@pytest.fixture
def client(cel_server):
    from bgcb_testing import DashClient

    return DashClient.http(cel_server.url).load()


@pytest.fixture(scope="session")
def pages_worker(redis_server) -> Iterator[Worker]:
    proc = start_worker("pages_app", {}, concurrency=1)
    yield proc
    proc.stop()
