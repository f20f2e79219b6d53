"""Which queues a Celery worker serves, announced in Redis, so that a job nobody will take is told so.

A job's heartbeat (:class:`bgcb_celery.worker.Heart`) only exists while a
process works; an idle worker stays silent to save Redis commands. So each
worker's main process also announces, every ``PRESENCE_EVERY`` seconds, the
queues it consumes: ``ZADD <prefix>:serving:<queue> <expiry ms> <host:pid:processes>``.
A web process asks ``ZCOUNT`` of the members not yet expired when a poll
reads a queued job (at most once a second while a worker is present), and
the core fails a job that waited ``no_worker_after`` with nobody serving its
queue, saying what to start.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from bgcb.checks import Check

from . import defaults
from .config import Config, redact
from .store import RedisStore

log = logging.getLogger("bgcb.celery")

#: (store, queue) of every backend configured in this process: what a worker here announces.
_served: list[tuple[RedisStore, str]] = []
#: Periodic looks of those backends, by id of their store (deferred messages overdue, kept-back tickets).
_ticks: dict[int, Callable[[], None]] = {}
_lock = threading.Lock()
_connected = False


def register(celery: Any, store: RedisStore, queue: str, tick: Callable[[], None] | None = None) -> None:
    """Remember a backend's queue, and have this process announce it should it become a Celery worker;
    ``tick`` runs with each announcement (:meth:`bgcb_celery.later.Later.tick`)."""
    global _connected
    with _lock:
        if all(s is not store for s, _ in _served):
            _served.append((store, queue))
        if tick is not None:
            _ticks[id(store)] = tick
        if _connected:
            return
        _connected = True
    from celery import signals

    signals.worker_ready.connect(_on_worker_ready, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)


def unregister(store: RedisStore) -> None:
    with _lock:
        _served[:] = [(s, q) for s, q in _served if s is not store]
        _ticks.pop(id(store), None)


def _consumed(sender: Any) -> set[str] | None:
    """Names of the queues the worker consumes (None: cannot tell, announce them all)."""
    try:
        return {q.name for q in sender.task_consumer.queues}
    except Exception:
        return None


def _concurrency(sender: Any) -> int:
    """The worker's pool size (its ``-c``), or 1 when it cannot be read."""
    for holder in (getattr(sender, "controller", None), sender):
        value = getattr(holder, "concurrency", None)
        if isinstance(value, int) and value > 0:
            return value
    return 1


class _Announcer:
    def __init__(self, concurrency: int) -> None:
        self.stop = threading.Event()
        # host:pid:processes: the web side sums the last field to know how many jobs run at once
        self.member = f"{socket.gethostname()}:{os.getpid()}:{max(1, concurrency)}"
        self.targets: list[tuple[RedisStore, str]] = []

    def beat(self) -> None:
        expiry = int((time.time() + defaults.PRESENCE_TTL) * 1000)
        for store, queue in self.targets:
            try:
                pipe = store.redis.pipeline(transaction=False)
                pipe.zadd(store.keys.serving(queue), {self.member: expiry})
                pipe.zremrangebyscore(store.keys.serving(queue), "-inf", int(time.time() * 1000))
                pipe.pexpire(store.keys.serving(queue), int(defaults.PRESENCE_TTL * 1000))
                pipe.execute()
            except Exception as exc:  # Redis away: the next beat retries
                log.debug("bgcb-celery: could not announce queue %s (%s)", queue, exc)
                continue
            tick = _ticks.get(id(store))
            try:
                if tick is not None:
                    tick()
            except Exception:  # the next beat retries
                log.warning("bgcb-celery: the look for overdue deferred jobs of queue %s failed", queue, exc_info=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.beat()
            self.stop.wait(defaults.PRESENCE_EVERY)
        for store, queue in self.targets:
            try:
                store.redis.zrem(store.keys.serving(queue), self.member)
            except Exception:
                pass


_announcer: _Announcer | None = None


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    global _announcer
    consumed = _consumed(sender)
    with _lock:
        targets = [(s, q) for s, q in _served if consumed is None or q in consumed]
    if not targets or _announcer is not None:
        return
    _announcer = _Announcer(_concurrency(sender))
    _announcer.targets = targets
    threading.Thread(target=_announcer.run, name="bgcb-presence", daemon=True).start()
    log.info("bgcb-celery: serving queue(s) %s", ", ".join(sorted({q for _, q in targets})))


def _on_worker_shutdown(**_: Any) -> None:
    global _announcer
    if _announcer is not None:
        _announcer.stop.set()
        _announcer = None


class Serving:
    """The web side: whether any worker announced ``queue`` lately (a positive answer is trusted for a second)."""

    def __init__(self, store: RedisStore, queue: str) -> None:
        self.store, self.queue = store, queue
        self._seen_at = float("-inf")

    def __call__(self) -> bool | None:
        now = time.monotonic()
        if now - self._seen_at < defaults.PRESENCE_FRESH:
            return True
        try:
            count = int(self.store.redis.zcount(self.store.keys.serving(self.queue), int(time.time() * 1000), "+inf"))
        except Exception:
            return None  # cannot tell
        if count:
            self._seen_at = now
        return count > 0

    def capacity(self) -> int | None:
        """How many jobs the workers announcing ``queue`` run at once (the sum of their pool sizes)."""
        try:
            members = self.store.redis.zrangebyscore(self.store.keys.serving(self.queue), int(time.time() * 1000), "+inf")
        except Exception:
            return None
        total = 0
        for member in members:
            text = member.decode() if isinstance(member, bytes) else str(member)
            size = text.rsplit(":", 1)[-1]
            total += int(size) if size.isdigit() and text.count(":") >= 2 else 1
        return total or None


def checks(cfg: Config, store: RedisStore, serving: Serving | None) -> list[Check]:
    """``bgcb doctor``: the Redis store, the broker, and a worker serving the queue."""
    checks = []
    try:
        store.redis.ping()
        checks.append(Check(True, f"Redis job store at {redact(cfg.store_url)}"))
    except Exception as exc:
        checks.append(Check(False, f"Redis job store at {redact(cfg.store_url)}", store.unreachable(exc)))
    try:
        with cfg.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks.append(Check(True, f"Celery broker at {redact(cfg.broker_url)}"))
    except Exception as exc:
        fix = f"{exc!r}: start the broker, or point BGCB_CELERY_BROKER_URL (or the celery_app option) at a running one"
        checks.append(Check(False, f"Celery broker at {redact(cfg.broker_url)}", fix))
    served = serving() if serving is not None else None
    what = f"a worker serving queue {cfg.queue!r}"
    if served:
        checks.append(Check(True, what))
    else:
        fix = f"start one: `bgcb worker APP_MODULE`, or `celery -A APP_MODULE:celery_app worker -Q {cfg.queue}`"
        checks.append(Check(False, what, fix if served is False else "cannot tell (Redis unreachable)"))
    return checks
