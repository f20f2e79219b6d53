"""The ``celery`` backend: jobs run on Celery workers, their state lives in Redis.

The web process and the workers share two things: the Celery broker (Redis or
RabbitMQ), which carries one message per job to the generic task
``bgcb.run_job``, and a Redis server (the *store*) that holds each job's record,
its progress/set_props updates, heartbeats and cached results, all as JSON with
TTLs. Dash logic stays in :func:`bgcb.runner.run`; the task only claims the
job, runs it with a channel that writes to Redis, and stores the outcome.
See the README for the design (keys, costs, cancel, crash detection).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import logging
import os
import random
import shlex
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from bgcb import hookimpl
from bgcb.errors import BgcbError, ConfigurationError
from bgcb.jobs import Job, Outcome, Snapshot, State, Status, Update, is_job_id, new_job_id, progress_update, props_update
from bgcb.runner import run, timeout_outcome

from .store import CANCEL, POLL, Keys, Record

log = logging.getLogger("bgcb.celery")

#: The one Celery task every job runs through (as shown by ``celery inspect``/Flower).
TASK_NAME = "bgcb.run_job"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def worker_name() -> str:
    """``host:pid`` of this process (read at call time: pool processes are forked)."""
    return f"{socket.gethostname()}:{os.getpid()}"


T = TypeVar("T")

_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
#: Backends configured in this process, by store id (what a task message names).
_registry: dict[str, CeleryBackend] = {}
#: In configuration order, for ``bgcb worker`` to find the app module's Celery app.
_instances: list[CeleryBackend] = []


class StoreUnavailable(BgcbError, ConnectionError):
    """The Redis store (or the broker) cannot be reached."""


def redact(url: str) -> str:
    """``url`` without its password, for error messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def _is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def _load_celery_app(spec: Any) -> Any:
    """The Celery app given as an object or as ``"package.module:attribute"``."""
    if not isinstance(spec, str):
        return spec
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ConfigurationError(
            f"bgcb-celery: celery_app={spec!r}: give a Celery object or 'package.module:attribute' "
            "(for example 'myapp.tasks:celery')."
        )
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"bgcb-celery: cannot load celery_app={spec!r}: {exc}. Check the module path and name.") from exc
    return obj


def _run_job(job_id: str, job: dict[str, Any], store: str = "") -> None:
    """The body of ``bgcb.run_job``: hand the job to the backend that sent it."""
    backend = _registry.get(store)
    if backend is None and len({id(b) for b in _registry.values()}) == 1:
        backend = next(iter(_registry.values()))
    if backend is None:
        raise RuntimeError(
            f"bgcb-celery: this worker has no bgcb backend for store {store!r} (job {job_id}). Start it with "
            "`bgcb worker APP_MODULE` or `celery -A APP_MODULE:celery_app worker`, where APP_MODULE builds "
            "bgcb.manager('celery', ...) with the same options as the web app."
        )
    backend.execute(job_id, job)


