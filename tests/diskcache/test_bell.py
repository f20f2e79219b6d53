"""Bells on real FIFOs: a write in another process wakes the request waiting on that job, only that job, and a
bell whose process died is cleared away by the next ring."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from bgcb.jobs import new_job_id
from bgcb_diskcache.bell import Bell, Ringer, bells_path

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="bells are FIFOs, which this system lacks")

RING = "import sys; from bgcb_diskcache.bell import Ringer; Ringer(sys.argv[1]).ring(sys.argv[2])"


def _ring_from_another_process(directory: str, job_id: str) -> None:
    subprocess.run([sys.executable, "-c", RING, directory, job_id], check=True, timeout=60)


def test_a_ring_from_another_process_wakes_the_waiting_request(tmp_path) -> None:
    bell, job_id = Bell(str(tmp_path)), new_job_id()
    assert bell.wait(job_id, 5.0) is True, "the first wait on a job returns at once (the caller reads again)"
    woke: list[bool | None] = []
    waiter = threading.Thread(target=lambda: woke.append(bell.wait(job_id, 30.0)))
    began = time.monotonic()
    waiter.start()
    _ring_from_another_process(str(tmp_path), job_id)
    waiter.join(40)
    seconds = time.monotonic() - began
    print(f"woken {seconds:.3f} s after the wait began (a subprocess started and rang)")
    assert woke == [True], f"the wait returned {woke} instead of being woken by the ring"
    assert seconds < 30, "the wait ran to its timeout: the ring was not heard"


def test_a_ring_for_another_job_does_not_wake_it(tmp_path) -> None:
    bell, mine, other = Bell(str(tmp_path)), new_job_id(), new_job_id()
    bell.wait(mine, 0.0)
    _ring_from_another_process(str(tmp_path), other)
    assert bell.wait(mine, 0.3) is False, "a ring for another job woke this one"
    Ringer(str(tmp_path)).ring(mine)
    assert bell.wait(mine, 30.0) is True


def test_a_change_before_the_wait_is_not_missed(tmp_path) -> None:
    """The core reads, the job changes, then the core waits: the wait returns at once."""
    bell, job_id = Bell(str(tmp_path)), new_job_id()
    bell.wait(job_id, 0.0)
    Ringer(str(tmp_path)).ring(job_id)
    time.sleep(0.2)  # the listening thread has taken the line
    began = time.monotonic()
    assert bell.wait(job_id, 30.0) is True
    assert time.monotonic() - began < 30


def test_a_dead_process_bell_is_removed_by_the_next_ring(tmp_path) -> None:
    directory = bells_path(str(tmp_path))
    os.makedirs(directory)
    stale = os.path.join(directory, "gone-host-99999")
    os.mkfifo(stale)  # a bell nobody reads: its web process died
    Ringer(str(tmp_path)).ring(new_job_id())
    assert not os.path.exists(stale), "a ring left a bell with no reader in place"


def test_writers_ring_through_the_backend_hooks(tmp_path) -> None:
    """An update or an end written through the hooks wakes the held request; a start, no news to it, does not."""
    from bgcb import provider
    from bgcb.jobs import Job, State
    from bgcb.record import Data

    backend = provider.load("diskcache", fresh=True, directory=str(tmp_path / "store"), autostart=False, portable="off")
    try:
        job_id = backend.submit(Job(callback="k", args=[1]))
        assert backend.wait(job_id, 0.0) is True  # starts listening
        running = Data(submitted_at=time.time(), started_at=time.time()).encode()
        assert backend.hook.bgcb_cas(job_id=job_id, expect=["queued"], state="running", data=running, ttl=60)
        assert backend.wait(job_id, 0.3) is False
        assert backend.hook.bgcb_read(job_id=job_id, drain=False).state == State.RUNNING.value

        def later(write) -> float:
            backend.wait(job_id, 0.0)  # listening (afresh after a wake-up, which forgot the job)
            threading.Timer(0.2, write).start()
            began = time.monotonic()
            assert backend.wait(job_id, 30.0) is True
            return time.monotonic() - began

        assert 0.15 < later(lambda: backend.hook.bgcb_append(job_id=job_id, update='{"progress": [1]}', ttl=60)) < 30
        ended = later(lambda: backend.hook.bgcb_cas(job_id=job_id, expect=["running"], state="succeeded", data=running, ttl=60))
        assert 0.15 < ended < 30
        assert backend.hook.bgcb_read(job_id=job_id, drain=False).state == State.SUCCEEDED.value
    finally:
        backend.close()
