"""Checks of the contract's shape: the plugin passes the core's loading checks, broken copies of it do not,
its options are plain values, and ids the core never minted reach no hook."""

from __future__ import annotations

import os
import types
import warnings
from typing import Any

import pytest

from bgcb import contract, hookimpl, hookspecs
from bgcb.errors import BackendInvalid
from bgcb.jobs import State, new_job_id
from bgcb.provider import Backend, installed

from .config import KitConfig
from .kit import Kit
from .observing import HookSpy

_JSON_SCALARS = (str, int, float, bool, type(None))


def non_json(value: Any, where: str = "") -> str | None:
    """Where ``value`` holds something JSON cannot carry (a tuple betrays pickle)."""
    if isinstance(value, dict):
        for k, v in value.items():
            found = f"{where}[{k!r}] (non-string key)" if not isinstance(k, str) else non_json(v, f"{where}[{k!r}]")
            if found:
                return found
        return None
    if isinstance(value, list):
        return next((f for i, v in enumerate(value) if (f := non_json(v, f"{where}[{i}]"))), None)
    return None if isinstance(value, _JSON_SCALARS) else f"{where} ({type(value).__name__})"


def plugin_of(config: KitConfig) -> tuple[object, str]:
    """A new plugin object of the backend under test, and where it came from."""
    if config.plugin is not None:
        return config.plugin(), "the plugin factory"
    found = installed()
    assert config.backend in found, (
        f"no backend named {config.backend!r} in the entry-point group 'bgcb.backends' "
        f"(installed: {', '.join(found) or 'none'}). Declare it in pyproject.toml under "
        '[project.entry-points."bgcb.backends"] and pip install the distribution.'
    )
    entry_point = found[config.backend].entry_point
    factory = entry_point.load()
    return (factory() if callable(factory) else factory), f"entry point {entry_point.value}"


def _unmarked_read(self: Any, job_id: str, drain: bool) -> None:
    return None


@hookimpl
def _misspelt(self: Any, job_id: str, drain: bool) -> None:
    return None


@hookimpl
def _cache_put(self: Any, cache_key: str, outcome: str, ttl: float | None) -> None:
    return None


def broken_copies(cls: type) -> list[tuple[str, type, str]]:
    """Subclasses of ``cls`` that break the contract's shape: (what is wrong, class, text the refusal must name)."""
    has_cache = callable(getattr(cls, "bgcb_cache_get", None)) and callable(getattr(cls, "bgcb_cache_put", None))
    half = {"bgcb_cache_get": None} if has_cache else {"bgcb_cache_put": _cache_put}
    copies: list[tuple[str, dict[str, Any], str]] = [
        ("bgcb_read without @hookimpl", {"bgcb_read": _unmarked_read}, "bgcb_read is not marked"),
        ("a misspelt hook bgcb_reed", {"bgcb_reed": _misspelt}, "bgcb_reed is not a bgcb backend hook"),
        ("the required hook bgcb_cas removed", {"bgcb_cas": None}, "required hook bgcb_cas is missing"),
        ("half the cache pair", half, "bgcb_cache_put and bgcb_cache_get go together"),
    ]
    return [(what, type(f"Broken{cls.__name__}", (cls,), attrs), names) for what, attrs, names in copies]


