"""bgcb-celery's options: their defaults, checks, the URLs they resolve to, and the Celery app.

Everything here runs once, when a backend is configured; nothing touches
Redis or the broker (connections open lazily on first use).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shlex
import urllib.parse
from dataclasses import dataclass
from typing import Any

from bgcb.errors import ConfigurationError

from . import defaults


def options() -> dict[str, Any]:
    """The backend's own options and their defaults (the core adds its lifecycle options)."""
    return {
        # A Celery app object or "module:attribute"; None builds one from broker_url.
        "celery_app": None,
        # Broker for the app bgcb builds; default $REDIS_URL, else redis://127.0.0.1:6379/0.
        "broker_url": None,
        # The Redis store for job state; default $REDIS_URL, else a Redis broker_url, else localhost.
        "result_url": None,
        "prefix": defaults.PREFIX,
        # Celery queue of the jobs; "" = "bgcb" for a built app, the app's default queue otherwise.
        "queue": "",
        "heartbeat": defaults.HEARTBEAT,
        "heartbeat_ttl": defaults.HEARTBEAT_TTL,
        "store_retry": defaults.STORE_RETRY,
        "outage_grace": defaults.OUTAGE_GRACE,
        "redis_ack_emulation": False,
        # Push task messages onto the broker's Redis list with the job's record (one round trip) when the
        # broker is the store's Redis; False sends them through Celery (its publish signals fire).
        "direct_publish": True,
        # `bgcb worker`:
        "concurrency": defaults.CONCURRENCY,
        "pool": defaults.POOL,
        "loglevel": defaults.LOGLEVEL,
        "worker_args": defaults.WORKER_ARGS,
    }


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


def is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


@dataclass(frozen=True)
class Timing:
    """The store's clocks, in seconds (checked: positive, heartbeat_ttl > heartbeat)."""

    heartbeat: float
    heartbeat_ttl: float
    store_retry: float
    outage_grace: float

    @property
    def quiet(self) -> float:
        """After an outage, how long a missing heartbeat proves nothing."""
        return self.heartbeat_ttl + self.heartbeat + defaults.QUIET_EXTRA


@dataclass
class Config:
    """The resolved configuration of one backend instance."""

    celery: Any
    own_app: bool
    broker_url: str
    store_url: str
    prefix: str
    queue: str
    timing: Timing
    direct_publish: bool = True

    @property
    def broker_list(self) -> str | None:
        """The Redis list holding the queue's messages when the broker is the store's Redis, else None."""
        if not is_redis_url(self.broker_url) or _same_redis(self.broker_url) != _same_redis(self.store_url):
            return None
        options = getattr(self.celery.conf, "broker_transport_options", None) or {}
        return str(options.get("global_keyprefix", "")) + self.queue

    @property
    def store_id(self) -> str:
        """Names the store in task messages, without its password: ``prefix@digest-of-url``."""
        return f"{self.prefix}@{hashlib.sha256(self.store_url.encode()).hexdigest()[:10]}"


def _same_redis(url: str) -> tuple[str, int | None, str]:
    """Host, port and database of a Redis URL, so that two spellings of one server compare equal."""
    parts = urllib.parse.urlsplit(url)
    host = "127.0.0.1" if parts.hostname in (None, "localhost") else parts.hostname
    try:
        port = parts.port or 6379
    except ValueError:
        port = None
    db = parts.path.strip("/") or urllib.parse.parse_qs(parts.query).get("db", ["0"])[0]
    return str(host), port, db


def timing(opts: dict[str, Any]) -> Timing:
    for name in ("heartbeat", "heartbeat_ttl", "store_retry", "outage_grace"):
        if float(opts[name]) <= 0:
            raise ConfigurationError(f"bgcb-celery: option {name}={opts[name]!r} must be a positive number of seconds.")
    if float(opts["heartbeat_ttl"]) <= float(opts["heartbeat"]):
        raise ConfigurationError(
            f"bgcb-celery: heartbeat_ttl ({opts['heartbeat_ttl']}) must be longer than heartbeat "
            f"({opts['heartbeat']}), for example three times as long."
        )
    return Timing(*(float(opts[n]) for n in ("heartbeat", "heartbeat_ttl", "store_retry", "outage_grace")))


def resolve(opts: dict[str, Any]) -> Config:
    """Check ``opts`` and build (or load) the Celery app; raises ConfigurationError with what to fix."""
    times = timing(opts)
    env_redis = os.environ.get("REDIS_URL") or None
    given = opts.get("celery_app")
    if given is not None:
        app = load_celery_app(given)
        if not hasattr(app, "send_task") or not hasattr(app, "task"):
            raise ConfigurationError(f"bgcb-celery: celery_app={given!r} is not a Celery application.")
        broker = str(app.conf.broker_url or defaults.REDIS_URL)
        queue = opts["queue"] or app.conf.task_default_queue or "celery"
        own = False
    else:
        broker = opts["broker_url"] or env_redis or defaults.REDIS_URL
        queue = opts["queue"] or defaults.QUEUE
        app = build_celery_app(broker, queue, bool(opts["redis_ack_emulation"]))
        own = True
    store = opts["result_url"] or env_redis or (broker if is_redis_url(broker) else None) or defaults.REDIS_URL
    if not is_redis_url(store):
        if own:
            app.close()
        raise ConfigurationError(
            f"bgcb-celery: result_url={redact(store)!r} is not a Redis URL; bgcb-celery keeps job state in "
            "Redis. Set BGCB_CELERY_RESULT_URL (or REDIS_URL) to redis://host:port/db."
        )
    return Config(app, own, broker, store, str(opts["prefix"]), queue, times, bool(opts.get("direct_publish", True)))


def load_celery_app(spec: Any) -> Any:
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
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"bgcb-celery: cannot load celery_app={spec!r}: {exc}. Check the module path and name.") from exc
    return obj


def build_celery_app(broker: str, queue: str, ack_emulation: bool) -> Any:
    """The Celery app bgcb makes when the user gives none: JSON only, no result backend, late acks."""
    from celery import Celery

    app = Celery("bgcb", broker=broker, set_as_current=False)
    conf: dict[str, Any] = {
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_default_queue": queue,
        # A worker holds a message only while it runs its job: nothing waits in a dead worker.
        "worker_prefetch_multiplier": 1,
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
    }
    if is_redis_url(broker):
        conf["broker_transport_options"] = {"ack_emulation": ack_emulation}
    app.conf.update(conf)
    return app


def worker_argv(opts: dict[str, Any], queue: str) -> list[str]:
    """``celery worker`` arguments for ``bgcb worker``, from the worker options."""
    argv = ["worker", f"--pool={opts['pool']}", f"--loglevel={opts['loglevel']}", "-Q", queue]
    if int(opts["concurrency"]) > 0:
        argv.append(f"--concurrency={int(opts['concurrency'])}")
    return argv + shlex.split(str(opts["worker_args"] or ""))
