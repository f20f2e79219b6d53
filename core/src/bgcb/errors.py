"""Errors bgcb raises; each message says what to do next."""

from __future__ import annotations


class BgcbError(Exception):
    """Base class of every bgcb error."""


class BackendNotFound(BgcbError, LookupError):
    """No installed backend has the name asked for."""


class BackendLoadError(BgcbError, ImportError):
    """A backend's entry point failed to import or to build its plugin."""


class BackendInvalid(BgcbError, TypeError):
    """A backend does not implement the contract (a required hook is missing)."""


class ConfigurationError(BgcbError, ValueError):
    """An option is unknown or its value cannot be used."""
