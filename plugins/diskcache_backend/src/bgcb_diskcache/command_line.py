"""What ``bgcb jobs`` and ``bgcb doctor`` ask a bgcb-diskcache backend: where it keeps jobs, and whether
the directory, the store and a worker pool are there."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from bgcb import hookimpl
from bgcb.checks import Check

from .store import Store


class CommandLine:
    """The command-line hooks of :class:`~bgcb_diskcache.backend.DiskcacheBackend` (mixed into it)."""

    options: dict[str, Any]
    directory: str

    if TYPE_CHECKING:  # the backend's own

        @property
        def store(self) -> Store: ...

    @hookimpl
    def bgcb_describe(self) -> dict[str, Any]:
        app = self.options["app"] or "(found by the web process when it starts the pool)"
        return {"where": f"directory {self.directory}", "directory": self.directory, "app": app}

    @hookimpl
    def bgcb_check(self) -> list[Check]:
        writable = os.access(self.directory, os.W_OK)
        fix = "" if writable else "give the user running the app and its workers write access, or choose another directory"
        checks = [Check(writable, f"directory {self.directory} writable", fix)]
        try:
            queued, running = len(self.store.fair()), len(self.store.running())
            checks.append(Check(True, "job store readable", f"{queued} queued, {running} running"))
        except Exception as exc:
            checks.append(Check(False, "job store readable", f"{exc!r}; move the directory away to start afresh"))
        info = self.store.pool()
        age = time.time() - float(info["beat"]) if info else None
        if info is not None and age is not None and age < float(self.options["dead_after"]):
            checks.append(Check(True, "worker pool alive", f"supervisor pid {info.get('pid')}, {info.get('workers')} worker(s)"))
        else:
            checks.append(
                Check(
                    False,
                    "worker pool alive",
                    f"no pool serves {self.directory}"
                    + (f" (last heartbeat {age:.0f} s ago)" if age is not None else "")
                    + ": run the app (it starts one unless autostart=False) or `bgcb worker APP_MODULE` in the app's directory",
                )
            )
        return checks
