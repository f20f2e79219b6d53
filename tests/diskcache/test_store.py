"""The store on a real diskcache directory, without workers: JSON only, expiry,
cleanup, the shared secret, forged ids, and option errors."""

from __future__ import annotations

import time

import diskcache
import pytest

from bgcb import ConfigurationError, provider
from bgcb.jobs import Job, Outcome, State, new_job_id
from bgcb_diskcache.store import Store


def _submit(store: Store, **job) -> str:
    job_id = new_job_id()
    store.submit(job_id, Job(callback="k", args=[1], **job))
    return job_id


def test_the_store_refuses_to_unpickle_what_it_finds(tmp_path) -> None:
    store = Store(str(tmp_path))
    # Someone with write access plants a pickle, through plain diskcache.
    diskcache.Cache(str(tmp_path)).set("sched", {"queue": ["x"], "running": {}})
    with pytest.raises(ValueError, match="refuses to unpickle"):
        store.has_queued()
    with pytest.raises(TypeError, match="JSON text only"):
        store.cache.set("x", {"not": "text"})


def test_finished_records_expire_and_are_cleaned_up(tmp_path) -> None:
    store = Store(str(tmp_path), result_ttl=0.5)
    job_id = _submit(store)
    claimed_id, job = store.claim(pid=123)
    assert claimed_id == job_id
    store.finish(job_id, job, Outcome.of_value("v"))
    assert store.poll(job_id).outcome == Outcome.of_value("v")
    assert store.running() == {}
    time.sleep(0.7)
    assert store.status(job_id).state is State.UNKNOWN
    assert store.cleanup() >= 1
    assert store.cache.get("r:" + job_id) is None


def test_cache_by_outcomes_expire_on_their_own_clock(tmp_path) -> None:
    store = Store(str(tmp_path))
    job_id = _submit(store, cache_key="ck", cache=True, cache_expire=0.5)
    _, job = store.claim(pid=1)
    store.finish(job_id, job, Outcome.of_value(42))
    assert store.cached("ck") == Outcome.of_value(42)
    time.sleep(0.7)
    assert store.cached("ck") is None


def test_positions_updates_and_cancel(tmp_path) -> None:
    store = Store(str(tmp_path))
    ids = [_submit(store) for _ in range(3)]
    assert [store.status(i).position for i in ids] == [0, 1, 2]
    assert store.cancel(ids[1]) and not store.cancel(ids[1])
    assert store.status(ids[2]).position == 1
    first, _ = store.claim(pid=7)
    assert first == ids[0]
    store.append(first, {"type": "progress", "value": [1]})
    store.append(first, {"type": "props", "id": "a", "props": {"children": 1}})
    assert len(store.poll(first).updates) == 2
    assert store.poll(first).updates == []  # delivered once
    second, _ = store.claim(pid=7)
    assert second == ids[2], "a cancelled queued job is never claimed"
    assert store.claim(pid=7) is None


def test_forged_and_unknown_ids(tmp_path) -> None:
    store = Store(str(tmp_path))
    for forged in ("123", "../../etc/passwd", "A" * 24):
        assert store.status(forged).state is State.UNKNOWN
        assert store.cancel(forged) is False


def test_shared_secret_first_writer_wins(tmp_path) -> None:
    a, b = Store(str(tmp_path)), Store(str(tmp_path))
    assert a.shared_secret(lambda: b"first") == b"first"
    assert b.shared_secret(lambda: b"second") == b"first"


def test_a_dead_worker_fails_its_job(tmp_path) -> None:
    store = Store(str(tmp_path))
    job_id = _submit(store)
    store.claim(pid=4242)
    ended = store.end_jobs_of(4242, Outcome.failure("died"))
    assert ended == [job_id]
    assert store.status(job_id).state is State.FAILED
    assert store.poll(job_id).outcome.error["msg"] == "died"


@pytest.mark.parametrize(
    ("options", "message"),
    [({"workers": 0}, "at least 1 worker"), ({"result_ttl": -1.0}, "positive number of seconds")],
)
def test_bad_options_say_what_to_do(tmp_path, options, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        provider.load("diskcache", fresh=True, directory=str(tmp_path), autostart=False, **options)


def test_unknown_option_lists_the_known_ones(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="Known options: app, autostart, cancel_grace"):
        provider.load("diskcache", fresh=True, directory=str(tmp_path), worker=2)
