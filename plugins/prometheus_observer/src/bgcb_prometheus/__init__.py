"""bgcb-prometheus: Prometheus metrics of bgcb's background callbacks.

Installed, it observes every job in every process (entry-point group
``bgcb.plugins``); ``bgcb_prometheus.mount(app)`` serves ``/metrics`` on the Dash
server, and ``bgcb worker APP --metrics-port N`` serves them from a worker.
"""

from __future__ import annotations

from bgcb.contract import built_for

built_for("bgcb-prometheus", 2)  # a core of another plugin contract is refused here, at import
# ruff: noqa: E402 (the imports below come after the contract check)

from .exposition import GAUGES, multiprocess_dir, registry, render, serve
from .gauges import BackendGauges
from .mount import mount
from .observer import PrometheusObserver, label

#: The observer the entry point registers in every process (prometheus_client's default registry).
OBSERVER = PrometheusObserver()

__all__ = [
    "GAUGES",
    "OBSERVER",
    "BackendGauges",
    "PrometheusObserver",
    "label",
    "mount",
    "multiprocess_dir",
    "registry",
    "render",
    "serve",
]
