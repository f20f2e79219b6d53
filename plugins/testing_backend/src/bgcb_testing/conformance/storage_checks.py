"""Checks of the storage hooks themselves: what bgcb_enqueue, bgcb_read, bgcb_load, bgcb_cas, bgcb_append and the
cache pair promise, on records the kit makes and holds (see :meth:`Kit.claim`), so that no worker interferes."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from bgcb.jobs import new_job_id
from bgcb.record import Stored, dumps

from .kit import Kit, first_difference, until
from .observing import HookSpy

ACTIVE = ["queued", "running"]


def stored(kit: Kit, job_id: str, drain: bool = False) -> Stored:
    """bgcb_read of a record that exists, checked for shape."""
    got = kit.read(job_id, drain)
    assert isinstance(got, Stored), (
        f"bgcb_read({job_id!r}, drain={drain}) returned {got!r} for a record the kit stored: it must return a "
        "bgcb.Stored (see hookspecs.BackendSpec.bgcb_read)."
    )
    shape = (
        isinstance(got.state, str)
        and isinstance(got.data, str)
        and isinstance(got.updates, list)
        and all(isinstance(u, str) for u in got.updates)
        and (got.position is None or (isinstance(got.position, int) and got.position >= 0))
        and got.alive in (None, True, False)
    )
    assert shape, (
        f"bgcb_read returned {got!r}: Stored(state: str, data: str, updates: list[str], position: int >= 0 | None, "
        "alive: bool | None), the texts exactly as written (see hookspecs.BackendSpec.bgcb_read)."
    )
    return got


class StorageChecks:
    """The storage hooks' semantics, checked by calling them directly."""

    def test_unknown_ids_have_no_record(self, kit: Kit) -> None:
        job_id = new_job_id()
        assert kit.read(job_id) is None and kit.read(job_id, drain=True) is None, (
            "bgcb_read of an id that was never enqueued must return None (see hookspecs.BackendSpec.bgcb_read)."
        )
        assert kit.backend.hook.bgcb_load(job_id=job_id) is None, (
            "bgcb_load of an unknown id must return None (see hookspecs.BackendSpec.bgcb_load)."
        )
        assert not kit.cas(job_id, ACTIVE, "cancelled", kit.ended()), (
            "bgcb_cas on an id with no record returned True: it writes only when the record's state is in expect, "
            "and an absent record has none (see hookspecs.BackendSpec.bgcb_cas)."
        )
        kit.append(job_id, dumps({"type": "progress", "value": [1]}))
        assert kit.read(job_id) is None, (
            "bgcb_cas or bgcb_append on an unknown id created a record: only bgcb_enqueue creates records "
            "(see hookspecs.BackendSpec.bgcb_enqueue)."
        )

    def test_texts_come_back_unchanged(self, kit: Kit) -> None:
        """bgcb_load returns the job text as given; bgcb_read returns the data text as last written."""
        job, data = kit.job_text(), kit.data_text(worker="kit ✓ \u2028")
        job_id = kit.enqueue(job, data)
        loaded = kit.backend.hook.bgcb_load(job_id=job_id)
        assert loaded == job, (
            f"bgcb_load returned {loaded!r} for the job text {job!r}: the job is stored as the text given and "
            "returned unchanged, byte for byte (see hookspecs.BackendSpec.bgcb_load)."
        )
        first = stored(kit, job_id)
        assert first.state != "queued" or first.data == data, (
            f"right after bgcb_enqueue the record reads {first!r}: it is stored in state 'queued' with the data text "
            f"{data!r} unchanged (see hookspecs.BackendSpec.bgcb_enqueue)."
        )
        running = kit.data_text(started_at=time.time(), worker="kit: ünïcode, spaced")
        claimed = kit.claim(running)
        got = stored(kit, claimed)
        assert (got.state, got.data) == ("running", running), (
            f"after bgcb_cas(state='running', data=...) bgcb_read returned state {got.state!r} and data {got.data!r}; "
            f"expected 'running' and {running!r} unchanged (see hookspecs.BackendSpec.bgcb_cas, bgcb_read)."
        )

    def test_cas_is_compare_and_set(self, kit: Kit) -> None:
        """bgcb_cas writes only from a state in expect, and a terminal state is final."""
        before = kit.data_text(started_at=time.time(), worker="kit")
        job_id = kit.claim(before)
        assert not kit.cas(job_id, ["queued"], "succeeded", kit.ended()), (
            "bgcb_cas(expect=['queued']) returned True on a running record: it writes only when the current state "
            "is in expect (see hookspecs.BackendSpec.bgcb_cas)."
        )
        got = stored(kit, job_id)
        assert (got.state, got.data) == ("running", before), (
            f"a refused bgcb_cas changed the record to {got.state!r} / {got.data!r}: a compare-and-set that fails "
            "writes nothing (see hookspecs.BackendSpec.bgcb_cas)."
        )
        done = kit.ended()
        assert kit.cas(job_id, ["running"], "succeeded", done), (
            "bgcb_cas(expect=['running'], state='succeeded') returned False on a running record "
            "(see hookspecs.BackendSpec.bgcb_cas)."
        )
        for expect in (["queued"], ["running"], ACTIVE):
            assert not kit.cas(job_id, expect, "cancelled", kit.ended()), (
                f"bgcb_cas(expect={expect}) moved a 'succeeded' record: a terminal state is final, every later "
                "compare-and-set from an active state fails (see hookspecs.BackendSpec.bgcb_cas)."
            )
        got = stored(kit, job_id)
        assert (got.state, got.data) == ("succeeded", done), (
            f"a terminal record changed to {got.state!r} / {got.data!r}: a terminal state is final "
            "(see hookspecs.BackendSpec.bgcb_cas)."
        )

    def test_cas_has_one_winner(self, kit: Kit) -> None:
        """Many processes may race the same transition (a cancel and a claim): exactly one wins."""
        job_id = kit.claim()
        texts = [kit.ended() for _ in range(8)]
        wins: list[str] = []
        barrier = threading.Barrier(len(texts))

        def race(text: str) -> None:
            barrier.wait()
            if kit.cas(job_id, ["running"], "cancelled", text):
                wins.append(text)

        threads = [threading.Thread(target=race, args=(t,)) for t in texts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1, (
            f"{len(wins)} of 8 concurrent bgcb_cas(expect=['running']) calls on one record returned True: the "
            "compare-and-set is atomic, exactly one wins (see hookspecs.BackendSpec.bgcb_cas)."
        )
        assert stored(kit, job_id).data == wins[0], (
            "the record must hold the data of the compare-and-set that won (see hookspecs.BackendSpec.bgcb_cas)"
        )

    def test_drain_delivers_each_update_once_in_order(self, kit: Kit) -> None:
        """bgcb_append keeps every update; bgcb_read(drain=True) returns them oldest first and removes them."""
        job_id = kit.claim()
        same = dumps({"type": "progress", "value": [1]})
        updates = [dumps({"type": "progress", "value": [i, "ü"]}) for i in range(10)] + [same, same]
        updates += [dumps({"type": "props", "id": "kit-a", "props": {"children": f"a{i}"}}) for i in range(5)]
        for update in updates:
            kit.append(job_id, update)
        kept = stored(kit, job_id, drain=False)
        got = stored(kit, job_id, drain=True)
        assert got.updates == updates, (
            f"bgcb_read(drain=True) returned {len(got.updates)} updates for {len(updates)} appended "
            f"(first difference at {first_difference(got.updates, updates)}; drain=False had returned "
            f"{len(kept.updates)}): every update is kept, none merged or dropped, even two equal ones, and returned "
            "oldest first; a read without drain removes none (see hookspecs.BackendSpec.bgcb_append, bgcb_read)."
        )
        again = stored(kit, job_id, drain=True)
        assert again.updates == [], (
            f"a second drain returned {len(again.updates)} updates again: drained updates are removed, so each is "
            "delivered once (see hookspecs.BackendSpec.bgcb_read)."
        )
        later = [dumps({"type": "progress", "value": ["later", i]}) for i in range(3)]
        for update in later:
            kit.append(job_id, update)
        assert stored(kit, job_id, drain=True).updates == later, (
            "updates appended after a drain must come with the next drain, and only they (see hookspecs.BackendSpec.bgcb_read)."
        )
        many = [dumps({"type": "progress", "value": [i]}) for i in range(200)]
        collected: list[str] = []

        def poll() -> None:
            for _ in range(400):
                collected.extend(stored(kit, job_id, drain=True).updates)

        pollers = [threading.Thread(target=poll) for _ in range(3)]
        for thread in pollers:
            thread.start()
        for update in many:
            kit.append(job_id, update)
        for thread in pollers:
            thread.join()
        collected.extend(stored(kit, job_id, drain=True).updates)
        twice = [u for u, n in Counter(collected).items() if n > 1]
        assert not twice and sorted(collected) == sorted(many), (
            f"three concurrent drains delivered {len(collected)} updates for {len(many)} appended ({len(twice)} more "
            "than once): a drain takes and removes updates atomically (see hookspecs.BackendSpec.bgcb_read)."
        )

    def test_queue_positions_and_removal(self, kit: Kit) -> None:
        """Queued records keep their place (when the backend knows it); a compare-and-set out of queued leaves the queue."""
        if not kit.workers:
            pytest.skip("the backend declares no concurrency bound (KitConfig.workers): a queue cannot be held")
        blockers = kit.fill(2.0)
        markers = [kit.tmp_path / f"queued-{i}" for i in range(3)]
        with HookSpy(kit.backend) as spy:
            ids = [kit.enqueue(kit.job_text("touch", str(m))) for m in markers]
            reads = [(stored(kit, j), stored(kit, j, drain=True)) for j in ids]
            assert all(a.state == b.state == "queued" for a, b in reads), (
                f"with all {kit.workers} workers busy, records just enqueued read {[a.state for a, _ in reads]}: "
                "they must be 'queued' (see hookspecs.BackendSpec.bgcb_enqueue and the concurrency bound)."
            )
            positions = [p for a, b in reads for p in (a.position, b.position)]
            known = any(p is not None for p in positions)
            if known:
                first = next(p for p in positions if p is not None)
                assert positions == [first, first, first + 1, first + 1, first + 2, first + 2], (
                    f"positions {positions} (each record read without and with drain) for three records enqueued in "
                    "a row: a backend that knows the 0-based queue place reports it on every read, drain or not, "
                    "one more for each record behind (see hookspecs.BackendSpec.bgcb_read)."
                )
            assert kit.cas(ids[0], ["queued"], "cancelled", kit.ended()), (
                "bgcb_cas(expect=['queued']) of a queued record must succeed (see hookspecs.BackendSpec.bgcb_cas)"
            )
            if known:
                after = [stored(kit, j).position for j in ids[1:]]
                assert after == [first, first + 1], (
                    f"after the first of three queued records was moved to 'cancelled', the others read positions "
                    f"{after}, expected {[first, first + 1]}: bgcb_cas removes an id from the queue when it leaves "
                    "'queued' (see hookspecs.BackendSpec.bgcb_cas)."
                )
            if kit.has_hook("bgcb_active"):
                active = kit.backend.hook.bgcb_active() or []
                assert ids[0] not in active and [j for j in active if j in ids] == ids[1:], (
                    f"bgcb_active listed {[j for j in active if j in ids]} of the records {ids} after the first was "
                    "cancelled: queued ids in queue order, none that left the queue (see hookspecs.BackendSpec.bgcb_active)."
                )
            for job_id in blockers:
                kit.wait(job_id)
            for job_id in ids[1:]:
                kit.wait(job_id)
            time.sleep(0.3)
        assert not markers[0].exists(), (
            "a record moved from 'queued' to 'cancelled' was run anyway: it must never start (see hookspecs.BackendSpec.bgcb_cas)"
        )
        claims = [kw for name, kw in spy.with_id(ids[0]) if name == "bgcb_cas" and kw.get("state") == "running"]
        assert not claims, (
            "a worker took the id of a record that bgcb_cas had moved out of 'queued' and tried to claim it: the queue "
            "drops an id when its record leaves 'queued' (see hookspecs.BackendSpec.bgcb_cas)."
        )

    def test_cache_pair_and_expiry(self, kit: Kit) -> None:
        if not kit.has_hook("bgcb_cache_get"):
            pytest.skip("the optional hooks bgcb_cache_put/bgcb_cache_get are not implemented: cache_by is not reused")
        key, kept = "kit-cache-" + new_job_id(), "kit-kept-" + new_job_id()
        text = '{"kind": "value",  "value": "héllo ✓"}'
        get = kit.backend.hook.bgcb_cache_get
        assert get(cache_key=key) is None, (
            "bgcb_cache_get of a key never put must return None (see hookspecs.BackendSpec.bgcb_cache_get)."
        )
        kit.backend.hook.bgcb_cache_put(cache_key=key, outcome=text, ttl=1.0)
        kit.backend.hook.bgcb_cache_put(cache_key=kept, outcome=text, ttl=60.0)
        assert get(cache_key=key) == text, (
            "bgcb_cache_get must return the outcome text bgcb_cache_put stored, unchanged "
            "(see hookspecs.BackendSpec.bgcb_cache_put)."
        )
        assert until(lambda: get(cache_key=key) is None), (
            "bgcb_cache_get still returned an outcome 3 s after it was put with ttl=1.0: cached outcomes expire after "
            "their ttl (see hookspecs.BackendSpec.bgcb_cache_put)."
        )
        assert get(cache_key=kept) == text, (
            "an entry put with ttl=60 must outlive one put with ttl=1 (see hookspecs.BackendSpec.bgcb_cache_put)"
        )

    def test_terminal_records_expire(self, kit: Kit) -> None:
        job_id = kit.claim()
        assert kit.cas(job_id, ["running"], "succeeded", kit.ended(), ttl=1.0), (
            "bgcb_cas(expect=['running']) of a running record must succeed (see hookspecs.BackendSpec.bgcb_cas)"
        )
        assert until(lambda: kit.read(job_id) is None and kit.backend.hook.bgcb_load(job_id=job_id) is None), (
            "a record written by bgcb_cas with ttl=1.0 could still be read 3 s later: the record (and its job "
            "text) is kept ttl seconds from that write (see hookspecs.BackendSpec.bgcb_cas)."
        )

    def test_wait_wakes_on_change(self, kit: Kit) -> None:
        """bgcb_wait (optional) returns when a compare-and-set or an append changes the record, not at its timeout."""
        if not kit.has_hook("bgcb_wait"):
            pytest.skip("the backend does not implement the optional hook bgcb_wait (held requests read on a schedule)")
        for change in ("cas", "append"):
            job_id = kit.claim()
            stored(kit, job_id)
            if kit.backend.wait(job_id, 0.0) is None:
                pytest.skip("bgcb_wait returned None: the backend cannot wait in this process")
            stored(kit, job_id)  # the first wait may return at once; read again, as the core does, then wait

            def write(job_id: str = job_id, change: str = change) -> None:
                time.sleep(0.2)
                if change == "cas":
                    kit.cas(job_id, ["running"], "succeeded", kit.ended())
                else:
                    kit.append(job_id, dumps({"type": "progress", "value": [1]}))

            writer = threading.Thread(target=write)
            writer.start()
            deadline, woke = time.monotonic() + 20, None
            while True:
                woke = kit.backend.wait(job_id, 20.0)
                got = stored(kit, job_id, drain=True)
                if got.state == "succeeded" or got.updates:
                    break
                assert time.monotonic() < deadline, f"bgcb_wait never saw the {change} (see hookspecs.BackendSpec.bgcb_wait)."
            writer.join()
            assert woke, (
                f"bgcb_wait(job_id, 20) returned {woke!r} after a bgcb_{change} on the record 0.2 s into the wait: it must "
                "return True when the record changes, so that a held request answers at once "
                "(see hookspecs.BackendSpec.bgcb_wait)."
            )
