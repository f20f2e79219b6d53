"""What a scrape answers, in single-process and multiprocess mode, and the ``bgcb worker --metrics-port`` server.

With ``PROMETHEUS_MULTIPROC_DIR`` set (before any process imports
prometheus_client), every process writes its counters and histograms to files
there and a scrape of any one process sums them all: the only way gunicorn's
web workers, a diskcache pool and Celery's prefork children add up to one
number. The backend gauges are added by the scraping process alone.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from .gauges import BackendGauges

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: Address ``bgcb worker --metrics-port`` binds (prometheus_client's default: every interface).
ENV_ADDR = "BGCB_PROMETHEUS_ADDR"


#: The queued/running gauges over this process's loaded backends.
GAUGES = BackendGauges()
_lock = threading.Lock()
_registry_lock = threading.Lock()
_multiprocess: CollectorRegistry | None = None
_served: dict[int, str] = {}


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, or None (single-process mode)."""
    return os.environ.get(ENV_DIR) or os.environ.get(ENV_DIR.lower()) or None


def registry() -> CollectorRegistry:
    """The registry a scrape of this process reads: every process's files in multiprocess mode, else this process's."""
    global _multiprocess
    if multiprocess_dir() is None:
        return REGISTRY  # GAUGES is registered there at import (see the end of this module)
    with _registry_lock:
        if _multiprocess is None:
            built = CollectorRegistry()
            MultiProcessCollector(built)
            built.register(GAUGES)
            _multiprocess = built
        return _multiprocess


def render(accept: str | None = None) -> tuple[bytes, str]:
    """The exposition body and its content type (OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry()), content_type


def serve(port: int) -> str:
    """Serve :func:`registry` on ``port`` (``bgcb worker --metrics-port``), once per port and process; say where.

    A worker runs jobs in child processes (the diskcache pool, Celery's
    prefork pool), so it needs multiprocess mode to count them: without
    ``PROMETHEUS_MULTIPROC_DIR`` it makes a private one for itself and its
    children, removed when it exits.
    """
    with _lock:
        if port in _served:
            return _served[port]
        private = multiprocess_dir() is None
        if private:
            _private_dir()
        addr = os.environ.get(ENV_ADDR, "0.0.0.0")
        started = start_http_server(port, addr=addr, registry=registry())
        httpd = started[0] if isinstance(started, tuple) else None
        if httpd is not None:  # forked workers must not keep the port open after this process ends
            os.register_at_fork(after_in_child=httpd.socket.close)
        why = f"private to this worker: {ENV_DIR} is not set" if private else "shared"
        _served[port] = f"metrics on http://{addr}:{port}/metrics (multiprocess directory {multiprocess_dir()}, {why})"
        return _served[port]


def _private_dir() -> None:
    """Switch this process (and the children it forks or spawns) to multiprocess mode on a fresh directory.

    prometheus_client picks its value class at import; our metrics all have
    labels, and a labelled child takes the class in force when it is first
    used, which in a worker is after this (no job has run yet).
    """
    from prometheus_client import values

    directory = tempfile.mkdtemp(prefix="bgcb-prometheus-")
    os.environ[ENV_DIR] = directory
    values.ValueClass = values.MultiProcessValue()
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not in a forked child that exits normally
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)


if multiprocess_dir() is None:
    REGISTRY.register(GAUGES)  # so that any exporter of the default registry shows the gauges too
