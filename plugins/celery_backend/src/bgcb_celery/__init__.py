"""bgcb-celery: Dash background callbacks on Celery workers, with job state in Redis.

    import bgcb
    manager = bgcb.manager("celery")                  # or BGCB_BACKEND=celery
    app = Dash(__name__, background_callback_manager=manager)
    celery_app = bgcb_celery.celery_app_of(manager)   # for `celery -A app:celery_app worker`

Workers: ``bgcb worker app`` or ``celery -A app:celery_app worker``.
"""

from __future__ import annotations

from bgcb.contract import built_for

built_for("bgcb-celery", 2)  # a core of another backend contract is refused here, at import
# ruff: noqa: E402 (the imports below come after the contract check)

from typing import Any

from .backend import CeleryBackend
from .defaults import TASK_NAME
from .store import StoreUnavailable

__all__ = ["TASK_NAME", "CeleryBackend", "StoreUnavailable", "celery_app_of"]


def celery_app_of(manager: Any = None) -> Any:
    """The Celery app behind a bgcb manager on the ``celery`` backend.

    Export it from the app module so that ``celery -A app_module:celery_app worker``
    runs the same app, with the ``bgcb.run_job`` task registered. Without a
    manager, the process-wide default ``celery`` backend's app is returned.
    """
    if manager is None:
        from bgcb.provider import load

        backend = load("celery").plugin
    else:
        backend = getattr(getattr(manager, "backend", None), "plugin", None)
    if not isinstance(backend, CeleryBackend):
        raise TypeError(
            f"bgcb-celery: {manager!r} is not a bgcb manager on the 'celery' backend; make it with bgcb.manager('celery')."
        )
    return backend.celery