class CeleryBackend:
    """The ``celery`` backend (distribution ``bgcb-celery``); options in :meth:`bgcb_options`."""

    def __init__(self) -> None:
        self.closed = False
        self.celery: Any = None
        self.redis: Any = None
        self.keys = Keys("bgcb")
        self.store_url = DEFAULT_REDIS
        self.broker_url = DEFAULT_REDIS
        self.queue = "bgcb"
        self.store_id = ""
        self._hook: Any = None
        self._options: dict[str, Any] = {}
        self._poll: Any = None
        self._cancel: Any = None
        self._secret: bytes | None = None
        self._outage_since: float | None = None
        self._last_outage = 0.0
        self._timers: set[threading.Timer] = set()
        self._own_app = False

    # -- configuration ---------------------------------------------------------------

    @hookimpl
    def bgcb_options(self) -> dict[str, Any]:
        return {
            # A Celery app object or "module:attribute"; None builds one from broker_url.
            "celery_app": None,
            # Broker for the app bgcb builds; default $REDIS_URL, else redis://127.0.0.1:6379/0.
            "broker_url": None,
            # The Redis store for job state; default $REDIS_URL, else a Redis broker_url, else localhost.
            "result_url": None,
            "prefix": "bgcb",
            # Celery queue of the jobs; "" = "bgcb" for a built app, the app's default queue otherwise.
            "queue": "",
            "result_ttl": 3600.0,
            "job_ttl": 86400.0,
            "heartbeat": 1.0,
            "heartbeat_ttl": 3.0,
            "cancel_grace": 0.3,
            "store_retry": 60.0,
            "outage_grace": 30.0,
            "redis_ack_emulation": False,
            "concurrency": 0,
            "pool": "prefork",
            "loglevel": "INFO",
            "worker_args": "--without-gossip --without-mingle",
        }

    @hookimpl
    def bgcb_configure(self, options: dict[str, Any], hook: Any) -> None:
        self._options = options
        self._hook = hook
        env_redis = os.environ.get("REDIS_URL") or None
        given = options.get("celery_app")
        for name in ("result_ttl", "job_ttl", "heartbeat", "heartbeat_ttl", "store_retry"):
            if float(options[name]) <= 0:
                raise ConfigurationError(f"bgcb-celery: option {name}={options[name]!r} must be a positive number of seconds.")
        if float(options["heartbeat_ttl"]) <= float(options["heartbeat"]):
            raise ConfigurationError(
                f"bgcb-celery: heartbeat_ttl ({options['heartbeat_ttl']}) must be longer than heartbeat "
                f"({options['heartbeat']}), for example three times as long."
            )
        if given is not None:
            self.celery = _load_celery_app(given)
            if not hasattr(self.celery, "send_task") or not hasattr(self.celery, "task"):
                raise ConfigurationError(f"bgcb-celery: celery_app={given!r} is not a Celery application.")
            self.broker_url = str(self.celery.conf.broker_url or DEFAULT_REDIS)
            self.queue = options["queue"] or self.celery.conf.task_default_queue or "celery"
        else:
            self.broker_url = options["broker_url"] or env_redis or DEFAULT_REDIS
            self.queue = options["queue"] or "bgcb"
            self.celery = self._build_app(self.broker_url, options)
            self._own_app = True
        self.store_url = (
            options["result_url"] or env_redis or (self.broker_url if _is_redis_url(self.broker_url) else None) or DEFAULT_REDIS
        )
        if not _is_redis_url(self.store_url):
            raise ConfigurationError(
                f"bgcb-celery: result_url={redact(self.store_url)!r} is not a Redis URL; bgcb-celery keeps job state in "
                "Redis. Set BGCB_CELERY_RESULT_URL (or REDIS_URL) to redis://host:port/db."
            )
        self.keys = Keys(options["prefix"])
        self.redis = redis.Redis.from_url(
            self.store_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=10, client_name="bgcb-celery"
        )
        self._poll = self.redis.register_script(POLL)
        self._cancel = self.redis.register_script(CANCEL)
        digest = hashlib.sha256(self.store_url.encode()).hexdigest()[:10]
        self.store_id = f"{options['prefix']}@{digest}"  # names the store in messages without its password
        self.celery.task(
            name=TASK_NAME,
            ignore_result=True,
            acks_late=True,
            reject_on_worker_lost=False,
            serializer="json",
            shared=False,
        )(_run_job)
        _registry[self.store_id] = self
        _instances.append(self)

    @staticmethod
    def _build_app(broker: str, options: dict[str, Any]) -> Any:
        from celery import Celery

        app = Celery("bgcb", broker=broker, set_as_current=False)
        conf: dict[str, Any] = {
            "task_serializer": "json",
            "accept_content": ["json"],
            "task_ignore_result": True,
            "task_default_queue": options["queue"] or "bgcb",
            # A worker holds a message only while it runs its job: nothing waits in a dead worker.
            "worker_prefetch_multiplier": 1,
            "task_acks_late": True,
            "task_reject_on_worker_lost": False,
            "broker_connection_retry_on_startup": True,
            "worker_hijack_root_logger": False,
        }
        if _is_redis_url(broker):
            conf["broker_transport_options"] = {"ack_emulation": bool(options["redis_ack_emulation"])}
        app.conf.update(conf)
        return app

    @hookimpl
    def bgcb_close(self) -> None:
        self.closed = True
        for timer in list(self._timers):
            timer.cancel()
        if _registry.get(self.store_id) is self:
            del _registry[self.store_id]
        if self in _instances:
            _instances.remove(self)
        if self.redis is not None:
            self.redis.close()
        if self._own_app and self.celery is not None:
            self.celery.close()  # its broker connection pools; a user's app is the user's to close

    @hookimpl
    def bgcb_run_worker(self, app_module: str, options: dict[str, Any]) -> bool:
        """Run a Celery worker for the Celery app of the managers ``app_module`` built."""
        mine = [b for b in _instances if b is not self and not b.closed] or [self]
        apps = {id(b.celery): b.celery for b in mine}
        if len(apps) > 1:
            raise ConfigurationError(
                f"bgcb-celery: {app_module} builds managers on {len(apps)} different Celery apps; start one worker per "
                "app with `celery -A MODULE:ATTRIBUTE worker` (see bgcb_celery.celery_app_of)."
            )
        app = next(iter(apps.values()))
        queues = sorted({b.queue for b in mine})
        argv = ["worker", f"--pool={options['pool']}", f"--loglevel={options['loglevel']}", "-Q", ",".join(queues)]
        if int(options["concurrency"]) > 0:
            argv.append(f"--concurrency={int(options['concurrency'])}")
        argv += shlex.split(str(options["worker_args"] or ""))
        log.info("bgcb-celery: starting a Celery worker for %s: celery %s", app_module, " ".join(argv))
        app.worker_main(argv=argv)
        return True

    # -- Redis access with clear errors ------------------------------------------------------

    def _unreachable(self, exc: Exception) -> str:
        return (
            f"bgcb-celery: cannot reach the Redis job store at {redact(self.store_url)} ({exc}). Start Redis there, or "
            "point BGCB_CELERY_RESULT_URL (or REDIS_URL, or bgcb.manager(result_url=...)) to a running Redis. "
            "The app keeps serving; background callbacks fail until Redis is back."
        )

    def _call(self, fn: Callable[[], T]) -> T:
        """Run one store operation from the web process; one retry on a fresh connection."""
        try:
            result = fn()
        except _REDIS_ERRORS:
            self._last_outage = time.time()
            try:
                result = fn()
            except _REDIS_ERRORS as exc:
                self._last_outage = time.time()
                self._outage_since = self._outage_since or time.time()
                raise StoreUnavailable(self._unreachable(exc)) from exc
        self._outage_since = None
        return result

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run one store operation in a worker, retrying through a Redis restart."""
        deadline = time.monotonic() + float(self._options["store_retry"])
        pause = 0.05
        while True:
            try:
                return fn()
            except _REDIS_ERRORS as exc:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(self._unreachable(exc)) from exc
                log.warning("bgcb-celery: Redis at %s unavailable (%s); retrying", redact(self.store_url), exc)
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    # -- jobs (web process) ------------------------------------------------------------------------

    @hookimpl
    def bgcb_submit(self, job: Job) -> str:
        job_id = new_job_id()
        payload = job.to_json()
        now = time.time()

        def enqueue() -> None:
            if random.random() < 0.01:  # forget queue entries whose message never arrived
                pipe = self.redis.pipeline(transaction=False)
                pipe.zadd(self.keys.queue, {job_id: now})
                pipe.zremrangebyscore(self.keys.queue, "-inf", now - float(self._options["job_ttl"]))
                pipe.execute()
            else:
                self.redis.zadd(self.keys.queue, {job_id: now})

        self._call(enqueue)
        options: dict[str, Any] = {}
        if job.timeout:
            options = {"soft_time_limit": float(job.timeout), "time_limit": float(job.timeout) + 2.0}
        try:
            self.celery.send_task(
                TASK_NAME,
                args=[job_id, payload],
                kwargs={"store": self.store_id},
                task_id=job_id,
                queue=self.queue,
                serializer="json",
                ignore_result=True,
                # Shown by Flower/`celery inspect` instead of the whole payload (cheaper, and
                # user inputs stay out of monitoring tools and logs).
                argsrepr=f"({job_id!r}, <job for callback {job.callback[:12]}>)",
                kwargsrepr=f"{{'store': {self.store_id!r}}}",
                **options,
            )
        except Exception as exc:
            try:
                self.redis.zrem(self.keys.queue, job_id)
            except redis.RedisError:
                pass
            raise StoreUnavailable(
                f"bgcb-celery: cannot send the job to the Celery broker at {redact(self.broker_url)} ({exc!r}). "
                "Start the broker or set BGCB_CELERY_BROKER_URL (or the celery_app option) to a running one."
            ) from exc
        return job_id

    def _snapshot(self, job_id: str, consume: bool) -> Snapshot:
        if not is_job_id(job_id):
            return Snapshot(Status.unknown())
        now = time.time()
        quiet = float(self._options["heartbeat_ttl"]) + float(self._options["heartbeat"]) + 1.0
        keys = [self.keys.rec(job_id), self.keys.upd(job_id), self.keys.hb(job_id), self.keys.queue]
        lost = json.dumps({"finished_at": now, "reason": "lost", "heartbeat_ttl": float(self._options["heartbeat_ttl"])})
        late = json.dumps({"finished_at": now, "reason": "timeout"})
        # Right after Redis came back, heartbeats may have lapsed during the outage: do not call workers dead yet.
        may_declare = 1 if now - self._last_outage > quiet else 0
        hb_ms = int(float(self._options["heartbeat_ttl"]) * 1000)
        args = [job_id, repr(now), int(consume), may_declare, lost, late, "1.0", hb_ms]
        try:
            reply = self._call(lambda: self._poll(keys=keys, args=args))
        except StoreUnavailable:
            if consume and self._outage_since and time.time() - self._outage_since < float(self._options["outage_grace"]):
                log.warning("bgcb-celery: Redis unavailable; telling the browser job %s is still running", job_id)
                return Snapshot(Status(State.RUNNING))
            raise
        state = reply[0]
        if state == "unknown":
            return Snapshot(Status.unknown())
        if state == "queued":
            return Snapshot(Status(State.QUEUED, position=int(reply[3]), submitted_at=float(reply[4])))
        if state == "corrupt":
            log.error("bgcb-celery: job %s has an unreadable record: %r", job_id, reply[1][:80])
            return Snapshot(Status.unknown())
        record = Record.decode(reply[1])
        updates = [json.loads(u) for u in (reply[2] or [])]
        outcome = record.outcome if record.state.terminal else None
        if len(reply) > 3 and reply[3] and outcome is not None and self._hook is not None:
            job = Job(callback="", args=None)
            self._hook.bgcb_job_finished(job_id=job_id, job=job, outcome=outcome, seconds=now - (record.started_at or now))
        return Snapshot(record.status(), updates, outcome)

    @hookimpl
    def bgcb_poll(self, job_id: str) -> Snapshot:
        return self._snapshot(job_id, consume=True)

    @hookimpl
    def bgcb_status(self, job_id: str) -> Status:
        return self._snapshot(job_id, consume=False).status

    @hookimpl
    def bgcb_progress(self, job_id: str) -> list[Update]:
        if not is_job_id(job_id):
            return []
        raw = self._call(lambda: self.redis.lpop(self.keys.upd(job_id), 1000)) or []
        return [json.loads(u) for u in raw]

    @hookimpl
    def bgcb_result(self, job_id: str) -> Outcome | None:
        if not is_job_id(job_id):
            return None
        raw = self._call(lambda: self.redis.get(self.keys.rec(job_id)))
        if not raw:
            return None
        record = Record.decode(raw)
        return record.outcome if record.state.terminal else None

    @hookimpl
    def bgcb_cancel(self, job_id: str) -> bool:
        if not is_job_id(job_id):
            return False
        body = json.dumps({"finished_at": time.time(), "outcome": Outcome.cancelled().to_json()})
        keys = [self.keys.rec(job_id), self.keys.queue]
        was = self._call(lambda: self._cancel(keys=keys, args=[job_id, body, int(float(self._options["job_ttl"]))]))
        if was == "running":
            timer = threading.Timer(float(self._options["cancel_grace"]), self._force_stop, args=(job_id,))
            timer.daemon = True
            self._timers.add(timer)
            timer.start()
        return was in ("queued", "running")

    def _force_stop(self, job_id: str) -> None:
        """Terminate a cancelled job's process unless it stopped cooperatively meanwhile."""
        self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
        try:
            raw = self.redis.get(self.keys.rec(job_id))
            if raw:
                record = Record.decode(raw)
                if record.state is State.CANCELLED and record.body.get("stopped"):
                    return
            self.celery.control.revoke(job_id, terminate=True, signal="SIGTERM")
        except Exception:  # a timer thread: log, never raise
            log.exception("bgcb-celery: could not terminate cancelled job %s", job_id)

    @hookimpl
    def bgcb_cached(self, cache_key: str) -> Outcome | None:
        raw = self._call(lambda: self.redis.get(self.keys.cache(cache_key)))
        return Outcome.from_json(json.loads(raw)) if raw else None

    @hookimpl
    def bgcb_jobs(self) -> list[tuple[str, Status]]:
        queued = self._call(lambda: self.redis.zrange(self.keys.queue, 0, -1, withscores=True))
        listing = [(job_id, Status(State.QUEUED, position=i, submitted_at=score)) for i, (job_id, score) in enumerate(queued)]
        prefix = self.keys.hb("")
        running = [key[len(prefix) :] for key in self._call(lambda: list(self.redis.scan_iter(match=prefix + "*", count=500)))]
        for job_id in running:
            status = self.bgcb_status(job_id)
            if status.state is State.RUNNING:
                listing.append((job_id, status))
        return listing

    @hookimpl
    def bgcb_shared_secret(self, generate: Callable[[], bytes]) -> bytes:
        if self._secret is None:

            def fetch() -> str:
                pipe = self.redis.pipeline(transaction=False)
                pipe.set(self.keys.secret, base64.b64encode(generate()).decode(), nx=True)
                pipe.get(self.keys.secret)
                return pipe.execute()[1]

            self._secret = base64.b64decode(self._call(fetch))
        return self._secret

    # -- jobs (worker process) ------------------------------------------------------------------

    def execute(self, job_id: str, payload: dict[str, Any]) -> None:
        """Claim, run and record one job; called by the ``bgcb.run_job`` task."""
        job = Job.from_json(payload)
        started = time.time()
        life = int(float(self._options["job_ttl"]))
        running = Record(State.RUNNING, job.submitted_at, started, job.timeout, None, life, {"worker": worker_name()})
        hb_ms = int(float(self._options["heartbeat_ttl"]) * 1000)

        def claim() -> bool:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.keys.rec(job_id), running.encode(), nx=True, ex=life)
            pipe.zrem(self.keys.queue, job_id)
            return bool(pipe.execute()[0])

        try:
            claimed = self._retry(claim)
        except StoreUnavailable as exc:
            from celery.exceptions import Reject

            log.error("bgcb-celery: could not claim job %s (%s); returning it to the queue", job_id, exc)
            raise Reject(str(exc), requeue=True) from exc
        if not claimed:
            log.info("bgcb-celery: job %s was cancelled before it started (or ran already); skipped", job_id)
            return
        channel = _Channel(self, job_id)
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job_id, stop, hb_ms), name=f"bgcb-heartbeat-{job_id[:6]}", daemon=True)
        beat.start()
        clock = time.monotonic()
        try:
            outcome = run(job, channel, self._hook, job_id)
        finally:
            stop.set()
            beat.join()
        if job.timeout and time.monotonic() - clock >= float(job.timeout) - 0.05 and outcome.kind == "error":
            outcome = timeout_outcome(float(job.timeout))  # Celery's soft time limit interrupted it
        self._finish(job_id, job, started, outcome, channel.count)

    def _finish(self, job_id: str, job: Job, started: float, outcome: Outcome, count: int) -> None:
        body = {"finished_at": time.time(), "outcome": outcome.to_json(), "worker": worker_name()}
        try:
            final = Record(outcome.state, job.submitted_at, started, job.timeout, count, None, body).encode()
        except (TypeError, ValueError) as exc:
            failure = Outcome.failure(f"bgcb-celery could not store the outcome as JSON: {exc}")
            failed = {**body, "outcome": failure.to_json()}
            final = Record(State.FAILED, job.submitted_at, started, job.timeout, count, None, failed)
            final = final.encode()
        cache = job.cache and outcome.kind in ("value", "no_update")
        ttl = int(float(self._options["result_ttl"]))

        def store() -> str | None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.keys.rec(job_id), final, xx=True, get=True, ex=ttl)
            if cache:
                expire = int(job.cache_expire) if job.cache_expire else int(float(self._options["job_ttl"]))
                pipe.set(self.keys.cache(job.cache_key), json.dumps(outcome.to_json()), ex=max(1, expire))
            return pipe.execute()[0]

        old = self._retry(store)
        if old and not old.startswith("v1|running|"):
            # Cancelled, timed out or declared lost meanwhile: that state stands. Mark a
            # cancelled job as stopped so that the web process need not terminate it.
            previous = Record.decode(old)
            if previous.state is State.CANCELLED:
                previous.body["stopped"] = True
            self._retry(lambda: self.redis.set(self.keys.rec(job_id), previous.encode(), xx=True, keepttl=True))

    def _beat(self, job_id: str, stop: threading.Event, hb_ms: int) -> None:
        interval = float(self._options["heartbeat"])
        while not stop.wait(interval):
            try:
                self.redis.set(self.keys.hb(job_id), worker_name(), px=hb_ms)
            except redis.RedisError as exc:
                log.warning("bgcb-celery: heartbeat for job %s failed: %s", job_id, exc)


