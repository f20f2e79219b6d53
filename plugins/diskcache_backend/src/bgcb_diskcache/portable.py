"""Which of the pool's two paths this process takes: Linux's (fork, FIFO wake-ups, flock)
or the portable one (spawned workers, polling, a lease in the store for the pool lock).

The Linux path is the fast one: workers forked from a supervisor that imported
the app are warm at once, and a queued job wakes exactly one idle worker. The
portable path uses nothing but processes, files and SQLite, so it runs where
fork is unsafe or missing (macOS, Windows); ``portable="on"`` forces it, so
that Linux CI runs it too.
"""

from __future__ import annotations

import sys

from bgcb.errors import ConfigurationError

ON = ("on", "true", "1", "yes")
OFF = ("off", "false", "0", "no")


def linux_path_available() -> bool:
    return sys.platform.startswith("linux")


def use_portable(option: object) -> bool:
    """The ``portable`` option ("auto", "on" or "off") resolved for this machine."""
    value = str(option).strip().lower()
    if value == "auto":
        return not linux_path_available()
    if value in ON:
        return True
    if value in OFF:
        if not linux_path_available():
            raise ConfigurationError(
                f"bgcb-diskcache: portable={option!r} asks for the Linux path (fork, FIFOs, flock), which {sys.platform} "
                "lacks; leave portable at 'auto' (or BGCB_DISKCACHE_PORTABLE unset)."
            )
        return False
    raise ConfigurationError(f"bgcb-diskcache: portable={option!r}; give 'auto', 'on' or 'off'.")
