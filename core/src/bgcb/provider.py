"""Finding backends by name through entry points, and loading one.

The core knows no backend: it reads the entry-point group ``bgcb.backends``
and picks one by name — the argument, else ``BGCB_BACKEND``, else
``diskcache`` when installed — the way ``keyring`` picks its backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import BackendInvalid, BackendLoadError, BackendNotFound, ConfigurationError
from .jobs import Job, Outcome, Snapshot, Status

BACKEND_GROUP = "bgcb.backends"
OBSERVER_GROUP = "bgcb.plugins"
DEFAULT_BACKEND = "diskcache"
ENV_BACKEND = "BGCB_BACKEND"

_observers: list[object] = []
_shared: dict[tuple[str, str], Backend] = {}


@dataclass(frozen=True)
class BackendInfo:
    """An installed backend, as its entry point describes it."""

    name: str
    distribution: str
    version: str
    entry_point: metadata.EntryPoint


def installed() -> dict[str, BackendInfo]:
    """The installed backends by name, without importing any of them."""
    found: dict[str, BackendInfo] = {}
    for ep in metadata.entry_points(group=BACKEND_GROUP):
        dist = getattr(ep, "dist", None)
        found[ep.name] = BackendInfo(
            ep.name,
            dist.metadata["Name"] if dist else "?",
            dist.version if dist else "?",
            ep,
        )
    return dict(sorted(found.items()))


def selected_name(name: str | None = None) -> str:
    """The backend name in force: ``name``, else ``$BGCB_BACKEND``, else the default."""
    chosen = name or os.environ.get(ENV_BACKEND, "").strip()
    if chosen:
        return chosen
    backends = installed()
    if DEFAULT_BACKEND in backends:
        return DEFAULT_BACKEND
    if not backends:
        raise BackendNotFound(
            "bgcb: no backend is installed. Install one, for example\n"
            f'  pip install "bgcb[{DEFAULT_BACKEND}]"   (embedded, no server)\n'
            "or any bgcb-<name> distribution, then choose it with "
            f"{ENV_BACKEND}=<name>."
        )
    raise BackendNotFound(
        f"bgcb: no backend chosen and the default '{DEFAULT_BACKEND}' is not "
        f"installed. Installed: {', '.join(backends)}. Set {ENV_BACKEND}=<name> "
        f"or pass bgcb.manager(backend=...), or pip install bgcb-{DEFAULT_BACKEND}."
    )


def register_observer(plugin: object) -> None:
    """Add an observer plugin to every backend loaded from now on."""
    _observers.append(plugin)


def plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with bgcb's hook specifications and all observers."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    try:
        pm.load_setuptools_entrypoints(OBSERVER_GROUP)
    except Exception as exc:  # a broken observer must say which it is
        raise BackendLoadError(
            f"bgcb: an observer plugin (entry-point group '{OBSERVER_GROUP}') failed to load: {exc!r}. Reinstall or uninstall it."
        ) from exc
    for plugin in _observers:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    return pm


def load(name: str | None = None, *, fresh: bool = False, **options: Any) -> Backend:
    """Load, check and configure the backend ``name`` (see :func:`selected_name`).

    Managers in one process that ask for the same backend and options share
    one instance (one store connection, one worker pool); ``fresh=True``
    makes a new one.
    """
    chosen = selected_name(name)
    key = (chosen, repr(sorted(options.items())))
    if not fresh and key in _shared and not _shared[key].closed:
        return _shared[key]
    backend = _load(chosen, options)
    if not fresh:
        _shared[key] = backend
    return backend


def _load(chosen: str, options: dict[str, Any]) -> Backend:
    backends = installed()
    info = backends.get(chosen)
    if info is None:
        listing = ", ".join(f"{b.name} ({b.distribution} {b.version})" for b in backends.values())
        raise BackendNotFound(
            f"bgcb: no backend named '{chosen}'. Installed backends: "
            f"{listing or 'none'}. To use '{chosen}', install its distribution: "
            f"pip install bgcb-{chosen}"
        )
    try:
        factory = info.entry_point.load()
        plugin = factory() if callable(factory) else factory
    except Exception as exc:
        raise BackendLoadError(
            f"bgcb: the backend '{chosen}' from distribution {info.distribution} "
            f"{info.version} failed to load: {exc!r}. Reinstall it "
            f"(pip install --force-reinstall {info.distribution}) or choose "
            f"another backend."
        ) from exc
    return Backend.from_plugin(chosen, plugin, options, info)


def missing_hooks(plugin: object) -> list[str]:
    """The required hooks ``plugin`` does not implement."""
    return [h for h in hookspecs.REQUIRED if not callable(getattr(plugin, h, None))]


def _coerce(name: str, raw: str, default: Any) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind in (int, float):
            return kind(raw)
    except ValueError:
        raise ConfigurationError(f"bgcb: {name}={raw!r} is not a valid {kind.__name__}.") from None
    return raw


def resolve_options(
    backend: str, known: Mapping[str, Any], given: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Defaults, overridden by ``BGCB_<BACKEND>_<OPTION>``, overridden by ``given``."""
    environ = os.environ if environ is None else environ
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigurationError(
            f"bgcb: unknown option(s) {', '.join(unknown)} for backend "
            f"'{backend}'. Known options: {', '.join(sorted(known)) or 'none'}."
        )
    resolved = dict(known)
    prefix = f"BGCB_{backend.upper().replace('-', '_')}_"
    for option, default in known.items():
        var = prefix + option.upper()
        if var in environ:
            resolved[option] = _coerce(var, environ[var], default)
    resolved.update(given)
    return resolved


