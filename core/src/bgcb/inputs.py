"""What the Dash manager makes of a request's inputs: the JSON-able part of Dash's callback context for the
worker, and a cache key for inputs nested too deep for Dash's own."""

from __future__ import annotations

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


def deep_key(name: str, args: Any, triggered: Any) -> str:
    """A cache key for inputs too deep for Dash's own: a hash over the values walked without recursion."""
    import hashlib

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
