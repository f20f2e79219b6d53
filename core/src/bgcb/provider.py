"""Finding backends by name through entry points, and loading one.

The core knows no backend: it reads the entry-point group ``bgcb.backends``
and picks one by name — the argument, else ``BGCB_BACKEND``, else
``diskcache`` when installed — the way ``keyring`` picks its backend. Loaded
backends are kept per ``(name, options)`` so that every manager of a process
shares one, and so that ``bgcb worker APP`` finds the one the app configured.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import contract, hookspecs, observers
from .checks import Check
from .errors import BackendLoadError, BackendNotFound, BgcbError
from .lifecycle import Lifecycle
from .options import resolve_options, split

BACKEND_GROUP = "bgcb.backends"
OBSERVER_GROUP = observers.OBSERVER_GROUP
DEFAULT_BACKEND = "diskcache"
ENV_BACKEND = "BGCB_BACKEND"

__all__ = ["Backend", "installed", "load", "loaded", "register_observer", "resolve_options", "role", "selected_name"]

_shared: dict[tuple[str, str], Backend] = {}
_shared_lock = threading.RLock()
_role: hookspecs.Role = "web"
#: Lists collecting the backends :func:`load` returns inside :func:`role` blocks.
_asked: list[list[Backend]] = []


@dataclass(frozen=True)
class BackendInfo:
    """An installed backend, as its entry point describes it."""

    name: str
    distribution: str
    version: str
    entry_point: metadata.EntryPoint

    def plugin(self) -> object:
        """The backend's plugin object: the entry point's class instantiated (or its object as it is)."""
        factory = self.entry_point.load()
        return factory() if callable(factory) else factory


def installed() -> dict[str, BackendInfo]:
    """The installed backends by name, without importing any of them."""
    found: dict[str, BackendInfo] = {}
    for ep in metadata.entry_points(group=BACKEND_GROUP):
        dist = getattr(ep, "dist", None)
        found[ep.name] = BackendInfo(ep.name, dist.metadata["Name"] if dist else "?", dist.version if dist else "?", ep)
    return dict(sorted(found.items()))


def selected_name(name: str | None = None) -> str:
    """The backend name in force: ``name``, else ``$BGCB_BACKEND``, else the default."""
    chosen = name or os.environ.get(ENV_BACKEND, "").strip()
    if chosen:
        return canonical(chosen)
    backends = installed()
    if DEFAULT_BACKEND in backends:
        return DEFAULT_BACKEND
    if not backends:
        raise BackendNotFound(
            "bgcb: no backend is installed. Install one, for example\n"
            f'  pip install "bgcb[{DEFAULT_BACKEND}]"   (embedded, no server)\n'
            f"or any bgcb-<name> distribution, then choose it with {ENV_BACKEND}=<name>."
        )
    raise BackendNotFound(
        f"bgcb: no backend chosen and the default '{DEFAULT_BACKEND}' is not "
        f"installed. Installed: {', '.join(backends)}. Set {ENV_BACKEND}=<name> "
        f"or pass bgcb.manager(backend=...), or pip install bgcb-{DEFAULT_BACKEND}."
    )


def canonical(name: str) -> str:
    """An installed backend's own spelling of ``name`` (names are case-insensitive), else ``name``."""
    if name in _names():
        return name
    return next((n for n in _names() if n.lower() == name.lower()), name)


def _names() -> list[str]:
    return list(installed())


def register_observer(plugin: object) -> None:
    """Add an observer for every backend of this process, now and later (:func:`bgcb.observers.register`)."""
    observers.register(plugin)


def unregister_observer(plugin: object) -> None:
    observers.unregister(plugin)


@contextlib.contextmanager
def role(name: hookspecs.Role) -> Iterator[list[Backend]]:
    """Configure backends loaded inside the block for ``name``; yield the list of every backend asked for in it.

    ``bgcb worker APP`` imports the app inside ``role("worker")`` and serves
    the backend the app's managers asked for (shared instances included).
    """
    global _role
    before, _role = _role, name
    asked: list[Backend] = []
    _asked.append(asked)
    try:
        yield asked
    finally:
        _role = before
        _asked.remove(asked)


