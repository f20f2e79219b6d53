"""What the Dash manager makes of a request's inputs: the JSON-able part of Dash's callback context for the
worker, and the job's cache key."""

from __future__ import annotations

import hashlib
import inspect
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

#: Context entries that are request-bound objects, not data for the worker.
_CONTEXT_DROP = {"background_callback_manager", "dash_response", "updated_props", "dash_websocket"}


def jsonable_context(context: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of Dash's callback context, for the worker (encoded whole when it can be:
    one encoder call instead of one per key)."""
    from .runner import to_jsonable

    kept: dict[str, Any] = {}
    for key, value in dict(context).items():
        if key in _CONTEXT_DROP:
            continue
        if key == "args" and value is not None and not isinstance(value, dict):
            value = dict(value)
        kept[key] = value
    try:
        return dict(to_jsonable(kept))
    except Exception:
        pass
    out: dict[str, Any] = {}
    for key, value in kept.items():
        try:
            out[key] = to_jsonable(value)
        except Exception:
            continue  # request-bound objects stay in the web process
    return out


_sources: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_sources_lock = threading.Lock()


def source_digest(fn: Any) -> str:
    """A digest of ``fn``'s source, read once per function object.

    Dash reads the source on every request (``inspect.getsource``: a quarter
    of a millisecond, before the job can be queued). A function object's code
    cannot change, and the debug reloader makes new function objects, so one
    read per object gives the same keys.
    """
    with _sources_lock:
        try:
            return _sources[fn]
        except (KeyError, TypeError):
            pass
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError):  # no source file (an interactive session, a builtin)
        text = getattr(fn, "__qualname__", repr(fn))
    digest = hashlib.sha256(text.encode()).hexdigest()
    with _sources_lock:
        try:
            _sources[fn] = digest
        except TypeError:  # not weakly referable: read it again next time
            pass
    return digest


def cache_key(fn: Any, args: Any, ignore: Any, triggered: Any, cache_by: Sequence[Callable[[], Any]] | None) -> str:
    """The key of a job's result: what Dash hashes (the callback's source, its inputs but ``ignore``d ones,
    the triggering inputs and each ``cache_by`` value), with the source read once per function."""
    ignore = ignore if isinstance(ignore, (list, tuple)) else [ignore]
    if ignore:
        if isinstance(args, dict):
            args = {k: v for k, v in args.items() if k not in ignore}
        else:
            args = [a for i, a in enumerate(args) if i not in ignore]
    scope = f"{source_digest(fn)}|{[item() for item in cache_by or ()]!r}"
    try:
        text = repr((scope, args, triggered))
    except RecursionError:  # inputs nested near Python's limit: walk them without recursion
        return deep_key(scope, args, triggered)
    return hashlib.sha256(text.encode()).hexdigest()


def deep_key(name: str, args: Any, triggered: Any) -> str:
    """A cache key for inputs nested too deep for ``repr``: a hash over the values walked without recursion."""
    digest = hashlib.sha256(f"{name}|{triggered!r}|".encode())
    stack: list[Any] = [args]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            digest.update(b"[%d" % len(item))
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            digest.update(b"{%d" % len(item))
            for k in sorted(item, key=str):
                stack.extend((item[k], str(k)))
        else:
            digest.update(repr(item).encode() + b",")
    return digest.hexdigest()
