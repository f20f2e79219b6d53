"""Finding, loading and checking backends by name."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import bgcb
from bgcb import provider
from bgcb.errors import BackendInvalid, BackendLoadError, BackendNotFound, ConfigurationError


def _fake_distribution(root: Path, dist: str, name: str, target: str, module_src: str) -> None:
    """An installed distribution on ``root`` with one bgcb.backends entry point."""
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[bgcb.backends]\n{name} = {target}\n")
    module = target.split(":")[0]
    (root / f"{module}.py").write_text(textwrap.dedent(module_src))


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("fakebackend")]:
        del sys.modules[mod]


def test_unknown_name_lists_installed_and_suggests_distribution() -> None:
    with pytest.raises(BackendNotFound) as err:
        bgcb.manager("nope")
    text = str(err.value)
    assert "testing" in text and "pip install bgcb-nope" in text


def test_env_variable_selects_backend(monkeypatch) -> None:
    monkeypatch.setenv("BGCB_BACKEND", "nope2")
    assert provider.selected_name() == "nope2"
    assert provider.selected_name("testing") == "testing"


def test_broken_plugin_names_distribution_and_error(site) -> None:
    _fake_distribution(site, "bgcb-broken", "broken", "fakebackend_broken:Backend", "import not_a_module_anywhere\n")
    with pytest.raises(BackendLoadError) as err:
        provider.load("broken")
    text = str(err.value)
    assert "bgcb-broken" in text and "not_a_module_anywhere" in text


def test_a_backend_built_for_another_contract_refuses_the_core(site) -> None:
    """The backend's own check (bgcb.contract.built_for) reaches the user as it is: versions and what to install."""
    _fake_distribution(
        site,
        "bgcb-future",
        "future",
        "fakebackend_future:Backend",
        """
        from bgcb.contract import built_for

        built_for("bgcb-future", 3, 4)
        """,
    )
    with pytest.raises(BackendLoadError) as err:
        provider.load("future")
    text = str(err.value)
    assert "bgcb-future 1.2.3 was built for backend contract 3 or 4" in text
    assert f"bgcb {bgcb.__version__} speaks contract {bgcb.CONTRACT_VERSION}" in text
    assert "pip install --upgrade bgcb-future bgcb" in text and "failed to load" not in text


def test_plugin_missing_required_hook_is_refused(site) -> None:
    _fake_distribution(
        site,
        "bgcb-partial",
        "partial",
        "fakebackend_partial:Backend",
        """
        from bgcb import hookimpl

        class Backend:
            @hookimpl
            def bgcb_enqueue(self, job_id, job, data):
                pass
        """,
    )
    with pytest.raises(BackendInvalid) as err:
        provider.load("partial")
    text = str(err.value)
    assert "bgcb_cas" in text and "bgcb-partial" in text


def test_hook_with_wrong_signature_is_refused() -> None:
    from bgcb_testing.backend import TestingBackend

    class Wrong(TestingBackend):
        @bgcb.hookimpl
        def bgcb_read(self, job_id, extra):  # type: ignore[override]
            return None

    with pytest.raises(BackendInvalid) as err:
        provider.Backend.from_plugin("wrong", Wrong())
    assert "extra" in str(err.value)


def test_options_from_env_and_kwargs(monkeypatch) -> None:
    monkeypatch.setenv("BGCB_TESTING_WORKERS", "3")
    backend = provider.load("testing", fresh=True)
    assert backend.options["workers"] == 3
    backend.close()
    backend = provider.load("testing", fresh=True, workers=1)
    assert backend.options["workers"] == 1
    backend.close()


def test_unknown_option_lists_known_ones() -> None:
    with pytest.raises(ConfigurationError) as err:
        provider.load("testing", fresh=True, wrokers=2)
    assert "wrokers" in str(err.value) and "workers" in str(err.value)


def test_bad_env_value_is_explained(monkeypatch) -> None:
    monkeypatch.setenv("BGCB_TESTING_WORKERS", "many")
    with pytest.raises(ConfigurationError) as err:
        provider.load("testing", fresh=True)
    assert "BGCB_TESTING_WORKERS" in str(err.value)


def test_same_backend_is_shared_between_managers() -> None:
    a, b = bgcb.manager("testing"), bgcb.manager("testing", timeout=3)
    assert a.backend is b.backend


def test_core_imports_no_backend() -> None:
    core = Path(bgcb.__file__).parent
    for path in core.glob("*.py"):
        text = path.read_text()
        for name in ("bgcb_diskcache", "bgcb_celery", "bgcb_testing", "import diskcache", "import celery"):
            assert name not in text, f"{path.name} mentions {name}"


def test_cli_backends_lists_and_marks_selected(capsys) -> None:
    from bgcb.cli import main

    assert main(["--backend", "testing", "backends"]) == 0
    out = capsys.readouterr().out
    assert "* testing" in out and "bgcb-testing" in out


def test_cli_doctor_hides_passwords_in_url_options(capsys, monkeypatch) -> None:
    from bgcb.cli import main
    from bgcb.cli import redact as _redact

    assert _redact("redis://:s3cret@db:6379/0") == "redis://:***@db:6379/0"
    assert _redact("amqp://guest:guest@127.0.0.1:5672//") == "amqp://guest:***@127.0.0.1:5672//"
    assert _redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert main(["--backend", "testing", "doctor"]) == 0
    assert "result_ttl = 3600.0" in capsys.readouterr().out


def test_an_observer_entry_point_naming_a_class_hears_events(tmp_path, monkeypatch) -> None:
    """An entry point in ``bgcb.plugins`` may name a class (made into an instance) or an object."""
    from bgcb import observers
    from bgcb.jobs import Job

    info = tmp_path / "bgcb_heard-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bgcb-heard\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[bgcb.plugins]\nheard = fakeobserver_heard:Heard\n")
    (tmp_path / "fakeobserver_heard.py").write_text(
        textwrap.dedent(
            """
            import bgcb

            HEARD = []


            class Heard:
                @bgcb.hookimpl
                def bgcb_job_submitted(self, job_id, job):
                    HEARD.append((type(self).__name__, job_id))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(observers, "_pm", None)  # entry points load at first use
    try:
        observers.submitted("job-1", Job(callback="k", args=[]))
        import fakeobserver_heard

        assert fakeobserver_heard.HEARD == [("Heard", "job-1")]
    finally:
        sys.modules.pop("fakeobserver_heard", None)
