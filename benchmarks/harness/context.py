"""What a phase gets: the running sides, the run's settings, and a way to start more sides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .stack import Side, this_python

#: bgcb's ``hold`` on the sides that use it: longer than the longest measured job.
HOLD = 10.0


@dataclass
class Context:
    dash_python: str
    smoke: bool
    reps: int
    interval: float
    log: Callable[[str], None] = print
    #: Sides started so far, by label; phases share them, the run stops them all.
    started: dict[str, Side] = field(default_factory=dict)

    def side(self, name: str, hold: float = 0.0, extra: dict[str, str] | None = None, label: str = "") -> Side:
        """The side ``name`` (``dash-diskcache``, ``bgcb-celery``...), started on first use."""
        python = self.dash_python if name == "dash-celery" else this_python()
        probe = Side(name, python, hold=hold, extra=dict(extra or {}), label=label)
        if probe.label in self.started:
            probe.stop()  # only its temporary directory exists
            return self.started[probe.label]
        self.log(f"starting {probe.label}")
        self.started[probe.label] = probe.start()
        return probe

    def standard(self, hold: bool = True) -> list[Side]:
        """Dash's two managers and bgcb's two backends, with bgcb's also under ``hold`` if asked."""
        out = [self.side("dash-diskcache"), self.side("bgcb-diskcache")]
        out += [self.side("bgcb-diskcache", hold=HOLD)] if hold else []
        out += [self.side("dash-celery"), self.side("bgcb-celery")]
        out += [self.side("bgcb-celery", hold=HOLD)] if hold else []
        return out

    def stop(self) -> None:
        """Stop every side, all at once (each may take seconds to shut down gracefully)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, len(self.started))) as pool:
            list(pool.map(Side.stop, self.started.values()))
        self.started.clear()


def counts(ctx: Context, full: Any, smoke: Any) -> Any:
    """``smoke`` in a smoke run, else ``full``."""
    return smoke if ctx.smoke else full