class Backend:
    """The active backend behind typed methods: the only caller of its hooks."""

    def __init__(
        self, name: str, pm: pluggy.PluginManager, plugin: object, options: dict[str, Any], info: BackendInfo | None = None
    ) -> None:
        self.name = name
        self.pm = pm
        self.plugin = plugin
        self.options = options
        self.info = info
        self.hook = pm.hook
        self.closed = False
        self._has_poll = bool(pm.hook.bgcb_poll.get_hookimpls())

    @classmethod
    def from_plugin(
        cls, name: str, plugin: object, options: Mapping[str, Any] | None = None, info: BackendInfo | None = None
    ) -> Backend:
        """Check ``plugin`` against the contract, register it and configure it."""
        missing = missing_hooks(plugin)
        where = f" (distribution {info.distribution})" if info else ""
        if missing:
            raise BackendInvalid(
                f"bgcb: backend '{name}'{where} does not implement the required "
                f"hook(s) {', '.join(missing)}; see bgcb.hookspecs for what each must do."
            )
        pm = plugin_manager()
        try:
            pm.register(plugin, name=f"backend:{name}")
        except pluggy.PluginValidationError as exc:
            raise BackendInvalid(f"bgcb: backend '{name}'{where} is invalid: {exc}") from exc
        known_fn = getattr(plugin, "bgcb_options", None)
        known = dict(known_fn() or {}) if known_fn else {}
        resolved = resolve_options(name, known, dict(options or {}))
        pm.hook.bgcb_configure(options=resolved, hook=pm.hook)
        return cls(name, pm, plugin, resolved, info)

    # -- jobs ----------------------------------------------------------------

    def submit(self, job: Job) -> str:
        job_id = self.hook.bgcb_submit(job=job)
        self.hook.bgcb_job_submitted(job_id=job_id, job=job)
        return job_id

    def status(self, job_id: str) -> Status:
        return self.hook.bgcb_status(job_id=job_id) or Status.unknown()

    def poll(self, job_id: str) -> Snapshot:
        """One consistent view for a browser poll (consumes pending updates)."""
        if self._has_poll:
            snap = self.hook.bgcb_poll(job_id=job_id)
            if snap is not None:
                return snap
        status = self.status(job_id)
        updates = self.hook.bgcb_progress(job_id=job_id) or []
        outcome = self.hook.bgcb_result(job_id=job_id) if status.state.terminal else None
        return Snapshot(status, list(updates), outcome)

    def result(self, job_id: str) -> Outcome | None:
        return self.hook.bgcb_result(job_id=job_id)

    def cancel(self, job_id: str) -> bool:
        done = bool(self.hook.bgcb_cancel(job_id=job_id))
        if done:
            self.hook.bgcb_job_cancelled(job_id=job_id)
        return done

    def cached(self, cache_key: str) -> Outcome | None:
        return self.hook.bgcb_cached(cache_key=cache_key)

    def jobs(self) -> list[tuple[str, Status]] | None:
        return self.hook.bgcb_jobs()

    def shared_secret(self, generate: Callable[[], bytes]) -> bytes | None:
        return self.hook.bgcb_shared_secret(generate=generate)

    def run_worker(self, app_module: str) -> bool:
        return bool(self.hook.bgcb_run_worker(app_module=app_module, options=self.options))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hook.bgcb_close()

    def __repr__(self) -> str:
        return f"<bgcb backend {self.name!r}>"
