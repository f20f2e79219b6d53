"""The kit itself: each check fails, with its message, on a backend that
breaks the rule it checks (a faulty variant of the ``testing`` backend)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bgcb import hookimpl
from bgcb.jobs import Outcome, Update, is_job_id
from bgcb.provider import Backend
from bgcb_testing import TestingBackend
from bgcb_testing.conformance import BackendConformance, Kit, KitConfig


class ForgedCancel(TestingBackend):
    @hookimpl
    def bgcb_cancel(self, job_id: str) -> bool:
        super().bgcb_cancel(job_id)
        return True  # claims to cancel anything


class LatestProgressWins(TestingBackend):
    @hookimpl
    def bgcb_progress(self, job_id: str) -> list[Update]:
        return super().bgcb_progress(job_id)[-1:]  # Dash's managers: latest wins, the rest lost

    @hookimpl
    def bgcb_poll(self, job_id: str) -> None:
        return None


class ConsumingResult(TestingBackend):
    @hookimpl
    def bgcb_result(self, job_id: str) -> Outcome | None:
        outcome = super().bgcb_result(job_id)
        if outcome is not None:
            self._records[job_id].outcome = None  # read once, then gone
        return outcome


class CancelNotIdempotent(TestingBackend):
    @hookimpl
    def bgcb_cancel(self, job_id: str) -> bool:
        return super().bgcb_cancel(job_id) or (is_job_id(job_id) and job_id in self._records)


class CacheNeverExpires(TestingBackend):
    @hookimpl
    def bgcb_cached(self, cache_key: str) -> Outcome | None:
        entry = self._cache.get(cache_key)
        return Outcome.from_json(entry[0]) if entry else None


class LastInFirstOut(TestingBackend):
    def __init__(self) -> None:
        super().__init__()
        self._queue = queue.LifoQueue()


class MoreThreadsThanPromised(TestingBackend):
    @hookimpl
    def bgcb_configure(self, options: dict[str, Any], hook: Any) -> None:
        super().bgcb_configure({**options, "workers": 2 * options["workers"]}, hook)


@contextmanager
def _kit(plugin: type, tmp_path: Path) -> Iterator[Kit]:
    backend = Backend.from_plugin("faulty", plugin(), {"workers": 2})
    kit = Kit(backend, KitConfig(backend="faulty", plugin=plugin, job_timeout=10), tmp_path)
    try:
        yield kit
    finally:
        kit.cleanup()
        backend.close()


@pytest.mark.parametrize(
    "plugin, check, message",
    [
        (ForgedCancel, "test_unknown_and_forged_ids", r"must return False for an id the backend never issued"),
        (LatestProgressWins, "test_progress_delivered_once_in_order", r"exactly once, oldest first, none lost"),
        (LatestProgressWins, "test_set_props_and_progress_in_order", r"several set_props between two polls must all arrive"),
        (ConsumingResult, "test_value_outcome", r"reading a result must not remove it"),
        (CancelNotIdempotent, "test_cancel_is_idempotent", r"cancel is idempotent"),
        (CacheNeverExpires, "test_cache_by_key_and_expiry", r"cached outcomes expire"),
        (LastInFirstOut, "test_fifo_order", r"jobs start in FIFO order"),
        (MoreThreadsThanPromised, "test_concurrency_bound", r"jobs ran at once with workers=2"),
    ],
)
def test_check_fails_with_its_message(plugin: type, check: str, message: str, tmp_path: Path) -> None:
    with _kit(plugin, tmp_path) as kit:
        with pytest.raises(AssertionError, match=message):
            getattr(BackendConformance(), check)(kit)


def test_same_checks_pass_on_the_sound_backend(tmp_path: Path) -> None:
    with _kit(TestingBackend, tmp_path) as kit:
        suite = BackendConformance()
        for check in (
            "test_unknown_and_forged_ids",
            "test_progress_delivered_once_in_order",
            "test_cancel_is_idempotent",
            "test_fifo_order",
            "test_concurrency_bound",
        ):
            getattr(suite, check)(kit)
