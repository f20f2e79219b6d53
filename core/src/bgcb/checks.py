"""What ``bgcb doctor`` checks, and the shape in which a backend reports its own checks (``bgcb_check``)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Check", "dash_check"]

#: The Dash versions bgcb supports (it uses Dash internals: newer majors may differ).
DASH_SUPPORTED = ((2, 18), (5, 0))


class Check(NamedTuple):
    """One check: whether it passed, what was checked, and the detail (on failure: how to fix it)."""

    ok: bool
    what: str
    detail: str = ""

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}" + (f": {self.detail}" if self.detail else "")


def dash_check(version: str) -> Check:
    """Whether the installed Dash is one bgcb supports."""
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    low, high = DASH_SUPPORTED
    if len(parts) == 2 and low <= parts < high:
        return Check(True, f"dash {version}")
    supported = f"dash>={low[0]}.{low[1]},<{high[0]}"
    return Check(False, f"dash {version}", f"bgcb supports {supported}; install one: pip install '{supported}'")
