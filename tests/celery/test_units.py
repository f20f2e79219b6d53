"""Pure logic of bgcb-celery: key names, URLs in messages, option checks, worker arguments.
No services needed (the Redis client connects lazily)."""

from __future__ import annotations

import pytest

from bgcb.defaults import LIFECYCLE_OPTIONS
from bgcb.errors import ConfigurationError
from bgcb.provider import load
from bgcb_celery import TASK_NAME, CeleryBackend, celery_app_of
from bgcb_celery.config import redact, worker_argv
from bgcb_celery.layout import Keys, Record, alive_from


def test_key_layout() -> None:
    keys = Keys("app1")
    assert keys.rec("J") == "app1:rec:J"
    assert keys.payload("J") == "app1:payload:J"
    assert keys.upd("J") == "app1:upd:J"
    assert keys.worker("h:1") == "app1:worker:h:1"
    assert keys.cache("k") == "app1:cache:k"
    assert keys.secret == "app1:secret"


def test_a_record_round_trips_and_names_its_worker() -> None:
    rec = Record("running", '{"worker":"h:7","note":"a\\u001fb"}', "0", "12", "1795000000000")
    assert Record.decode(rec.encode()) == rec and rec.worker == "h:7"
    assert Record.decode("no separators") is None
    assert Record("queued", "{}").worker is None and Record("running", "not json").worker is None


def test_alive_from_a_worker_heartbeat() -> None:
    claimed = Record("running", "{}", beat="5")
    assert alive_from("J", claimed, "6 A J") is True, "listed"
    assert alive_from("J", claimed, "5 A") is True, "no beat since the claim yet"
    assert alive_from("J", claimed, "6 A") is False, "a later beat leaves it out: the process no longer runs it"
    assert alive_from("J", Record("running", "{}"), "6") is None, "a claim that recorded no count: cannot tell"


def test_the_broker_list_is_read_only_on_the_stores_redis() -> None:
    backend = load("celery", fresh=True, broker_url="redis://localhost:6379/0", result_url="redis://127.0.0.1/0")
    other = load("celery", fresh=True, broker_url="redis://127.0.0.1:6379/1", result_url="redis://127.0.0.1:6379/0")
    try:
        assert backend.plugin.config.broker_list == "bgcb"
        assert other.plugin.config.broker_list is None
    finally:
        backend.close()
        other.close()


def test_redact_hides_passwords() -> None:
    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("amqp://guest:guest@127.0.0.1:5672//") == "amqp://guest:***@127.0.0.1:5672//"
    assert redact("redis://host/0") == "redis://host/0"


def test_lifecycle_options_are_the_cores() -> None:
    assert not set(CeleryBackend().bgcb_options()) & set(LIFECYCLE_OPTIONS)
    backend = load("celery", fresh=True, result_ttl=10.0, cancel_grace=2.0)
    try:
        assert backend.settings["result_ttl"] == 10.0 and backend.settings["cancel_grace"] == 2.0
        assert "result_ttl" not in backend.options
    finally:
        backend.close()


def test_options_are_checked_with_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="heartbeat_ttl"):
        load("celery", fresh=True, heartbeat=2.0, heartbeat_ttl=1.0)
    with pytest.raises(ConfigurationError, match="outage_grace"):
        load("celery", fresh=True, outage_grace=0)
    with pytest.raises(ConfigurationError, match="module:attribute"):
        load("celery", fresh=True, celery_app="no_colon_here")
    with pytest.raises(ConfigurationError, match="not a Redis URL"):
        load("celery", fresh=True, broker_url="amqp://guest:guest@localhost//", result_url="amqp://x@y//")
    with pytest.raises(ConfigurationError, match="unknown option"):
        load("celery", fresh=True, brokr_url="redis://x")


def test_worker_arguments_from_options() -> None:
    opts = {**CeleryBackend().bgcb_options(), "concurrency": 3, "worker_args": "-n w1@%h --without-gossip"}
    argv = worker_argv(opts, "jobs")
    assert argv[:5] == ["worker", "--pool=prefork", "--loglevel=INFO", "-Q", "jobs"]
    assert "--concurrency=3" in argv
    assert argv[-3:] == ["-n", "w1@%h", "--without-gossip"]


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
