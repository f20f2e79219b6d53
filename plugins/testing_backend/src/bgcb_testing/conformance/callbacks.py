"""The Dash background callbacks the conformance kit runs.

This module is the kit's "app module": the test process imports it to learn
each callback's key, and a backend whose jobs run in other processes must make
its workers import it too (``bgcb worker bgcb_testing.conformance.callbacks``,
or whatever option the backend uses to name the module its workers import).
In-process backends need nothing: the test process has imported it.

Each callback reports what it saw as plain JSON, so that the kit can check a
backend from the outcome alone, whichever process ran the job.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output
from dash.exceptions import PreventUpdate

#: The import path workers must import (see the module docstring).
APP_MODULE = __name__

#: Component ids the callbacks write to (outputs and ``set_props`` targets).
PREFIX = "bgcb-kit-"

_KEYS: dict[str, Callable[..., Any]] = {}
# The kit's callbacks are kept off Dash's global list (which the first app to
# start would take): only apps made by :func:`attach` serve them.
_CALLBACK_MAP: dict[str, Any] = {}
_CALLBACK_LIST: list[Any] = []


def _background(name: str, progress: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``dash.callback(..., background=True)`` on the kit's own component ids."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        kwargs: dict[str, Any] = {"background": True, "prevent_initial_call": True}
        if progress:
            kwargs["progress"] = [Output(f"{PREFIX}{name}-progress", "children")]
        kwargs.update(callback_map=_CALLBACK_MAP, callback_list=_CALLBACK_LIST)
        wrapped = dash.callback(Output(f"{PREFIX}{name}-out", "children"), Input(f"{PREFIX}{name}-in", "value"), **kwargs)(fn)
        _KEYS[name] = fn
        return wrapped

    return decorate


def key(name: str) -> str:
    """The key Dash registered the kit callback ``name`` under (``Job.callback``)."""
    try:
        from dash.background_callback.managers import BaseBackgroundCallbackManager as base
    except ImportError:  # Dash 2.18
        from dash.long_callback.managers import BaseLongCallbackManager as base  # type: ignore[no-redef]
    fn = _KEYS[name]
    for fkey, registered, _ in reversed(base.functions):
        if registered is fn or getattr(registered, "__wrapped__", None) is fn:
            return fkey
    raise LookupError(f"kit callback {name!r} is not registered with Dash")


def attach(app: dash.Dash) -> dash.Dash:
    """Serve the kit's callbacks from ``app`` (before its first request)."""
    app.callback_map.update({k: dict(v) for k, v in _CALLBACK_MAP.items()})
    app._callback_list.extend(dict(c) for c in _CALLBACK_LIST)
    return app


def names() -> list[str]:
    return sorted(_KEYS)


def _where() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "thread": threading.get_ident()}


def _mark(path: str | None, text: str) -> None:
    """Leave a file behind, so the kit can tell (on one machine) what ran."""
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


@_background("echo")
def echo(value: Any) -> dict[str, Any]:
    """Return the argument and the JSON types it arrived as."""
    kinds = {k: type(v).__name__ for k, v in value.items()} if isinstance(value, dict) else type(value).__name__
    return {"value": value, "types": kinds, "where": _where(), "at": time.time()}


@_background("sleep", progress=True)
def sleep(set_progress: Callable[[Any], None], spec: dict[str, Any]) -> dict[str, Any]:
    """Sleep ``spec["seconds"]``, reporting progress every ``spec["tick"]``
    seconds (so that a cooperative cancel or timeout can stop it), and leave
    ``started``/``finished`` marks in ``spec["marker"]`` when given."""
    start = time.time()
    _mark(spec.get("marker"), "started")
    tick = float(spec.get("tick", 0.05))
    while time.time() - start < float(spec["seconds"]):
        time.sleep(tick)
        set_progress([round(time.time() - start, 3)])
    _mark(spec.get("marker"), "finished")
    return {"start": start, "end": time.time(), "where": _where(), "tag": spec.get("tag")}


@_background("block")
def block(spec: dict[str, Any]) -> str:
    """Run ``spec["seconds"]`` without a progress or set_props call (nothing the core could stop it at),
    appending a tick to ``spec["marker"]`` every 50 ms: only the backend can stop it."""
    end = time.time() + float(spec["seconds"])
    while time.time() < end:
        _mark(spec.get("marker"), "tick")
        time.sleep(0.05)
    return "block finished"


@_background("report_pid", progress=True)
def report_pid(set_progress: Callable[[Any], None], seconds: float) -> str:
    """Tell the kit which process runs the job, then wait to be killed."""
    set_progress([os.getpid()])
    deadline = time.time() + float(seconds)
    while time.time() < deadline:
        time.sleep(0.1)
    return "survived"


@_background("progress", progress=True)
def progress(set_progress: Callable[[Any], None], count: int) -> str:
    for i in range(int(count)):
        set_progress([i, count])
    return f"progressed {count}"


@_background("mixed", progress=True)
def mixed(set_progress: Callable[[Any], None], count: int) -> str:
    """Interleave progress and set_props updates on two components."""
    for i in range(int(count)):
        set_progress([i])
        dash.set_props(f"{PREFIX}a", {"children": f"a{i}"})
        dash.set_props(f"{PREFIX}b", {"title": f"b{i}", "hidden": i % 2 == 0})
    return "mixed done"


@_background("fail")
def fail(message: str) -> None:
    raise ValueError(message)


@_background("prevent")
def prevent(_: Any) -> None:
    raise PreventUpdate


@_background("unserialisable")
def unserialisable(_: Any) -> Any:
    return threading.Lock()


@_background("async_echo")
async def async_echo(value: Any) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"value": value, "async": True}


@_background("wait_for")
def wait_for(spec: dict[str, Any]) -> dict[str, Any]:
    """Wait up to ``spec["seconds"]`` for the file ``spec["path"]``, which the kit writes once submit returned."""
    deadline = time.time() + float(spec["seconds"])
    while not Path(spec["path"]).exists() and time.time() < deadline:
        time.sleep(0.01)
    return {"appeared": Path(spec["path"]).exists(), "where": _where()}


@_background("touch")
def touch(path: str) -> str:
    """Create ``path``: proof, on one machine, that the job ran."""
    Path(path).write_text("ran", encoding="utf-8")
    return "touched"


def _run_number(path: str) -> int:
    """Count this run in the file ``path`` (one machine): 1 on a job's first run, 2 on its second..."""
    _mark(path, "run")
    return len(Path(path).read_text(encoding="utf-8").splitlines())


@_background("later")
def later(spec: dict[str, Any]) -> dict[str, Any]:
    """On its first run ask to run again in ``spec["seconds"]`` (``bgcb.retry_later``); then return which run it is."""
    import bgcb

    run = _run_number(spec["path"])
    if run == 1:
        bgcb.retry_later(float(spec["seconds"]), "the kit asks for a second run")
    return {"run": run, "at": time.time(), "where": _where()}


@_background("flaky")
def flaky(spec: dict[str, Any]) -> dict[str, Any]:
    """Raise on runs before ``spec["succeed_on"]`` (``retries=`` runs it again), then return which run it is."""
    run = _run_number(spec["path"])
    if run < int(spec["succeed_on"]):
        raise RuntimeError(f"kit flaky run {run}")
    return {"run": run}
