"""The store on a real diskcache directory, without a pool: JSON only, the FIFO
queue and the running list, compare-and-set, expiry, the shared secret, the
supervisor's attribution of a dead worker's job, roles, fork safety, and
option errors."""

from __future__ import annotations

import os
import time

import diskcache
import psutil
import pytest

from bgcb import ConfigurationError, provider
from bgcb.jobs import Job, State, new_job_id
from bgcb.provider import Backend
from bgcb.record import Data
from bgcb_diskcache import DiskcacheBackend
from bgcb_diskcache.store import Store


def _backend(tmp_path, **options) -> Backend:
    return provider.load("diskcache", fresh=True, directory=str(tmp_path / "store"), autostart=False, **options)


def _job(**fields) -> Job:
    return Job(callback="k", args=[1], **fields)


def _enqueue(store: Store, ttl: float = 60.0) -> str:
    job_id = new_job_id()
    store.enqueue(job_id, '{"callback":"k"}', "{}", None, ttl)
    return job_id


class _Planted:
    """Unpickling it creates ``marker``: proof that a planted pickle ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_values_are_never_unpickled_and_read_as_absent(tmp_path, caplog) -> None:
    store = Store(str(tmp_path / "store"))
    good = _enqueue(store)
    bad, marker = new_job_id(), str(tmp_path / "unpickled")
    # Someone with write access plants pickles and junk, through plain diskcache.
    planted = diskcache.Cache(str(tmp_path / "store"))
    for key in ("r:" + bad, "running", "pool", "secret", "c:key", "s:" + good, "queue"):
        planted.set(key, _Planted(marker))
    assert store.read(bad, drain=True) is None, "an unreadable record reads as an unknown job"
    assert store.seen(good) is None, "an unreadable poll time reads as never polled"
    assert store.queue() == [good], "an unreadable queue is rebuilt from the queued records"
    planted.set("queue", b"\xff\xfe not json")
    assert store.queue() == [good], "so is one that is not JSON"
    assert store.running() == {} and store.pool() is None and store.cache_get("key") is None
    assert len(store.shared_secret(lambda: b"s" * 32)) == 32, "an unreadable secret is replaced"
    assert store.claim(1) == good and store.read(good, drain=False).state == "queued"
    assert not os.path.exists(marker), "a planted pickle was unpickled"
    assert "ignoring" in caplog.text
    with pytest.raises(TypeError, match="JSON text only"):
        store.cache.set("x", {"not": "text"})


def test_fifo_positions_and_a_claim_lists_its_holder_at_once(tmp_path) -> None:
    backend = _backend(tmp_path)
    store: Store = backend.plugin.store
    ids = [backend.submit(_job()) for _ in range(3)]
    assert [backend.status(i).position for i in ids] == [0, 1, 2]
    assert store.claim(pid=7) == ids[0]
    # Listed under its worker before the worker does anything else; the state is the core's to change.
    assert store.running()[ids[0]]["pid"] == 7
    assert backend.status(ids[0]).state is State.QUEUED
    assert [backend.status(i).position for i in ids[1:]] == [0, 1]
    assert backend.jobs() is not None and [j for j, _ in backend.jobs()] == ids


def test_the_claimed_job_is_loaded_without_a_second_read(tmp_path, monkeypatch) -> None:
    backend = _backend(tmp_path)
    store: Store = backend.plugin.store
    first, second = backend.submit(_job()), backend.submit(Job(callback="k", args=[2]))
    expected = store.load(first)
    assert store.claim(pid=7) == first
    reads: list[str] = []
    real = store._record
    monkeypatch.setattr(store, "_record", lambda job_id: reads.append(job_id) or real(job_id))
    assert store.load(first) == expected and reads == [], "the claim's read serves the core's load"
    assert store.load(first) == expected and reads == [first], "once: a later load reads the store"
    assert '"args":[2]' in str(store.load(second)) and reads[-1] == second


def test_a_cancelled_queued_job_leaves_the_queue_and_is_never_claimed(tmp_path) -> None:
    backend = _backend(tmp_path)
    store: Store = backend.plugin.store
    ids = [backend.submit(_job()) for _ in range(3)]
    assert backend.cancel(ids[1]) and not backend.cancel(ids[1])
    assert backend.status(ids[2]).position == 1
    assert store.claim(pid=7) == ids[0]
    assert store.claim(pid=7) == ids[2], "a cancelled queued job is never claimed"
    assert store.claim(pid=7) is None
    assert backend.status(ids[1]).state is State.CANCELLED


def test_updates_are_kept_in_order_and_drained_once(tmp_path) -> None:
    store = Store(str(tmp_path))
    job_id = _enqueue(store)
    for text in ('{"n":1}', '{"n":1}', '{"n":2}'):
        store.append(job_id, text, ttl=60)
    read = store.read(job_id, drain=False)
    assert read is not None and read.updates == []
    drained = store.read(job_id, drain=True)
    assert drained is not None and drained.updates == ['{"n":1}', '{"n":1}', '{"n":2}'], "never dropped or merged"
    again = store.read(job_id, drain=True)
    assert again is not None and again.updates == []


def test_cas_writes_only_from_the_expected_states_with_the_ttl_given(tmp_path) -> None:
    store = Store(str(tmp_path))
    job_id = _enqueue(store)
    assert not store.cas(job_id, ["running"], "succeeded", "x", 60)
    assert store.cas(job_id, ["queued"], "running", "d1", 60)
    assert store.queue() == [], "a job that left queued leaves the queue"
    read = store.read(job_id, drain=False)
    assert read is not None and (read.state, read.data) == ("running", "d1")
    assert store.cas(job_id, ["queued", "running"], "succeeded", "d2", 0.5)
    assert not store.cas(job_id, ["queued", "running"], "failed", "d3", 60), "a terminal state is final"
    store.append(job_id, '{"late":1}', ttl=60)  # keeps the record's expiry
    assert store.load(job_id) == '{"callback":"k"}'
    time.sleep(0.7)
    assert store.read(job_id, drain=True) is None and store.load(job_id) is None
    assert store.cleanup() >= 1
    assert store.cache.get("r:" + job_id) is None
    assert not store.cas(job_id, ["succeeded"], "failed", "x", 60), "an expired record is unknown"


def test_cache_entries_expire_on_their_own_clock(tmp_path) -> None:
    store = Store(str(tmp_path))
    store.cache_put("ck", '{"kind":"value","value":42}', 0.5)
    store.cache_put("keep", '{"kind":"no_update"}', 60)
    store.cache_put("ck", '{"kind":"value","value":42}', 0.5)  # replaced, on a fresh clock
    assert store.cache_get("ck") == '{"kind":"value","value":42}'
    time.sleep(0.7)
    assert store.cache_get("ck") is None
    assert store.cache_get("keep") == '{"kind":"no_update"}'


def test_a_dead_workers_job_is_attributed_and_the_core_ends_it(tmp_path) -> None:
    backend = _backend(tmp_path)
    store: Store = backend.plugin.store
    supervisor = backend.plugin.supervisor()
    popped = backend.submit(_job())
    store.claim(pid=4242)  # killed right after the pop: the record is still queued
    assert supervisor.settle(4242, "its worker process (pid 4242) died: killed by SIGKILL (9)") == [popped]
    assert backend.status(popped).state is State.LOST
    outcome = backend.result(popped)
    assert outcome is not None and "SIGKILL" in (outcome.error or {})["msg"]
    assert store.running() == {}
    # Past its deadline when its worker was stopped: the core records a timeout, not a loss.
    overdue = backend.submit(_job(timeout=0.01))
    store.claim(pid=4343)
    started = Data(time.time() - 1, time.time() - 1, None, time.time() - 0.5, 0.01, "host:4343")
    assert store.cas(overdue, ["queued"], "running", started.encode(), 60)
    assert supervisor.settle(4343, "its worker process (pid 4343) was stopped") == [overdue]
    assert backend.status(overdue).state is State.TIMED_OUT
    # A job that already ended stays as it ended.
    ended = backend.submit(_job())
    store.claim(pid=4444)
    assert backend.cancel(ended)
    supervisor.settle(4444, "died")
    assert backend.status(ended).state is State.CANCELLED and store.running() == {}


def test_stop_marks_the_holder_and_kills_only_while_it_holds_the_job(tmp_path) -> None:
    backend = _backend(tmp_path)
    store: Store = backend.plugin.store
    job_id = backend.submit(_job())
    store.claim(pid=51)
    before = time.time()
    backend.plugin.bgcb_stop(job_id=job_id, after=0.5)
    stop_at = store.running()[job_id]["stop_at"]
    assert before + 0.5 <= stop_at <= time.time() + 0.5
    backend.plugin.bgcb_stop(job_id=new_job_id(), after=0)  # not held by anyone: nothing to do
    killed: list[int] = []
    assert not store.kill_holder(job_id, 52, killed.append)
    assert store.kill_holder(job_id, 51, killed.append) and killed == [51]
    store.unlist(job_id, 51)
    assert not store.kill_holder(job_id, 51, killed.append) and killed == [51]


def test_forged_and_unknown_ids(tmp_path) -> None:
    backend = _backend(tmp_path)
    for forged in ("123", "../../etc/passwd", "A" * 24, new_job_id()):
        assert backend.status(forged).state is State.UNKNOWN
        assert backend.cancel(forged) is False


def test_shared_secret_first_writer_wins(tmp_path) -> None:
    a, b = Store(str(tmp_path)), Store(str(tmp_path))
    assert a.shared_secret(lambda: b"first") == b"first"
    assert b.shared_secret(lambda: b"second") == b"first"


def _pools_of_this_process() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children():
        try:
            if "bgcb_diskcache pool" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


def test_only_the_web_role_autostarts_a_pool(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("BGCB_DISKCACHE_IN_POOL", raising=False)
    options = {"directory": str(tmp_path / "store"), "app": "some_app_module", "autostart": True, "workers": 1}
    for role in ("worker", "cli"):
        backend = Backend.from_plugin("diskcache", DiskcacheBackend(), options, role=role)
        assert _pools_of_this_process() == [], f"role {role!r} must never start a pool"
        backend.close()
    web = Backend.from_plugin("diskcache", DiskcacheBackend(), options, role="web")
    try:
        assert _pools_of_this_process() == [], "no pool before the store's first use (a debug reloader never uses it)"
        web.status(new_job_id())
        assert len(_pools_of_this_process()) == 1
    finally:
        web.close()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in _pools_of_this_process())


def test_a_forked_worker_opens_its_own_connection(tmp_path) -> None:
    backend = _backend(tmp_path)
    plugin = backend.plugin
    inherited = plugin.store
    job_id = backend.submit(_job())
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            own = plugin.reopen_store()
            fresh = own is plugin.store and own.cache is not inherited.cache
            code = 0 if fresh and backend.status(job_id).state is State.QUEUED and backend.cancel(job_id) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert plugin.store is inherited, "the parent keeps its own connection"
    assert backend.status(job_id).state is State.CANCELLED, "the child's write went to the shared store"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "at least 1 worker"),
        ({"dead_after": 0.0}, "positive number of seconds"),
        ({"result_ttl": -1.0}, "positive number of seconds"),
    ],
)
def test_bad_options_say_what_to_do(tmp_path, options, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        provider.load("diskcache", fresh=True, directory=str(tmp_path), autostart=False, **options)


def test_unknown_option_lists_the_known_ones(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="Known options: abandon_after, app, autostart, cancel_grace"):
        provider.load("diskcache", fresh=True, directory=str(tmp_path), worker=2)


def test_workers_that_die_young_are_restarted_ever_more_slowly(tmp_path) -> None:
    """A worker that cannot start (it dies within a second) must not be restarted at every tick."""
    from bgcb_diskcache import defaults

    backend = provider.load("diskcache", fresh=True, directory=str(tmp_path / "store"), autostart=False, workers=1)
    try:
        supervisor = backend.plugin.supervisor()
        started: list[float] = []

        class DiesAtOnce:  # the pure logic of restarts: no process is made
            portable, pids = True, {}

            def start(self) -> None:
                started.append(time.time())
                self.pids[len(started)] = time.time()

            def reap(self) -> list[tuple[int, str, float]]:
                ended = [(pid, "exited with code 1", 0.01) for pid in self.pids]
                self.pids.clear()
                return ended

        supervisor.children = DiesAtOnce()
        for _ in range(6):
            supervisor._tick()
            supervisor._reap()
        assert len(started) == 1 and supervisor.backoff == defaults.RESTART_BACKOFF
        supervisor.start_after = 0.0  # the delay passed
        supervisor._tick()
        supervisor._reap()
        assert len(started) == 2 and supervisor.backoff == 2 * defaults.RESTART_BACKOFF
    finally:
        backend.close()
