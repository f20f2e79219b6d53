"""``python -m bgcb_diskcache pool CONFIG_JSON``: the pool process a web process autostarts;
``python -m bgcb_diskcache worker CONFIG_JSON``: a worker the portable path's supervisor spawns.

It takes the directory's supervisor lock (waiting as a standby while another
pool holds it), imports the app as a worker process would (inside
``bgcb.provider.role("worker")``, so the app's own managers start nothing),
loads the backend with the web process's options, and becomes the supervisor
of its workers. Jobs run through the core's lifecycle on that backend.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import types
from typing import TYPE_CHECKING, Any

from bgcb import provider

from . import defaults, worker
from .portable import use_portable
from .store import Store
from .supervisor import pool_lock

if TYPE_CHECKING:
    from bgcb.provider import Backend

log = logging.getLogger("bgcb.diskcache")


def import_app(app: str) -> None:
    """Import the app so Dash registers its callbacks: a module name, or the
    path of a script, run as ``__mp_main__`` so its ``if __name__ ==
    "__main__"`` block (``app.run()``) does not run."""
    if app.endswith(".py") or os.sep in app:
        # multiprocessing aliases __mp_main__ to __main__ when first imported:
        # import it now, or the app's own imports would undo the module below.
        import multiprocessing  # noqa: F401

        path = os.path.abspath(app)
        module = types.ModuleType("__mp_main__")
        module.__file__ = path
        module.__builtins__ = __builtins__  # type: ignore[attr-defined]
        sys.modules["__mp_main__"] = module
        sys.path.insert(0, os.path.dirname(path))
        with open(path, encoding="utf-8") as fh:
            code = compile(fh.read(), path, "exec")
        exec(code, module.__dict__)
    else:
        importlib.import_module(app)


def import_failed(app: str, exc: BaseException) -> str:
    """Why every job fails when the pool cannot import the app."""
    return (
        f"The bgcb-diskcache worker pool could not import the app {app!r}, so it cannot run callbacks: "
        f"{type(exc).__name__}: {exc}. Fix the error, then restart the app (or `bgcb worker APP_MODULE`)."
    )


def _load(config: dict[str, Any], import_the_app: bool = True) -> tuple[Backend, str | None]:
    """The backend as the app's managers configure it in a worker process, and why the app
    could not be imported (None when it was, or when ``import_the_app`` is false)."""
    os.environ[defaults.ENV_IN_POOL] = "1"
    sys.path[:0] = [p for p in config.get("sys_path", []) if p not in sys.path]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    broken = None
    with provider.role("worker"):
        if import_the_app:
            try:
                import_app(config["app"])
            except (Exception, SystemExit) as exc:  # the reason must reach the browser
                log.exception("bgcb-diskcache: the worker pool could not import the app %r", config["app"])
                broken = import_failed(config["app"], exc)
        backend = provider.load(config["name"], **config["options"])
    return backend, broken


def main(argv: list[str] | None = None) -> int:
    """``pool CONFIG``: take the directory's lock, then supervise workers until stopped."""
    parser = argparse.ArgumentParser(prog="python -m bgcb_diskcache pool")
    parser.add_argument("config", help="JSON: name, options, app, parent, sys_path (written by the web process)")
    config = json.loads(parser.parse_args(argv).config)
    options, parent = config["options"], config.get("parent")
    os.makedirs(options["directory"], exist_ok=True)
    portable = use_portable(options.get("portable", defaults.PORTABLE))
    lease = (Store(options["directory"]), float(options.get("dead_after", defaults.DEAD_AFTER))) if portable else None
    with pool_lock(options["directory"], parent, lease) as owner:
        # spawned workers import the app themselves: the supervisor has no use for it
        backend, broken = _load(config, import_the_app=not portable)
        try:
            backend.plugin.supervisor(parent=parent, broken=broken, app=config["app"], owner=owner).run()  # type: ignore[attr-defined]
        finally:
            backend.close()
    return 0


def worker_main(argv: list[str]) -> int:
    """``worker CONFIG`` (the portable path): one spawned worker of the supervisor named in CONFIG."""
    config = json.loads(argv[0])
    backend, broken = _load(config)
    try:
        worker.work(backend, backend.plugin.store, int(config["supervisor"]), broken, portable=True)  # type: ignore[attr-defined]
    finally:
        backend.close()
    return 0
