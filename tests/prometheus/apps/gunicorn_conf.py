"""gunicorn settings for prometheus_client's multiprocess mode: a dead web worker's live gauges are dropped."""

from __future__ import annotations

import os

from prometheus_client import multiprocess


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # (one test runs without it)
        multiprocess.mark_process_dead(worker.pid)
