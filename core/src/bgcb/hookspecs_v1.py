# mypy: disable-error-code="empty-body"
"""The hooks of bgcb's backend contract 1, kept so that a backend still implementing one is told what replaced it.

The core calls none of them. Each specification warns (``warn_on_impl``)
when a backend registers an implementation; :class:`bgcb.hookspecs.BackendSpec`
inherits them so that they stay known hook names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .jobs import Job

hookspec = pluggy.HookspecMarker("bgcb")


def _v1(name: str, instead: str) -> Any:
    return DeprecationWarning(
        f"bgcb: {name} is a hook of bgcb's backend contract 1, which the core no longer calls; "
        f"{instead}. See docs/writing-a-backend.md, 'Moving from contract 1'."
    )


#: Contract-1 hooks and what replaces each; their specs below warn when implemented.
V1_HOOKS: dict[str, str] = {
    "bgcb_submit": "implement bgcb_enqueue (the core mints the id and encodes the job)",
    "bgcb_status": "implement bgcb_read (the core builds the Status)",
    "bgcb_progress": "implement bgcb_append and drain in bgcb_read",
    "bgcb_result": "implement bgcb_read (the outcome is part of the record's data)",
    "bgcb_cancel": "implement bgcb_cas and optionally bgcb_stop (the core runs cancel)",
    "bgcb_poll": "implement bgcb_read, one round trip by itself",
    "bgcb_cached": "implement bgcb_cache_put and bgcb_cache_get",
    "bgcb_jobs": "implement bgcb_active",
}


class ContractOneSpec:
    """Contract-1 hooks: deprecated, not called; implementing one warns."""

    @hookspec(warn_on_impl=_v1("bgcb_submit", V1_HOOKS["bgcb_submit"]))
    def bgcb_submit(self, job: Job) -> Any:
        """Contract 1; replaced by :meth:`bgcb_enqueue`."""

    @hookspec(warn_on_impl=_v1("bgcb_status", V1_HOOKS["bgcb_status"]))
    def bgcb_status(self, job_id: str) -> Any:
        """Contract 1; replaced by :meth:`bgcb_read`."""

    @hookspec(warn_on_impl=_v1("bgcb_progress", V1_HOOKS["bgcb_progress"]))
    def bgcb_progress(self, job_id: str) -> Any:
        """Contract 1; replaced by :meth:`bgcb_append` and :meth:`bgcb_read`."""

    @hookspec(warn_on_impl=_v1("bgcb_result", V1_HOOKS["bgcb_result"]))
    def bgcb_result(self, job_id: str) -> Any:
        """Contract 1; replaced by :meth:`bgcb_read`."""

    @hookspec(warn_on_impl=_v1("bgcb_cancel", V1_HOOKS["bgcb_cancel"]))
    def bgcb_cancel(self, job_id: str) -> Any:
        """Contract 1; replaced by :meth:`bgcb_cas` and :meth:`bgcb_stop`."""

    @hookspec(warn_on_impl=_v1("bgcb_poll", V1_HOOKS["bgcb_poll"]))
    def bgcb_poll(self, job_id: str) -> Any:
        """Contract 1; replaced by :meth:`bgcb_read`."""

    @hookspec(warn_on_impl=_v1("bgcb_cached", V1_HOOKS["bgcb_cached"]))
    def bgcb_cached(self, cache_key: str) -> Any:
        """Contract 1; replaced by :meth:`bgcb_cache_get`."""

    @hookspec(warn_on_impl=_v1("bgcb_jobs", V1_HOOKS["bgcb_jobs"]))
    def bgcb_jobs(self) -> Any:
        """Contract 1; replaced by :meth:`bgcb_active`."""
