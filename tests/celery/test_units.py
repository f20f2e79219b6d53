"""Pure logic of bgcb-celery: record format, URLs in messages, option checks.
No services needed (the Redis client connects lazily)."""

from __future__ import annotations

import pytest

from bgcb.errors import ConfigurationError
from bgcb.jobs import State
from bgcb.provider import load
from bgcb_celery import TASK_NAME, celery_app_of
from bgcb_celery.backend import redact
from bgcb_celery.store import Record


def test_record_round_trip_and_header() -> None:
    record = Record(State.RUNNING, 1.5, 2.25, 10.0, None, 86400, {"worker": "h:1", "note": "a|b"})
    raw = record.encode()
    assert raw.startswith("v1|running|1.5|2.25|10.0||86400.0|")
    assert Record.decode(raw) == record


def test_record_outcome_for_lost_and_timed_out_jobs() -> None:
    lost = Record(State.FAILED, body={"reason": "lost", "heartbeat_ttl": 3.0}).outcome
    assert lost.kind == "error" and "stopped without finishing" in lost.error["msg"]
    late = Record(State.FAILED, timeout=2.0, body={"reason": "timeout"}).outcome
    assert "timed out" in late.error["msg"]


def test_decode_refuses_foreign_data() -> None:
    with pytest.raises(ValueError, match="not a bgcb-celery"):
        Record.decode('{"pickle": "no"}')


def test_redact_hides_passwords() -> None:
    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("amqp://guest:guest@127.0.0.1:5672//") == "amqp://guest:***@127.0.0.1:5672//"
    assert redact("redis://host/0") == "redis://host/0"


def test_options_are_checked_with_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="heartbeat_ttl"):
        load("celery", fresh=True, heartbeat=2.0, heartbeat_ttl=1.0)
    with pytest.raises(ConfigurationError, match="module:attribute"):
        load("celery", fresh=True, celery_app="no_colon_here")
    with pytest.raises(ConfigurationError, match="not a Redis URL"):
        load("celery", fresh=True, broker_url="amqp://guest:guest@localhost//", result_url="amqp://x@y//")
    with pytest.raises(ConfigurationError, match="unknown option"):
        load("celery", fresh=True, brokr_url="redis://x")


def test_own_celery_app_gets_the_generic_task() -> None:
    from celery import Celery

    import bgcb

    mine = Celery("mine", broker="redis://127.0.0.1:1/0", set_as_current=False)
    manager = bgcb.manager("celery", celery_app=mine, result_url="redis://127.0.0.1:1/0", prefix="units")
    try:
        assert celery_app_of(manager) is mine
        assert TASK_NAME in mine.tasks
        assert manager.backend.plugin.queue == mine.conf.task_default_queue
    finally:
        manager.close()


def test_celery_app_of_refuses_other_managers() -> None:
    with pytest.raises(TypeError, match="celery"):
        celery_app_of(object())
