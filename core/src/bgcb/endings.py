"""The messages a job ends with when the core, not its callback, ends it: lost, unserved, timed out."""

from __future__ import annotations

from .jobs import Outcome

__all__ = ["lost_outcome", "no_worker_outcome", "timeout_outcome"]


def lost_outcome(reason: str) -> Outcome:
    """The error a job ends with when its worker died before finishing it."""
    return Outcome.lost(
        f"The worker running this background callback stopped without finishing it: {reason}. "
        "Common causes: the process ran out of memory, crashed in native code, or was killed. "
        "The job was not retried; trigger the callback again."
    )


def no_worker_outcome(waited: float, reason: str) -> Outcome:
    """The error a queued job ends with when no worker came to run it."""
    return Outcome.lost(
        f"No worker took this background callback: it waited {waited:.0f} s in the queue and {reason}. "
        "It was not run; trigger the callback again once a worker runs."
    )


def timeout_outcome(seconds: float) -> Outcome:
    """The error a job ends with when it runs past its timeout."""
    return Outcome.timed_out(
        f"Background callback timed out: it ran longer than its timeout of {seconds:g} s and was stopped. "
        "Raise bgcb.manager(timeout=...) if it needs longer."
    )
