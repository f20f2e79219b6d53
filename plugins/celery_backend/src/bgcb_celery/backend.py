"""The ``celery`` backend's hooks: storage in Redis, a queue on the Celery broker, workers that are Celery workers.

The web process and the workers share two things: the Celery broker (Redis or
RabbitMQ), which carries one message per job (its id, store id and text) to
the generic task ``bgcb.run_job``, and a Redis server (the *store*) holding
each job's record, its updates, heartbeats and cached outcomes. The core owns
the job's life; this class only maps the contract's hooks onto the store
(:mod:`.store`), the broker and the worker side (:mod:`.worker`). See the
README for keys, costs, cancel and crash detection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from bgcb import Counts, Stored, hookimpl
from bgcb.checks import Check
from bgcb.hookspecs import Role
from bgcb.lifecycle import Lifecycle

from . import config, defaults, presence, publish, worker
from .config import Config, redact
from .later import Later, limits_for
from .places import OrderedQueue
from .publish import DirectPublisher
from .store import RedisStore, StoreUnavailable, stored_for_outage

log = logging.getLogger("bgcb.celery")
TASK_NAME = defaults.TASK_NAME

__all__ = ["TASK_NAME", "CeleryBackend", "StoreUnavailable", "redact"]


class CeleryBackend:
    """The ``celery`` backend (distribution ``bgcb-celery``); options in :func:`bgcb_celery.config.options`."""

    def __init__(self) -> None:
        self.closed = False
        self.options: dict[str, Any] = {}
        self.role: Role = "web"
        self._config: Config | None = None
        self._store: RedisStore | None = None
        self._runner: worker.JobRunner | None = None
        self._jobs: Lifecycle | None = None
        self._secret: bytes | None = None
        self._recent: OrderedDict[str, Stored] = OrderedDict()
        self._lock = threading.Lock()
        self._timers: set[threading.Timer] = set()
        #: Builds task messages the store pushes itself (the broker is the store's Redis), else None.
        self._publisher: DirectPublisher | None = None
        self._serving: presence.Serving | None = None
        self._later: Later | None = None

    # -- the parts, once configured ----------------------------------------------------------

    @property
    def config(self) -> Config:
        assert self._config is not None, "bgcb-celery: the backend is not configured"
        return self._config

    @property
    def store(self) -> RedisStore:
        assert self._store is not None, "bgcb-celery: the backend is not configured"
        return self._store

    @property
    def runner(self) -> worker.JobRunner:
        assert self._runner is not None, "bgcb-celery: the backend is not configured"
        return self._runner

    @property
    def jobs(self) -> Lifecycle:
        assert self._jobs is not None, "bgcb-celery: the backend is not configured"
        return self._jobs

    @property
    def later(self) -> Later:
        assert self._later is not None, "bgcb-celery: the backend is not configured"
        return self._later

    @property
    def celery(self) -> Any:
        """The Celery app jobs are sent with (``celery -A`` runs it; see ``celery_app_of``)."""
        return self.config.celery

    @property
    def queue(self) -> str:
        return self.config.queue

    @property
    def store_id(self) -> str:
        return self.config.store_id

    # -- configuration and life ----------------------------------------------------------------

    @hookimpl
    def bgcb_options(self) -> dict[str, Any]:
        return config.options()

    @hookimpl
    def bgcb_configure(self, options: dict[str, Any], role: Role, jobs: Lifecycle) -> None:
        self.options, self.role, self._jobs = options, role, jobs
        self._config = config.resolve(options)
        self._store = RedisStore(self.config.store_url, self.config.prefix, self.config.timing, self.config.broker_list)
        self._store.places.order = OrderedQueue(self._store, self.queue)
        self._store.places.ordering = lambda: jobs.ordered
        self._runner = worker.JobRunner(self._store, jobs, self.config.store_id)
        self._serving = presence.Serving(self._store, self.queue)
        if self.config.direct_publish and self.config.broker_list is not None:
            self._publisher = DirectPublisher(self.celery, self.queue, self.config.broker_list)
        grace = jobs.settings["cancel_grace"]
        self._later = Later(self._store, self.celery, self.queue, self.store_id, self._publisher, grace)
        self._later.payloads = self._runner.payloads.get
        self._runner.later = self._later
        presence.register(self.celery, self._store, self.queue, tick=self._later.tick)
        worker.register_task(self.config.celery)
        self._runner.register()

    @hookimpl
    def bgcb_run_worker(self, app_module: str) -> bool:
        """Run a Celery worker for this instance's Celery app, on its queue, until interrupted."""
        argv = config.worker_argv(self.options, self.queue)
        log.info("bgcb-celery: starting a Celery worker for %s: celery %s", app_module, " ".join(argv))
        self.celery.worker_main(argv=argv)
        return True

    @hookimpl
    def bgcb_close(self) -> None:
        self.closed = True
        with self._lock:
            timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()
        if self._runner is not None:
            self._runner.close()
        if self._store is not None:
            presence.unregister(self._store)
            self._store.close()
        if self._config is not None and self._config.own_app:
            self._config.celery.close()  # its broker connection pools; a user's app is the user's to close

    # -- records ---------------------------------------------------------------------------------

    def _patient(self, job_id: str) -> bool:
        """Calls for a job this process runs retry through a Redis restart (the worker's policy)."""
        return self._runner is not None and job_id in self._runner.executing

    @hookimpl
    def bgcb_enqueue(
        self,
        job_id: str,
        job: str,
        data: str,
        timeout: float | None,
        ttl: float,
        lane: str | None,
        priority: int | None,
        cap: int | None,
    ) -> None:
        limits = limits_for(timeout, self.jobs.settings["cancel_grace"])
        kwargs: dict[str, Any] = {"store": self.store_id, **({"job": job} if len(job) <= defaults.MESSAGE_JOB_MAX else {})}
        place = None if lane is None else (lane, int(priority or 0), cap)
        if place is not None:
            kwargs["ordered"] = True  # the message is a ticket: its worker runs the next job in the core's order
        if self._publisher is not None:  # record, payload, place and message in one round trip
            message = self._publisher.message(job_id, kwargs, limits)
            self.store.enqueue(job_id, job, data, ttl, message=message, lane=place)
            self._remember(job_id, Stored("queued", data))
            return
        self.store.enqueue(job_id, job, data, ttl, lane=place)
        try:
            options: dict[str, Any] = dict(limits)  # Celery's options (time limits)
            publish.send(self.celery, self.queue, job_id, kwargs, **options)
        except Exception as exc:
            self.store.unqueue(job_id)
            raise StoreUnavailable(
                f"bgcb-celery: cannot send the job to the Celery broker at {redact(self.config.broker_url)} ({exc!r}). "
                "Start the broker or set BGCB_CELERY_BROKER_URL (or the celery_app option) to a running one."
            ) from exc
        self._remember(job_id, Stored("queued", data))

    @hookimpl
    def bgcb_defer(self, job_id: str, delay: float, lane: str | None, priority: int | None, cap: int | None) -> None:
        """A Celery message with ``countdown=delay`` (see :mod:`.later`); the worker returns at once."""
        self.later.defer(job_id, delay, lane, priority, cap, ran=job_id in self.runner.capped)

    @hookimpl
    def bgcb_counts(self, lane: str) -> Counts | None:
        return self.later.counts(lane)

    @hookimpl
    def bgcb_read(self, job_id: str, drain: bool) -> Stored | None:
        if self._patient(job_id):
            return self.store.read(job_id, drain, patient=True)
        with self._lock:
            last = self._recent.get(job_id)
        try:
            stored = self.store.read(job_id, drain, running=last is not None and last.state == "running")
        except StoreUnavailable:
            # A poll during a short outage keeps the browser waiting (see stored_for_outage).
            age = self.store.outage_age()
            if drain and age is not None and age < self.config.timing.outage_grace:
                log.warning("bgcb-celery: Redis unavailable for %.1f s; job %s reported as it was last read", age, job_id)
                with self._lock:
                    return stored_for_outage(self._recent.get(job_id))
            raise
        self._remember(job_id, stored)
        if stored is not None and stored.state == "queued" and self._serving is not None:
            stored.alive = self._serving()  # whether any worker serves the queue
            if stored.alive is False:
                stored.reason = (
                    f"no Celery worker serves queue {self.queue!r} (none announced itself in the last "
                    f"{defaults.PRESENCE_TTL:g} s). Start one with `bgcb worker APP_MODULE`, or "
                    f"`celery -A APP_MODULE:celery_app worker -Q {self.queue}`, with the app's Redis settings"
                )
        return stored

    def _remember(self, job_id: str, stored: Stored | None) -> None:
        """Keep the last read of an active job (without updates) for polls during an outage."""
        with self._lock:
            if stored is None or stored.state not in ("queued", "running"):
                self._recent.pop(job_id, None)
                return
            self._recent[job_id] = Stored(stored.state, stored.data, [], stored.position, None)
            self._recent.move_to_end(job_id)
            while len(self._recent) > defaults.REMEMBERED_READS:
                self._recent.popitem(last=False)

    @hookimpl
    def bgcb_load(self, job_id: str) -> str | None:
        if self._patient(job_id) and job_id in self.runner.payloads:
            return self.runner.payloads[job_id]  # carried by the message: no read
        return self.store.load(job_id, patient=self._patient(job_id))

    @hookimpl
    def bgcb_cas(self, job_id: str, expect: Sequence[str], state: str, data: str, ttl: float) -> bool:
        patient = self._patient(job_id)
        # The worker's final write says whether the job left updates, so reads of it skip an LPOP.
        ended = state not in ("queued", "running")
        quiet = patient and ended and job_id not in self.runner.appended
        beat = str(self.runner.beats.get(job_id, "")) if patient else ""  # the web's writes keep the claim's
        here = patient and job_id in self.runner.claimed
        done = self.store.cas(job_id, expect, state, data, ttl, patient, no_updates=quiet, beat=beat, ran_here=here)
        if done:
            if patient and state == "running":
                self.runner.claimed.add(job_id)
            self._remember(job_id, Stored(state, data))
        return done

    @hookimpl
    def bgcb_append(self, job_id: str, update: str, ttl: float) -> None:
        if self._patient(job_id):
            self.runner.appended.add(job_id)
        self.store.append(job_id, update, ttl)

    # -- stop ---------------------------------------------------------------------------------------

    @hookimpl
    def bgcb_touch(self, job_id: str, ttl: float) -> None:
        self.store.call(lambda: self.store.redis.set(self.store.keys.seen(job_id), repr(time.time()), px=int(ttl * 1000)))

    @hookimpl
    def bgcb_seen(self, job_id: str) -> float | None:
        return self.store.seen(job_id, self._patient(job_id))

    @hookimpl
    def bgcb_capabilities(self) -> list[str]:
        return ["ordering", "running_limits", "deferral"]

    @hookimpl
    def bgcb_capacity(self) -> int | None:
        return self._serving.capacity() if self._serving is not None else None

    @hookimpl
    def bgcb_stop(self, job_id: str, after: float) -> None:
        """In ``after`` s, terminate the job's pool process if it still runs it (its heartbeat lists it).

        A job that stopped by itself (its callback saw the cancel at a
        progress or set_props call) is no longer listed by then, so no
        control broadcast is sent.
        """
        timer = threading.Timer(max(0.0, after), self._stop_now, args=(job_id,))
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def _stop_now(self, job_id: str) -> None:
        try:
            if not self.closed and self.store.executing(job_id):
                order = self.store.places.order
                task = order.task_of(job_id) if order is not None and self.jobs.ordered else job_id
                self.celery.control.revoke(task, terminate=True, signal="SIGTERM")
        except Exception:  # a timer thread: log, never raise
            log.exception("bgcb-celery: could not terminate job %s", job_id)
        finally:
            with self._lock:
                self._timers.discard(threading.current_thread())  # type: ignore[arg-type,unused-ignore]

    # -- the command line ----------------------------------------------------------------------------

    @hookimpl
    def bgcb_describe(self) -> dict[str, Any]:
        cfg = self.config
        where = f"Redis {redact(cfg.store_url)} (keys {cfg.prefix}:*), broker {redact(cfg.broker_url)}, queue {cfg.queue!r}"
        app = self.options.get("celery_app") or f"(built by bgcb: broker {redact(cfg.broker_url)}, JSON only)"
        effective = {"broker_url": redact(cfg.broker_url), "result_url": redact(cfg.store_url), "queue": cfg.queue}
        return {"where": where, "celery_app": app if isinstance(app, str) else repr(app), **effective}

    @hookimpl
    def bgcb_check(self) -> list[Check]:
        return presence.checks(self.config, self.store, self._serving)

    # -- cache, listing, secret -------------------------------------------------------------------

    @hookimpl
    def bgcb_cache_put(self, cache_key: str, outcome: str, ttl: float) -> None:
        self.store.cache_put(cache_key, outcome, ttl)

    @hookimpl
    def bgcb_cache_get(self, cache_key: str) -> str | None:
        return self.store.cache_get(cache_key)

    @hookimpl
    def bgcb_active(self) -> list[str]:
        return self.store.active()

    @hookimpl
    def bgcb_shared_secret(self, generate: Callable[[], bytes]) -> bytes:
        if self._secret is None:
            self._secret = self.store.secret(generate)
        return self._secret
