"""The Redis store of bgcb-celery: key layout, the operations of the contract, and Redis errors.

Keys under one prefix (default ``bgcb``)::

    <prefix>:rec:<id>        the record: "state SEP mark SEP beat SEP until SEP data"  TTL: the core's ttl of the last write
    <prefix>:payload:<id>    the job text                        TTL: job_ttl (dropped by the worker once ended)
    <prefix>:upd:<id>        list of update texts, oldest first  TTL: job_ttl from its creation
    <prefix>:worker:<name>   heartbeat of a worker process: "beat id id ..." (the jobs it runs)  TTL: heartbeat_ttl
    <prefix>:cache:<key>     a cached outcome                     TTL: Dash's expire
    <prefix>:secret          Dash's signing secret                (first writer wins)

Every job costs as few commands as its lifecycle allows: two SETs to store
it, one ``SET ... GET`` script per state change, one GET per poll of an ended
job; heartbeats are per worker process, not per job, so a busy pool pays
them per second, not per job. The queue place of a waiting job is read from
the Celery broker's own list when the broker is this Redis (no index of our
own to keep). Two error policies: the web process retries a failed call once
on a fresh connection, then raises :class:`StoreUnavailable` naming the URL;
a worker (``patient``) retries for ``store_retry`` seconds, through a Redis
restart.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis

from bgcb import Stored
from bgcb.errors import BgcbError

from . import defaults, scripts
from .config import Timing, redact
from .layout import Keys, Record, alive_from, foreign, read_record, secret_of, stored_for_outage, unreadable
from .places import Places

log = logging.getLogger("bgcb.celery")
T = TypeVar("T")
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
#: A key bgcb cannot have written: not a string (another layout under this prefix), or not UTF-8 text
#: (read as lone surrogates, see :func:`.layout.foreign`). It reads as absent (a record: an unknown job), never
#: as a server error; bgcb never unpickles anything it reads.
UNREADABLE = (redis.ResponseError, UnicodeDecodeError)


class StoreUnavailable(BgcbError, ConnectionError):
    """The Redis store (or the broker) cannot be reached."""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _until(ttl: float) -> str:
    """The end a write with ``ttl`` gives its record, in ms since the epoch (kept in the record)."""
    return str(int(time.time() * 1000) + _ms(ttl))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


__all__ = ["Keys", "Record", "RedisStore", "StoreUnavailable", "stored_for_outage"]


class RedisStore:
    """One Redis connection pool and the store operations on it; safe to share between threads.

    ``broker_list`` is the Celery queue's list when the broker is this Redis
    (queue places are read from it), else None.
    """

    def __init__(self, url: str, prefix: str, timing: Timing, broker_list: str | None) -> None:
        self.url = url
        self.keys = Keys(prefix)
        self.timing = timing
        self.broker_list = broker_list
        self.redis = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=defaults.CONNECT_TIMEOUT,
            socket_timeout=defaults.SOCKET_TIMEOUT,
            client_name="bgcb-celery",
            # Bytes that are not UTF-8 (a value bgcb did not write) read as text that says so (see foreign()),
            # instead of failing the whole reply they came in: a script's, a pipeline's, an MGET's.
            encoding_errors="surrogateescape",
        )
        self._cas = self.redis.register_script(scripts.CAS)
        self._read_script = self.redis.register_script(scripts.READ_RUNNING)
        #: Where queued jobs stand: the broker's list, or the core's order (which the backend sets up).
        self.places = Places(self)
        self._outage_since: float | None = None
        self._last_outage = float("-inf")

    def close(self) -> None:
        self.redis.close()

    # -- errors ----------------------------------------------------------------------

    def unreachable(self, exc: BaseException) -> str:
        return (
            f"bgcb-celery: cannot reach the Redis job store at {redact(self.url)} ({exc}). Start Redis there, or "
            "point BGCB_CELERY_RESULT_URL (or REDIS_URL, or bgcb.manager(result_url=...)) to a running Redis. "
            "The app keeps serving; background callbacks fail until Redis is back."
        )

    def _failed(self) -> None:
        now = time.time()
        self._last_outage = now
        if self._outage_since is None:
            self._outage_since = now

    def call(self, fn: Callable[[], T], patient: bool = False) -> T:
        """Run one store operation under the web policy, or the worker's (``patient``)."""
        deadline = time.monotonic() + (self.timing.store_retry if patient else 0.0)
        pause, tries = 0.05, 0
        while True:
            try:
                result = fn()
            except REDIS_ERRORS as exc:
                self._failed()
                tries += 1
                if tries > 1 and time.monotonic() >= deadline:
                    raise StoreUnavailable(self.unreachable(exc)) from exc
                if patient:
                    log.warning("bgcb-celery: Redis at %s unavailable (%s); retrying", redact(self.url), exc)
                    time.sleep(pause)
                    pause = min(pause * 2, 1.0)
                continue  # the web retries once, on a fresh connection
            self._outage_since = None
            return result

    def outage_age(self) -> float | None:
        """Seconds since the store became unreachable, as this process saw it; None if it is not."""
        return None if self._outage_since is None else time.time() - self._outage_since

    def quiet(self) -> bool:
        """Whether a missing heartbeat proves nothing now: this process saw an outage lately, or
        Redis restarted lately (workers could not write their heartbeats meanwhile)."""
        if time.time() - self._last_outage < self.timing.quiet:
            return True
        uptime = self.call(lambda: self.redis.info("server").get("uptime_in_seconds", 0))
        return float(uptime) <= self.timing.quiet

    # -- records ---------------------------------------------------------------------

    def enqueue(
        self,
        job_id: str,
        job: str,
        data: str,
        ttl: float,
        message: str | None = None,
        lane: tuple[str, int, int | None] | None = None,
    ) -> None:
        """Store the record and the job text (and with ``lane``, its place in the core's order); with
        ``message``, push it onto the broker list after them (same round trip, in order: a worker never
        takes a message whose record, or place, is not there yet)."""

        def write() -> None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.keys.rec(job_id), Record("queued", data, until=_until(ttl)).encode(), px=_ms(ttl))
            pipe.set(self.keys.payload(job_id), job, px=_ms(ttl))
            if lane is not None and self.places.order is not None:
                self.places.order.push_in(pipe, job_id, *lane)
            if message is not None and self.broker_list is not None:
                pipe.lpush(self.broker_list, message)
            pipe.execute()

        self.call(write)

    def unqueue(self, job_id: str) -> None:
        """Undo an enqueue whose message could not be sent (best effort)."""
        try:
            self.redis.delete(self.keys.rec(job_id), self.keys.payload(job_id))
        except redis.RedisError:
            pass

    def record(self, job_id: str, patient: bool = False) -> Record | None:
        try:
            text = self.call(lambda: self.redis.get(self.keys.rec(job_id)), patient)
        except UNREADABLE as exc:
            unreadable(job_id, exc)
            return None
        return None if text is None else read_record(job_id, str(text))

    def read(self, job_id: str, drain: bool, patient: bool = False, running: bool = False) -> Stored | None:
        """One GET for a queued or ended job; a running one's heartbeat (and a drain) in one more round trip,
        or everything in one script call when the caller last saw the job ``running``."""
        if running:
            return self._read_running(job_id, drain, patient)
        rec = self.record(job_id, patient)
        if rec is None:
            return None
        updates = drain and rec.mark != "0" and rec.state != "queued"
        worker = rec.worker if rec.state == "running" else None
        if not updates and worker is None:
            return self._stored(job_id, rec, [], None)

        def more() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            if updates:
                pipe.lpop(self.keys.upd(job_id), defaults.DRAIN_MAX)
            if worker is not None:
                pipe.get(self.keys.worker(worker))
            return list(pipe.execute())

        replies = self.call(more, patient)
        drained = list(replies.pop(0) or []) if updates else []
        return self._stored(job_id, rec, drained, replies[0] if worker is not None else None)

    def _read_running(self, job_id: str, drain: bool, patient: bool) -> Stored | None:
        keys = [self.keys.rec(job_id), self.keys.upd(job_id)]
        args: list[str | int] = [self.keys.worker(""), int(drain), defaults.DRAIN_MAX]
        try:
            reply = self.call(lambda: self._read_script(keys=keys, args=args), patient)
        except UNREADABLE as exc:
            unreadable(job_id, exc)
            return None
        rec = read_record(job_id, str(reply[0])) if reply else None
        return None if rec is None else self._stored(job_id, rec, list(reply[2] or []), reply[1])

    def _stored(self, job_id: str, rec: Record, drained: list[str], beat: str | None) -> Stored:
        """The read of ``rec``: its queue place while queued, whether its worker still runs it while running."""
        if rec.state == "queued":
            # No place while it waits to run again (bgcb_defer): it is in no queue yet.
            return Stored(rec.state, rec.data, position=None if rec.waiting else self.places.position(job_id))
        worker = rec.worker if rec.state == "running" else None
        if worker is None:
            return Stored(rec.state, rec.data, drained)
        if beat is None:
            if self.quiet():
                return Stored(rec.state, rec.data, drained)
            gone = f"no heartbeat from its worker process {worker} for {self.timing.heartbeat_ttl:g} s"
            return Stored(rec.state, rec.data, drained, alive=False, reason=gone)
        alive = alive_from(job_id, rec, str(beat))
        reason = None if alive is not False else f"its worker process {worker} no longer runs it"
        return Stored(rec.state, rec.data, drained, alive=alive, reason=reason)

    def load(self, job_id: str, patient: bool = False) -> str | None:
        try:
            text = self.call(lambda: self.redis.get(self.keys.payload(job_id)), patient)
        except UNREADABLE as exc:
            unreadable(job_id, exc)
            return None
        return None if text is None else str(text)  # as read: the core fails a job whose text it cannot parse

    def cas(
        self,
        job_id: str,
        expect: Sequence[str],
        state: str,
        data: str,
        ttl: float,
        patient: bool = False,
        no_updates: bool = False,
        beat: str = "",
        ran_here: bool = False,
    ) -> bool:
        """The compare-and-set of the contract; ``no_updates`` marks an ended job that appended none,
        ``beat`` is the claiming worker's heartbeat count, ``ran_here``: this process claimed the job
        (its heartbeat drops the payload once it ended; other ends expire it with the record)."""
        args: list[str | int] = [state, "0" if no_updates else "", beat, _until(ttl), data, _ms(ttl), *expect]
        done = bool(self.call(lambda: self._cas(keys=[self.keys.rec(job_id)], args=args), patient))
        if done and not ran_here and state not in ("queued", "running"):  # a cancel, a lost job, the kit
            self.call(lambda: self.redis.pexpire(self.keys.payload(job_id), _ms(ttl)), patient)  # the text goes with it
            if not patient:
                self.places.unqueue(job_id, expect, data)
        return done

    def append(self, job_id: str, update: str, ttl: float) -> None:
        """RPUSH; a list it created (the first update, or the first after a drain emptied it) gets the TTL."""
        key = self.keys.upd(job_id)
        if self.call(lambda: self.redis.rpush(key, update), patient=True) == 1:
            self.call(lambda: self.redis.pexpire(key, _ms(ttl)), patient=True)

    # -- cache and secret ----------------------------------------------------------------

    def cache_put(self, cache_key: str, outcome: str, ttl: float) -> None:
        self.call(lambda: self.redis.set(self.keys.cache(cache_key), outcome, px=_ms(ttl)), patient=True)

    def cache_get(self, cache_key: str) -> str | None:
        text = self.call(lambda: self.redis.get(self.keys.cache(cache_key)))
        return None if text is None or foreign(str(text)) else str(text)  # one bgcb did not write: a miss

    def secret(self, generate: Callable[[], bytes]) -> bytes:
        def fetch() -> str:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.keys.secret, base64.b64encode(generate()).decode(), nx=True)
            pipe.get(self.keys.secret)
            return str(pipe.execute()[1])

        return secret_of(self.call(fetch))

    def seen(self, job_id: str, patient: bool = False) -> float | None:
        """When a browser last polled the job; None when never (or the value is not one bgcb wrote)."""
        text = self.call(lambda: self.redis.get(self.keys.seen(job_id)), patient)
        try:
            return float(text) if text else None
        except ValueError:
            return None

    # -- heartbeats and listings ---------------------------------------------------------

    def beat(self, worker: str, count: int, job_ids: Sequence[str], ended: Sequence[str], patient: bool = False) -> None:
        """Write a worker process's heartbeat (its count and the jobs it runs) and drop the payloads
        of the jobs it ended since the last beat, in one round trip."""

        def write() -> None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.keys.worker(worker), " ".join([str(count), *job_ids]), px=_ms(self.timing.heartbeat_ttl))
            if ended:
                pipe.delete(*(self.keys.payload(j) for j in ended))
            pipe.execute()

        self.call(write, patient)

    def executing(self, job_id: str) -> bool:
        """Whether the worker process that claimed the job (whatever its state now) still runs it."""
        rec = self.record(job_id)
        worker = rec.worker if rec is not None else None
        if rec is None or worker is None:
            return False
        beat = self.call(lambda: self.redis.get(self.keys.worker(worker)))
        return beat is not None and alive_from(job_id, rec, str(beat)) is True

    def active(self) -> list[str]:
        """Running ids, then queued ids by submit time (a scan of the records: for listings, not for polls)."""
        prefix = self.keys.rec("")
        pattern = _glob_escape(prefix) + "*"

        def listing() -> list[tuple[str, Record | None]]:
            ids = [key[len(prefix) :] for key in self.redis.scan_iter(match=pattern, count=500)]
            texts = self.redis.mget([prefix + i for i in ids]) if ids else []
            readable = [t if isinstance(t, str) and not foreign(t) else None for t in texts]
            return [(i, Record.decode(t) if t else None) for i, t in zip(ids, readable, strict=True)]

        running, queued = [], []
        for job_id, rec in self.call(listing):
            if rec is not None and rec.state == "running":
                running.append(job_id)
            elif rec is not None and rec.state == "queued":
                queued.append((rec.submitted_at, job_id))
        return sorted(running) + [job_id for _, job_id in sorted(queued)]