class _Channel:
    """Where the runner writes progress and set_props; reads the cancel flag."""

    #: Seconds a cancel check stays fresh (each update refreshes it for free).
    FRESH = 0.2

    def __init__(self, backend: CeleryBackend, job_id: str) -> None:
        self.backend = backend
        self.job_id = job_id
        self.count = 0
        # The claim just saw the job queued: no need to ask again for FRESH seconds
        # (a no-op job then costs no read; _finish sees a cancel that came meanwhile).
        self._cancelled = False
        self._checked = time.monotonic()

    def _note(self, raw: str | None) -> None:
        self._cancelled = not (raw or "").startswith("v1|running|")
        self._checked = time.monotonic()

    def _push(self, update: Update) -> None:
        b = self.backend
        data = json.dumps(update, separators=(",", ":"))
        upd, rec = b.keys.upd(self.job_id), b.keys.rec(self.job_id)

        def push() -> list[Any]:
            pipe = b.redis.pipeline(transaction=False)
            pipe.rpush(upd, data)
            pipe.get(rec)
            return pipe.execute()

        length, raw = b._retry(push)
        if length == 1:  # a new list: give it the job's lifetime
            b._retry(lambda: b.redis.expire(upd, int(float(b._options["job_ttl"]))))
        self.count += 1
        self._note(raw)

    def progress(self, value: list[Any]) -> None:
        self._push(progress_update(value))

    def set_props(self, component_id: str, props: dict[str, Any]) -> None:
        self._push(props_update(component_id, props))

    def cancelled(self) -> bool:
        if time.monotonic() - self._checked > self.FRESH:
            b = self.backend
            self._note(b._retry(lambda: b.redis.get(b.keys.rec(self.job_id))))
        return self._cancelled
