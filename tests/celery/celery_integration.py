"""A pytest plugin that runs the shared integration suite on bgcb-celery.

    BGCB_BACKEND=celery PYTHONPATH=tests/celery pytest -p celery_integration tests/integration

With ``BGCB_BACKEND=celery`` it starts, before any test imports the app, a Redis
server of its own on a free loopback port and a Celery worker
(``bgcb worker feature_app``, prefork, 2 processes), points
``BGCB_CELERY_RESULT_URL``/``BGCB_CELERY_BROKER_URL`` at that Redis, and stops
both at the end. ``BGCB_TEST_BROKER=rabbitmq`` uses the local RabbitMQ as the
broker instead (Redis still holds job state). Otherwise it does nothing.
"""

from __future__ import annotations

import os
import uuid

import pytest
from harness import RedisServer, Worker, delete_amqp_queue, rabbitmq_url, start_redis, start_worker

_started: dict[str, object] = {}


def start_services() -> tuple[RedisServer, Worker]:
    """Redis + a worker for ``feature_app``; sets the environment the app reads."""
    server = start_redis()
    os.environ["BGCB_CELERY_RESULT_URL"] = server.url()
    broker = server.url()
    if os.environ.get("BGCB_TEST_BROKER", "redis") == "rabbitmq":
        amqp = rabbitmq_url()
        if amqp is None:
            server.close()
            raise pytest.UsageError("BGCB_TEST_BROKER=rabbitmq but RabbitMQ is not reachable on 127.0.0.1:5672")
        broker = amqp
        os.environ["BGCB_CELERY_QUEUE"] = f"bgcb-it-{uuid.uuid4().hex[:8]}"  # a fresh queue: no leftovers
    os.environ["BGCB_CELERY_BROKER_URL"] = broker
    try:
        worker = start_worker("feature_app", {})
    except Exception:
        server.close()
        raise
    return server, worker


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("BGCB_BACKEND") != "celery" or "server" in _started:
        return
    _started["server"], _started["worker"] = start_services()


def pytest_unconfigure(config: pytest.Config) -> None:
    worker = _started.pop("worker", None)
    server = _started.pop("server", None)
    if worker is not None:
        worker.stop()
    if server is not None:
        server.close()
    broker = os.environ.get("BGCB_CELERY_BROKER_URL", "")
    if broker.startswith("amqp") and os.environ.get("BGCB_CELERY_QUEUE"):
        delete_amqp_queue(broker, os.environ["BGCB_CELERY_QUEUE"])