class ContractChecks:
    """The contract's shape (see :mod:`bgcb.contract`), and the ids the core refuses."""

    def test_plugin_meets_the_contract(self, kit_config: KitConfig) -> None:
        """The plugin passes the core's loading checks: required hooks marked, no unknown hooks, pairs whole."""
        plugin, where = plugin_of(kit_config)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            try:
                contract.plugin_manager(kit_config.backend, plugin, f" ({where})")
            except BackendInvalid as exc:
                raise AssertionError(
                    f"backend {kit_config.backend!r} ({where}) does not meet bgcb's backend contract "
                    f"{hookspecs.CONTRACT_VERSION}; loading it fails with:\n{exc}\nEvery backend implements "
                    f"{', '.join(hookspecs.REQUIRED)} as methods marked @bgcb.hookimpl (see hookspecs.BackendSpec)."
                ) from None
        old = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning) and "contract 1" in str(w.message)]
        assert not old, (
            f"backend {kit_config.backend!r} ({where}) still implements hooks of contract 1, which the core never "
            f"calls: {old} (see hookspecs.V1_HOOKS)."
        )

    def test_broken_copies_are_refused(self, kit_config: KitConfig) -> None:
        """A copy of the plugin with a hook unmarked, misspelt, missing, or half a pair is refused on loading, by name."""
        plugin, where = plugin_of(kit_config)
        if isinstance(plugin, types.ModuleType):
            pytest.skip(f"the backend's plugin ({where}) is a module: the kit cannot copy it with a hook broken")
        for what, broken, names in broken_copies(type(plugin)):
            try:
                instance = broken()
            except TypeError:
                pytest.skip(f"{type(plugin).__name__}() takes arguments: the kit cannot copy it with a hook broken")
            try:
                backend = Backend.from_plugin(kit_config.backend, instance, kit_config.load_options())
            except BackendInvalid as exc:
                assert names in str(exc), (
                    f"loading a copy of backend {kit_config.backend!r} with {what} was refused, but the message does "
                    f"not say {names!r}: {exc} (see bgcb.contract.problems and hookspecs.BackendSpec)."
                )
            else:
                backend.close()
                raise AssertionError(
                    f"a copy of backend {kit_config.backend!r} with {what} was loaded: the core must refuse it with "
                    "BackendInvalid naming the hook (see bgcb.contract and hookspecs.REQUIRED, hookspecs.PAIRS)."
                )

    def test_options_are_plain_values(self, kit: Kit) -> None:
        """Options come from bgcb_options and can be set from the environment."""
        bad = non_json(kit.backend.options)
        assert bad is None, (
            f"option {bad} is not a plain value: bgcb_options returns defaults of type int, float, bool or str "
            "(or None) so that BGCB_<BACKEND>_<OPTION> variables can set them (see hookspecs.BackendSpec.bgcb_options)."
        )

    def test_forged_ids_reach_no_hook(self, kit: Kit) -> None:
        """The core refuses malformed ids before any backend hook runs; well-formed unknown ids are unknown."""
        live = kit.sleeper(0.5)
        forged = ["../x", "1234", "", "abc/" + "d" * 20, str(os.getpid()), "../../etc/passwd", "*", "' OR 1=1 --"]
        forged += [live[:-1], live + "~signature", " " + live[1:], live[:12] + "." + live[13:], "x" * 25, "é" * 24]
        for job_id in forged:
            with HookSpy(kit.backend) as spy:
                snap, status = kit.backend.poll(job_id), kit.backend.status(job_id)
                result, cancelled = kit.backend.result(job_id), kit.backend.cancel(job_id)
                executed, lost = kit.backend.execute(job_id), kit.backend.lost(job_id, "kit")
            reached = sorted({name for name, _ in spy.with_id(job_id)})
            assert not reached, (
                f"the malformed id {job_id!r} reached the backend's {reached}: the core refuses ids that "
                "bgcb.jobs.new_job_id cannot have made before any hook runs (see hookspecs, 'Before any hook that "
                "takes a job_id')."
            )
            assert snap.status.state is State.UNKNOWN and status.state is State.UNKNOWN and result is None, (
                f"poll/status/result of the malformed id {job_id!r} gave {snap!r} / {status!r} / {result!r}: "
                "they must be 'unknown' with no outcome (see bgcb.lifecycle.Lifecycle.poll)."
            )
            assert cancelled is False and executed is None and lost is False, (
                f"cancel/execute/lost of the malformed id {job_id!r} gave {cancelled!r}/{executed!r}/{lost!r}: "
                "they must do nothing (see bgcb.lifecycle.Lifecycle.cancel)."
            )
        for job_id in (new_job_id(), live[:-1] + ("A" if live[-1] != "A" else "B")):
            assert kit.read(job_id) is None and kit.backend.hook.bgcb_load(job_id=job_id) is None, (
                f"bgcb_read/bgcb_load of {job_id!r}, an id that was never enqueued, must return None "
                "(see hookspecs.BackendSpec.bgcb_read, bgcb_load)."
            )
            assert kit.backend.status(job_id).state is State.UNKNOWN and kit.backend.cancel(job_id) is False, (
                f"an id that was never enqueued ({job_id!r}) must be 'unknown' and cancel must return False for it "
                "(see hookspecs.BackendSpec.bgcb_read)."
            )
        assert kit.value(live) is not None and kit.backend.status(live).state is State.SUCCEEDED, (
            "cancelling ids that resemble a live job's id stopped that job: cancel acts on the exact id only "
            "(see hookspecs.BackendSpec.bgcb_cas)."
        )