def current_role() -> hookspecs.Role:
    return _role


def load(name: str | None = None, *, fresh: bool = False, **options: Any) -> Backend:
    """Load, check and configure the backend ``name`` (see :func:`selected_name`).

    Managers in one process that ask for the same backend and options share
    one instance (one store connection, one worker pool); ``fresh=True``
    makes a new one that is not shared.
    """
    chosen = selected_name(name)
    key = (chosen, repr(sorted(options.items())))
    with _shared_lock:
        if fresh or key not in _shared or _shared[key].closed:
            backend = _load(chosen, options)
            if fresh:
                return backend
            _shared[key] = backend
        backend = _shared[key]
        for asked in _asked:
            if backend not in asked:
                asked.append(backend)
        return backend


def loaded() -> list[Backend]:
    """The shared backend instances of this process that are open, in load order."""
    with _shared_lock:
        return [b for b in _shared.values() if not b.closed]


def _load(chosen: str, options: dict[str, Any]) -> Backend:
    backends = installed()
    info = backends.get(chosen)
    if info is None:
        listing = ", ".join(f"{b.name} ({b.distribution} {b.version})" for b in backends.values())
        raise BackendNotFound(
            f"bgcb: no backend named '{chosen}'. Installed backends: {listing or 'none'}. "
            f"To use '{chosen}', install its distribution: pip install bgcb-{chosen}"
        )
    try:
        plugin = info.plugin()
    except BgcbError:
        raise  # the backend's own clear refusal (bgcb.contract.built_for)
    except Exception as exc:
        raise BackendLoadError(
            f"bgcb: the backend '{chosen}' from distribution {info.distribution} {info.version} failed to load: "
            f"{exc!r}. Reinstall it (pip install --force-reinstall {info.distribution}) or choose another backend."
        ) from exc
    return Backend.from_plugin(chosen, plugin, options, info)


class Backend(Lifecycle):
    """A configured backend: the core's lifecycle on it, plus what the CLI and tests need to know."""

    def __init__(
        self,
        name: str,
        pm: pluggy.PluginManager,
        plugin: object,
        options: dict[str, Any],
        settings: dict[str, float],
        role: hookspecs.Role,
        info: BackendInfo | None = None,
    ) -> None:
        super().__init__(name, pm.hook, settings)
        self.pm = pm
        self.plugin = plugin
        self.options = options
        self.role = role
        self.info = info
        self.closed = False

    @classmethod
    def from_plugin(
        cls,
        name: str,
        plugin: object,
        options: dict[str, Any] | None = None,
        info: BackendInfo | None = None,
        role: hookspecs.Role | None = None,
    ) -> Backend:
        """Check ``plugin`` against the contract, register it, resolve its options and configure it."""
        where = f" (distribution {info.distribution})" if info else ""
        pm = contract.plugin_manager(name, plugin, where)
        own = dict(pm.hook.bgcb_options() or {})
        resolved, settings = split(name, own, dict(options or {}))
        backend = cls(name, pm, plugin, resolved, settings, role or _role, info)
        if backend.role == "worker":
            from . import runner  # noqa: F401  - imported once before a backend forks its workers, not per worker
        contract.configure(pm, resolved, backend.role, backend)
        return backend

    @property
    def all_options(self) -> dict[str, Any]:
        """The backend's options and the core's lifecycle settings, as ``bgcb doctor`` shows them."""
        return {**self.options, **self.settings}

    def run_worker(self, app_module: str) -> bool:
        return bool(self.hook.bgcb_run_worker(app_module=app_module))

    def describe(self) -> dict[str, Any]:
        """Where the backend keeps its jobs (``"where"``) and its options as they took effect."""
        found = self.hook.bgcb_describe() if self.hook.bgcb_describe.get_hookimpls() else None
        return {**self.all_options, **dict(found or {})}

    def check(self) -> list[Check]:
        """The backend's own checks (``bgcb doctor``); none if it has no ``bgcb_check``."""
        return list(self.hook.bgcb_check() or []) if self.hook.bgcb_check.get_hookimpls() else []

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hook.bgcb_close()

    def __repr__(self) -> str:
        return f"<bgcb backend {self.name!r}>"
