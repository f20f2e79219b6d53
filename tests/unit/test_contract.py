"""The contract checked the way pluggy hosts check it, with messages that say what to fix."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import bgcb
from bgcb import provider
from bgcb.contract import BackendPlugin
from bgcb.errors import BackendInvalid, ConfigurationError
from bgcb_testing.backend import TestingBackend


def _refused(plugin: object) -> str:
    with pytest.raises(BackendInvalid) as err:
        provider.Backend.from_plugin("faulty", plugin)
    return str(err.value)


def test_required_hook_without_hookimpl_is_refused() -> None:
    class Unmarked(TestingBackend):
        def bgcb_cas(self, job_id, expect, state, data, ttl):  # no @hookimpl: pluggy would never call it
            return super().bgcb_cas(job_id, expect, state, data, ttl)

    text = _refused(Unmarked())
    assert "bgcb_cas is not marked as a hook implementation: decorate it with @bgcb.hookimpl" in text


@pytest.mark.parametrize("marked", [True, False])
def test_misspelt_hook_is_refused_with_a_suggestion(marked: bool) -> None:
    def bgcb_reed(self, job_id, drain):
        return None

    Misspelt = type("Misspelt", (TestingBackend,), {"bgcb_reed": bgcb.hookimpl(bgcb_reed) if marked else bgcb_reed})
    text = _refused(Misspelt())
    assert "bgcb_reed is not a bgcb backend hook. Did you mean bgcb_read?" in text


def test_observer_hook_on_a_backend_is_refused() -> None:
    class Observing(TestingBackend):
        @bgcb.hookimpl
        def bgcb_job_finished(self, job_id):
            pass

    assert "bgcb_job_finished is an observer hook" in _refused(Observing())


def test_half_of_a_pair_is_refused() -> None:
    class HalfCache(TestingBackend):
        bgcb_cache_get = None  # left out; bgcb_cache_put still there

    assert "bgcb_cache_put and bgcb_cache_get go together" in _refused(HalfCache())


def test_contract_one_backend_is_told_how_to_move() -> None:
    class V1:
        @bgcb.hookimpl
        def bgcb_submit(self, job):
            return "x"

        @bgcb.hookimpl
        def bgcb_status(self, job_id):
            return None

    text = _refused(V1())
    assert "the required hook bgcb_enqueue is missing" in text
    assert "bgcb_submit belongs to contract 1" in text and "implement bgcb_enqueue" in text


def test_contract_one_hook_beside_contract_two_warns() -> None:
    class Moving(TestingBackend):
        @bgcb.hookimpl
        def bgcb_poll(self, job_id):
            return None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = provider.Backend.from_plugin("moving", Moving())
    backend.close()
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("bgcb_poll" in m and "contract 1" in m and "backend 'moving'" in m for m in messages), messages


def test_testing_backend_satisfies_the_protocol() -> None:
    assert isinstance(TestingBackend(), BackendPlugin)


def test_backend_may_not_declare_lifecycle_options() -> None:
    class Owning(TestingBackend):
        @bgcb.hookimpl
        def bgcb_options(self):
            return {"workers": 1, "result_ttl": 5.0}

    with pytest.raises(ConfigurationError, match="result_ttl.*core's lifecycle options"):
        provider.Backend.from_plugin("owning", Owning())


def test_options_are_read_through_the_hook_and_lifecycle_options_apply() -> None:
    backend = provider.load("testing", fresh=True, workers=1, result_ttl=7.0)
    assert backend.options == {"workers": 1}
    assert backend.settings["result_ttl"] == 7.0
    backend.close()


def test_role_reaches_configure() -> None:
    seen: list[str] = []

    class Noting(TestingBackend):
        @bgcb.hookimpl
        def bgcb_configure(self, options, role, jobs):
            seen.append(role)
            super().bgcb_configure(options, role, jobs)

    with provider.role("cli"):
        provider.Backend.from_plugin("noting", Noting()).close()
    provider.Backend.from_plugin("noting", Noting()).close()
    assert seen == ["cli", "web"]


def test_trace_hooks_logs_every_call() -> None:
    code = (
        "import bgcb; from bgcb import provider; from bgcb.jobs import Job\n"
        "b = provider.load('testing', fresh=True); b.status(b.submit(Job(callback='0'*64, args=[]))); b.close()\n"
    )
    env = {"BGCB_TRACE_HOOKS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "[backend:testing] bgcb_enqueue(job_id=" in done.stderr
    assert "[backend:testing] bgcb_read(" in done.stderr and " ms" in done.stderr
