"""bgcb-opentelemetry: OpenTelemetry traces of bgcb jobs, from the submitting request to the worker's run.

Installed, it is found through the ``bgcb.plugins`` entry point and traces with the global tracer
provider: configure the OpenTelemetry SDK and an exporter in the web process and in the workers.
"""

from .observer import TRACER_NAME, VERSION, OpenTelemetryObserver

__all__ = ["TRACER_NAME", "OpenTelemetryObserver", "__version__"]
__version__ = VERSION
