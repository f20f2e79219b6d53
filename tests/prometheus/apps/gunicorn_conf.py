"""gunicorn settings for prometheus_client's multiprocess mode: a dead web worker's live gauges are dropped."""

from __future__ import annotations

from prometheus_client import multiprocess


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
