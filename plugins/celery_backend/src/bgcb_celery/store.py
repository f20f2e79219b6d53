"""The Redis store of bgcb-celery: key layout, the operations of the contract, and Redis errors.

Keys under one prefix (default ``bgcb``)::

    <prefix>:job:<id>      hash {s: state, d: data, j: job, u}  TTL: the core's ttl of the last write
    <prefix>:upd:<id>      list of update texts, oldest first  TTL: job_ttl from its creation
    <prefix>:hb:<id>       heartbeat of a running job          TTL: heartbeat_ttl
    <prefix>:queue         sorted set of queued ids by submit time
    <prefix>:cache:<key>   a cached outcome                     TTL: Dash's expire
    <prefix>:secret        Dash's signing secret                (first writer wins)

Every operation is one round trip, and the ones on every job are Lua scripts
(:mod:`bgcb_celery.scripts`) that run only the commands the record's state
needs. Two error policies: the web process retries a failed call once on a
fresh connection, then raises :class:`StoreUnavailable` naming the URL; a
worker (``patient``) retries for ``store_retry`` seconds, through a Redis
restart.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis

from bgcb import Stored
from bgcb.errors import BgcbError

from . import defaults, scripts
from .config import Timing, redact

log = logging.getLogger("bgcb.celery")
T = TypeVar("T")
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class StoreUnavailable(BgcbError, ConnectionError):
    """The Redis store (or the broker) cannot be reached."""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def upd(self, job_id: str) -> str:
        return f"{self.prefix}:upd:{job_id}"

    def hb(self, job_id: str) -> str:
        return f"{self.prefix}:hb:{job_id}"

    @property
    def queue(self) -> str:
        return f"{self.prefix}:queue"

    def cache(self, cache_key: str) -> str:
        return f"{self.prefix}:cache:{cache_key}"

    @property
    def secret(self) -> str:
        return f"{self.prefix}:secret"


class RedisStore:
    """One Redis connection pool and the store operations on it; safe to share between threads."""

    def __init__(self, url: str, prefix: str, timing: Timing) -> None:
        self.url = url
        self.keys = Keys(prefix)
        self.timing = timing
        self.redis = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=defaults.CONNECT_TIMEOUT,
            socket_timeout=defaults.SOCKET_TIMEOUT,
            client_name="bgcb-celery",
        )
        self._enqueue = self.redis.register_script(scripts.ENQUEUE)
        self._read = self.redis.register_script(scripts.READ)
        self._cas = self.redis.register_script(scripts.CAS)
        self._outage_since: float | None = None
        self._last_outage = float("-inf")
        self._trimmed = time.time()

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
        """Whether this process saw an outage so lately that missing heartbeats prove nothing."""
        return time.time() - self._last_outage < self.timing.quiet

    # -- records ---------------------------------------------------------------------

    def enqueue(self, job_id: str, job: str, data: str, ttl: float) -> None:
        now = time.time()
        cutoff = ""
        if now - self._trimmed > defaults.TRIM_EVERY:  # forget ids whose message never arrived
            self._trimmed = now
            cutoff = repr(now - ttl)
        keys = [self.keys.job(job_id), self.keys.queue]
        self.call(lambda: self._enqueue(keys=keys, args=[job_id, job, data, _ms(ttl), repr(now), cutoff]))

    def unqueue(self, job_id: str) -> None:
        """Undo an enqueue whose message could not be sent (best effort)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.keys.job(job_id))
        pipe.zrem(self.keys.queue, job_id)
        try:
            pipe.execute()
        except redis.RedisError:
            pass

    def read(self, job_id: str, drain: bool, patient: bool = False) -> Stored | None:
        k = self.keys
        keys = [k.job(job_id), k.upd(job_id), k.hb(job_id), k.queue]
        declare = 0 if self.quiet() else 1
        args: list[str | int] = [job_id, int(drain), declare, repr(self.timing.quiet), defaults.DRAIN_MAX]
        reply = self.call(lambda: self._read(keys=keys, args=args), patient)
        if not reply:
            return None
        state, data, updates, position, alive = reply
        return Stored(
            state,
            data or "",
            list(updates or []),
            None if position is None else int(position),
            None if alive is None else bool(alive),
        )

    def load(self, job_id: str, patient: bool = False) -> str | None:
        text = self.call(lambda: self.redis.hget(self.keys.job(job_id), "j"), patient)
        return None if text is None else str(text)

    def cas(
        self,
        job_id: str,
        expect: Sequence[str],
        state: str,
        data: str,
        ttl: float,
        patient: bool = False,
        no_updates: bool = False,
    ) -> bool:
        """The compare-and-set of the contract; ``no_updates`` marks an ended job that appended none."""
        keys = [self.keys.job(job_id), self.keys.queue]
        args: list[str | int] = [state, data, _ms(ttl), job_id, "0" if no_updates else "", *expect]
        return bool(self.call(lambda: self._cas(keys=keys, args=args), patient))

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
        return None if text is None else str(text)

    def secret(self, generate: Callable[[], bytes]) -> bytes:
        def fetch() -> str:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.keys.secret, base64.b64encode(generate()).decode(), nx=True)
            pipe.get(self.keys.secret)
            return str(pipe.execute()[1])

        return base64.b64decode(self.call(fetch))

    # -- heartbeats and listings ---------------------------------------------------------

    def beat(self, job_ids: Iterable[str], worker: str, patient: bool = False) -> None:
        """Write (or renew) the heartbeat of each job, in one round trip."""
        ttl = _ms(self.timing.heartbeat_ttl)

        def write() -> None:
            pipe = self.redis.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.set(self.keys.hb(job_id), worker, px=ttl)
            pipe.execute()

        self.call(write, patient)

    def unbeat(self, job_id: str) -> None:
        """Remove a heartbeat (best effort: it expires by itself)."""
        try:
            self.redis.delete(self.keys.hb(job_id))
        except redis.RedisError as exc:
            log.warning("bgcb-celery: could not remove the heartbeat of job %s: %s", job_id, exc)

    def executing(self, job_id: str) -> bool:
        """Whether a worker still runs the job (its heartbeat is present)."""
        return bool(self.call(lambda: self.redis.exists(self.keys.hb(job_id))))

    def active(self) -> list[str]:
        """Running ids (those with a heartbeat), then queued ids in queue order."""
        prefix = self.keys.hb("")
        pattern = _glob_escape(prefix) + "*"
        running = self.call(lambda: [key[len(prefix) :] for key in self.redis.scan_iter(match=pattern, count=500)])
        queued = self.call(lambda: list(self.redis.zrange(self.keys.queue, 0, -1)))
        return sorted(running) + [job_id for job_id in queued if job_id not in running]


def stored_for_outage(last: Stored | None) -> Stored:
    """What a poll answers while Redis is unreachable: the last read of the job, without updates.

    A job this process never read is reported running with empty data (no
    timestamps, no deadline), which keeps the browser waiting and lets the
    core decide nothing from it.
    """
    if last is None:
        return Stored("running", "{}")
    return Stored(last.state, last.data, [], last.position, None)
