"""Backend options: defaults from the backend and the core, ``BGCB_<BACKEND>_<OPTION>`` variables, keyword arguments."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .defaults import LIFECYCLE_OPTIONS
from .errors import ConfigurationError


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


def env_var(backend: str, option: str) -> str:
    """The environment variable of a backend's option: ``BGCB_<BACKEND>_<OPTION>``."""
    return f"BGCB_{backend.upper().replace('-', '_')}_{option.upper()}"


#: Lifecycle options for which 0 means "never" rather than a mistake.
ZERO_MEANS_NEVER = ("no_worker_after",)


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
    for option, default in known.items():
        var = env_var(backend, option)
        if var in environ:
            resolved[option] = _coerce(var, environ[var], default)
    resolved.update(given)
    return resolved


def split(backend: str, own: Mapping[str, Any], given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Resolve ``given`` against the backend's own options and the core's lifecycle options.

    Returns the backend's options (for ``bgcb_configure``) and the lifecycle
    settings (for :class:`bgcb.lifecycle.Lifecycle`).
    """
    clash = sorted(set(own) & set(LIFECYCLE_OPTIONS))
    if clash:
        raise ConfigurationError(
            f"bgcb: backend '{backend}' declares {', '.join(clash)}, which are the core's lifecycle options; "
            "remove them from its bgcb_options (the core applies them to every backend)."
        )
    resolved = resolve_options(backend, {**own, **LIFECYCLE_OPTIONS}, given)
    settings = {k: float(resolved.pop(k)) for k in LIFECYCLE_OPTIONS}
    for key, value in settings.items():
        if value < 0 or (value == 0 and key not in ZERO_MEANS_NEVER):
            never = " (or 0: never)" if key in ZERO_MEANS_NEVER else ""
            raise ConfigurationError(f"bgcb: {key}={value!r} must be a positive number of seconds{never}.")
    return resolved, settings
