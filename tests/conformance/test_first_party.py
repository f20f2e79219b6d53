"""The conformance kit against bgcb's process-based backends, when installed.

``diskcache`` runs as is (its pool imports the kit's callbacks through its
``app`` option). ``celery`` needs Redis at ``$REDIS_URL`` (default
``redis://127.0.0.1:6379/0``); the kit starts one ``bgcb worker`` for it, on a
queue and key prefix of its own so that other users of that Redis are not
disturbed. Both opt in to the killed-worker check.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

import pytest

from bgcb.jobs import new_job_id
from bgcb_testing.conformance import BackendConformance, KitConfig, kill_pid

# The private Redis that tests/conftest.py starts with BGCB_BACKEND=celery, else $REDIS_URL.
REDIS_URL = os.environ.get("BGCB_CELERY_RESULT_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


@pytest.mark.skipif(importlib.util.find_spec("bgcb_diskcache") is None, reason="bgcb-diskcache is not installed")
class TestDiskcacheConformance(BackendConformance):
    backend = "diskcache"
    options = {"workers": 2}
    app_option = "app"
    kill_worker = kill_pid

    def conformance_config(self, pytestconfig: pytest.Config) -> KitConfig:
        config = super().conformance_config(pytestconfig)
        config.options["directory"] = tempfile.mkdtemp(prefix="bgcb-kit-diskcache-")
        return config


@pytest.mark.skipif(importlib.util.find_spec("bgcb_celery") is None, reason="bgcb-celery is not installed")
@pytest.mark.skipif(not _redis_up(), reason=f"no Redis at {REDIS_URL} (set REDIS_URL) for bgcb-celery")
class TestCeleryConformance(BackendConformance):
    backend = "celery"
    options = {"concurrency": 2, "loglevel": "WARNING", "broker_url": REDIS_URL, "result_url": REDIS_URL}
    spawn_workers = 1
    kill_worker = kill_pid

    def conformance_config(self, pytestconfig: pytest.Config) -> KitConfig:
        config = super().conformance_config(pytestconfig)
        private = "bgcb-kit-" + new_job_id()[:8]
        config.options.update(queue=private, prefix=private)
        return config
