"""Every difference between the Dash versions bgcb supports, in one place.

Dash 2.18 keeps the manager base class in ``dash.long_callback`` and calls
errors ``long_callback_error``; 3.x and 4.x use ``dash.background_callback``
and pass ``triggered`` to ``build_cache_key`` (bgcb's takes it either way); 4.4 signs job handles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dash

try:  # Dash 3 and later
    from dash.background_callback import _proxy_set_props as _proxy_mod
    from dash.background_callback.managers import BaseBackgroundCallbackManager as BaseManager

    ERROR_KEY = "background_callback_error"
except ImportError:  # Dash 2.18
    from dash.long_callback import _proxy_set_props as _proxy_mod  # type: ignore[no-redef]
    from dash.long_callback.managers import BaseLongCallbackManager as BaseManager  # type: ignore[no-redef]

    ERROR_KEY = "long_callback_error"

from dash._callback_context import context_value
from dash._utils import AttributeDict
from dash.exceptions import PreventUpdate

ProxySetProps = _proxy_mod.ProxySetProps
DASH_VERSION = dash.__version__
NO_UPDATE = {"_dash_no_update": "_dash_no_update"}

__all__ = [
    "BaseManager",
    "ERROR_KEY",
    "NO_UPDATE",
    "PreventUpdate",
    "find_function",
    "install_context",
    "request_arg_list",
    "request_cookie",
    "request_header",
    "request_job",
    "request_memo",
    "verified_job",
    "bgcb_manager_of",
    "on_app_setup",
]


def find_function(key: str) -> tuple[Callable[..., Any], bool] | None:
    """The callback Dash registered under ``key`` and whether it takes progress.

    Dash records every background callback on the base class when the module
    defining it is imported, so a worker that imported the app finds them all.
    """
    for fkey, fn, progress in reversed(BaseManager.functions):
        if fkey == key:
            return fn, bool(progress)
    return None


class Headers(dict[str, Any]):
    """Request headers, looked up case-insensitively as HTTP says.

    Dash copies the request's headers into a plain dict, whose keys are
    lower-case on FastAPI and capitalised on Flask; in the worker,
    ``ctx.headers.get("X-Token")`` finds the header whichever server sent it.
    """

    def __init__(self, items: dict[str, Any]) -> None:
        super().__init__(items)
        self._lower = {str(k).lower(): k for k in items}

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(self._lower.get(str(key).lower(), key))

    def __contains__(self, key: object) -> bool:
        return str(key).lower() in self._lower

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default


def install_context(context: dict[str, Any], on_set_props: Callable[[str, dict], None]) -> None:
    """Make ``dash.callback_context`` and ``dash.set_props`` work in a worker."""
    ctx = AttributeDict(**context)
    if isinstance(context.get("headers"), dict):
        ctx.headers = Headers(context["headers"])
    ctx.ignore_register_page = False
    ctx.updated_props = ProxySetProps(on_set_props)
    context_value.set(ctx)


def _adapter() -> Any:
    """Dash's adapter for the current request on Flask, FastAPI or Quart (Dash 4.x), else None.

    Dash 4 serves apps on three servers and reads requests only through
    ``app.backend.request_adapter()``; ``flask.request`` exists on Flask only.
    """
    try:
        backend = getattr(dash.get_app(), "backend", None)
    except Exception:  # no app yet (a worker, a script)
        return None
    make = getattr(backend, "request_adapter", None)
    if make is None:
        return None
    try:
        adapter = make()
        adapter.args  # noqa: B018 - raises outside a request
    except Exception:
        return None
    return adapter


def _flask_request() -> Any:
    try:
        import flask

        if flask.has_request_context():
            return flask
    except ImportError:  # pragma: no cover - Dash before 4 always brings Flask
        pass
    return None


def _request_args() -> Any:
    adapter = _adapter()
    if adapter is not None:
        return adapter.args
    flask = _flask_request()
    return flask.request.args if flask is not None else None


def request_header(name: str) -> str | None:
    """Header ``name`` of the current request, on any server; None outside a request or when absent."""
    adapter = _adapter()
    source = adapter.headers if adapter is not None else getattr(getattr(_flask_request(), "request", None), "headers", None)
    return source.get(name) if source is not None else None


def request_cookie(name: str) -> str | None:
    """Cookie ``name`` of the current request, on any server; None outside a request or when absent."""
    adapter = _adapter()
    source = adapter.cookies if adapter is not None else getattr(getattr(_flask_request(), "request", None), "cookies", None)
    return source.get(name) if source is not None else None


def request_memo() -> dict[str, Any] | None:
    """A dict that lives as long as the current request, on any server; None outside a request.

    Kept on the request's own context (Flask's ``g``, Starlette's
    ``request.state``, Quart's ``g``), so that one poll costs one backend read.
    """
    adapter = _adapter()
    holder = adapter.context if adapter is not None else None
    if holder is None:
        flask = _flask_request()
        holder = flask.g if flask is not None else None
    if holder is None:
        return None
    memo = getattr(holder, "_bgcb_memo", None)
    if memo is None:
        memo = {}
        holder._bgcb_memo = memo
    return memo


def request_arg_list(name: str) -> list[str]:
    """All values of query argument ``name`` in the current request, raw."""
    args = _request_args()
    if args is None:
        return []
    return list(args.getlist(name))


def request_job() -> str | None:
    """The job handle of the current poll, verified where Dash signs handles.

    Dash passes only the cache key to ``get_progress`` and
    ``get_updated_props``; the job is read from the request so that progress
    and set_props are per job, not per cache key.
    """
    reader = getattr(dash._callback, "_read_request_handles", None)
    if reader is not None:  # Dash 4.4+: signed handles
        try:
            return reader()[1]
        except Exception:
            return None
    args = _request_args()
    return args.get("job") if args is not None else None


def is_explicit_cancel(job: str) -> bool:
    """Whether the current request is a click on a ``cancel`` input for ``job``.

    Dash calls ``terminate_job`` for cancel clicks (``cancelJob``) and for a
    re-triggered callback's previous job (``oldJob``); only this tells them
    apart. Handles may be signed (``value~mac``).
    """
    return any(raw == job or raw.startswith(job + "~") for raw in request_arg_list("cancelJob"))


def verified_job(app: Any, args: dict[str, str]) -> str | None:
    """The job named by a poll's query, checked as Dash checks it; None if missing or forged.

    Dash 4.4 signs handles with a secret and binds them to the page load
    (``endId``); earlier versions send them as they were issued.
    """
    raw = args.get("job")
    signing = _import_signing()
    if signing is None or not hasattr(app, "_get_signing_secret"):
        return raw
    secret = app._get_signing_secret()
    end_id = signing.unsign(secret, signing.END_SCOPE, args.get("endId"))
    return signing.unsign(secret, signing.job_scope(end_id), raw)


def _import_signing() -> Any:
    try:
        from dash import _callback_signing

        return _callback_signing
    except ImportError:  # Dash before 4.4
        return None


def bgcb_manager_of(app: Any, payload: dict[str, Any] | None, manager_type: type) -> Any:
    """The bgcb manager serving the background callback a request body names, else None."""
    if payload is None or not isinstance(payload.get("output"), str):
        return None
    spec = getattr(app, "callback_map", {}).get(payload["output"])
    background = (spec.get("background") or spec.get("long")) if isinstance(spec, dict) else None  # 2.18: "long"
    if not background:
        return None
    manager = background.get("manager") or getattr(app, "_background_manager", None)
    return manager if isinstance(manager, manager_type) else None


def on_app_setup(install: Callable[[Any], None]) -> bool:
    """Have ``install(app)`` called for every Dash app created from now on (Dash 3+'s ``dash.hooks.setup``).

    Returns False on Dash 2.18, which has no hooks: the manager then installs
    itself from the first request it serves (Flask only).
    """
    hooks = getattr(dash, "hooks", None)
    if hooks is None or not hasattr(hooks, "setup"):
        return False
    hooks.setup()(install)
    return True


def current_server() -> Any:
    """The Flask app serving the current request (Dash 2.18's fallback for installing the gate), or None."""
    flask = _flask_request()
    return flask.current_app._get_current_object() if flask is not None else None


def current_app() -> Any:
    """The Dash app of this process (``dash.get_app()``), or None before one exists."""
    try:
        return dash.get_app()
    except Exception:
        return None
