"""Checking a backend against the contract, the way pluggy hosts do, with messages that say what to fix.

:class:`BackendPlugin` is the contract as a typed Protocol, for backend
authors who type-check; :func:`plugin_manager` is the only way the core
accepts a backend.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pluggy

from . import hookspecs, observers
from .errors import BackendInvalid, BackendLoadError

if TYPE_CHECKING:
    from .lifecycle import Lifecycle
    from .record import Stored


@runtime_checkable
class BackendPlugin(Protocol):
    """The required hooks of a backend (see :class:`bgcb.hookspecs.BackendSpec` for each).

    Optional hooks (``bgcb_options``, ``bgcb_configure``, ``bgcb_run_worker``,
    ``bgcb_close``, ``bgcb_stop``, ``bgcb_cache_put``/``bgcb_cache_get``,
    ``bgcb_active``, ``bgcb_shared_secret``, ``bgcb_wait``, ``bgcb_describe``,
    ``bgcb_check``, ``bgcb_capacity``, ``bgcb_capabilities``) have the signatures given there. A hook
    implementation may leave out parameters it does not use (``lane``, ``priority``).
    """

    def bgcb_enqueue(
        self, job_id: str, job: str, data: str, timeout: float | None, ttl: float, lane: str | None, priority: int | None
    ) -> None: ...

    def bgcb_read(self, job_id: str, drain: bool) -> Stored | None: ...

    def bgcb_load(self, job_id: str) -> str | None: ...

    def bgcb_cas(self, job_id: str, expect: Sequence[str], state: str, data: str, ttl: float) -> bool: ...

    def bgcb_append(self, job_id: str, update: str, ttl: float) -> None: ...


_SPECS = sorted(n for n in dir(hookspecs.BackendSpec) if n.startswith("bgcb_"))
_OBSERVER_SPECS = sorted(n for n in vars(hookspecs.ObserverSpec) if n.startswith("bgcb_"))


def _hint(name: str) -> str:
    close = difflib.get_close_matches(name, _SPECS, n=1, cutoff=0.6)
    if not close:
        return ""
    if close[0] in hookspecs.V1_HOOKS:  # a contract-1 name: point at what replaced it
        return f" Did you mean {close[0]}? That was a contract-1 hook: {hookspecs.V1_HOOKS[close[0]]}."
    return f" Did you mean {close[0]}?"


def problems(plugin: object) -> list[str]:
    """What keeps ``plugin`` from being a backend: unknown or unmarked hooks, missing required ones."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    found: list[str] = []
    for attr in sorted(a for a in dir(plugin) if a.startswith("bgcb_")):
        value = getattr(plugin, attr, None)
        if value is None:
            continue  # explicitly left out
        if attr in _OBSERVER_SPECS:
            found.append(
                f"{attr} is an observer hook; a backend does not observe. Register an observer with bgcb.observers.register()."
            )
        elif attr not in _SPECS:
            found.append(f"{attr} is not a bgcb backend hook.{_hint(attr)} Known hooks: see bgcb.hookspecs.BackendSpec.")
        elif callable(value) and pm.parse_hookimpl_opts(plugin, attr) is None:
            found.append(f"{attr} is not marked as a hook implementation: decorate it with @bgcb.hookimpl.")
    missing = [r for r in hookspecs.REQUIRED if not callable(getattr(plugin, r, None))]
    for required in missing:
        found.append(f"the required hook {required} is missing (see bgcb.hookspecs.BackendSpec.{required}).")
    if missing:
        for old, instead in hookspecs.V1_HOOKS.items():
            if callable(getattr(plugin, old, None)):
                found.append(f"{old} belongs to contract 1, which the core no longer calls: {instead}.")
    for pair in hookspecs.PAIRS:
        have = [h for h in pair if callable(getattr(plugin, h, None))]
        if have and len(have) != len(pair):
            found.append(f"{' and '.join(pair)} go together; implement both or neither.")
    return found


def built_for(distribution: str, *contracts: int) -> None:
    """Refuse, at import, a core whose contract the calling backend was not built for.

    A backend module calls it first thing: ``built_for("bgcb-celery", 2)``.
    The dependency range (``bgcb>=0.3,<0.4``) keeps pip from pairing them;
    this catches what pip cannot see (``--no-deps``, editable installs,
    a core upgraded on its own).
    """
    if hookspecs.CONTRACT_VERSION in contracts:
        return
    from importlib import metadata

    def installed(name: str) -> str:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            return name

    known = " or ".join(str(c) for c in contracts)
    raise BackendLoadError(
        f"bgcb: {installed(distribution)} was built for backend contract {known}, but the installed "
        f"{installed('bgcb')} speaks contract {hookspecs.CONTRACT_VERSION}. Install releases made for "
        f"each other: pip install --upgrade {distribution} bgcb (or the {distribution} release that "
        f"supports contract {hookspecs.CONTRACT_VERSION})."
    )


def plugin_manager(name: str, plugin: object, where: str = "") -> pluggy.PluginManager:
    """A plugin manager holding ``plugin`` as the backend ``name``, after checking it against the contract."""
    found = problems(plugin)
    if found:
        lines = "\n  - ".join(found)
        raise BackendInvalid(f"bgcb: backend '{name}'{where} does not meet the backend contract:\n  - {lines}")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs.BackendSpec)
    observers.trace(pm, f"backend:{name}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            pm.register(plugin, name=f"backend:{name}")
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise BackendInvalid(f"bgcb: backend '{name}'{where} is invalid: {exc}") from exc
    for warning in caught:  # contract-1 hooks: re-issued so that they point at the backend
        warnings.warn(f"backend '{name}'{where}: {warning.message}", DeprecationWarning, stacklevel=3)
    for required in hookspecs.REQUIRED:
        if not getattr(pm.hook, required).get_hookimpls():
            raise BackendInvalid(f"bgcb: backend '{name}'{where}: {required} is not a registered hook implementation.")
    return pm


def configure(pm: pluggy.PluginManager, options: dict[str, Any], role: hookspecs.Role, jobs: Lifecycle) -> None:
    """Call ``bgcb_configure`` once, with the resolved options, the role and the core's lifecycle."""
    pm.hook.bgcb_configure(options=options, role=role, jobs=jobs)
