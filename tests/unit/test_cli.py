"""The command line's everyday mistakes get one line that says what to type."""

from __future__ import annotations

import os

import pytest

from bgcb import ConfigurationError
from bgcb.cli import app_module, main


def test_version_names_bgcb_and_its_backends(capsys) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bgcb ") and "bgcb-testing" in out


ANYWHERE = [["-b", "testing", "backends"], ["backends", "-b", "testing"], ["backends", "--backend", "TESTING"]]


@pytest.mark.parametrize("argv", ANYWHERE)
def test_the_backend_option_goes_anywhere_in_any_case(argv, capsys) -> None:
    assert main(argv) == 0
    assert "* testing" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("app.py", "not its file: bgcb worker app"),
        (os.path.join("src", "app.py"), "cd src && bgcb worker app"),
        ("app:server", "without ':server': bgcb worker app"),
        ("my app", "is not a module name"),
    ],
)
def test_a_file_or_an_attribute_instead_of_a_module_says_what_to_type(given, says) -> None:
    with pytest.raises(ConfigurationError, match=says.replace("(", r"\(")):
        app_module(given)


def test_a_module_not_in_this_directory_says_where_to_run(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["-b", "testing", "worker", "no_such_app_here"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no module 'no_such_app_here' in" in err and "run the command in the directory" in err


def test_an_app_whose_own_import_fails_shows_that_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_app.py").write_text("import module_the_app_needs_but_is_missing\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModuleNotFoundError, match="module_the_app_needs_but_is_missing"):
        main(["-b", "testing", "worker", "broken_app"])


def test_worker_help_lists_every_backends_options_and_variables(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    out = capsys.readouterr().out
    assert "BGCB_TESTING_WORKERS" in out and "BGCB_TESTING_NO_WORKER_AFTER" in out


def test_reading_a_store_that_does_not_exist_creates_none(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("bgcb_diskcache")
    store = tmp_path / "nothing-ran-here"
    monkeypatch.setenv("BGCB_DISKCACHE_DIRECTORY", str(store))
    assert main(["-b", "diskcache", "jobs"]) == 2
    assert "no job store at" in capsys.readouterr().err
    assert main(["-b", "diskcache", "doctor"]) == 1
    assert "FAIL backend loads" in capsys.readouterr().out
    assert not store.exists(), "bgcb jobs/doctor made an empty store"


def test_jobs_lists_each_jobs_owner(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("bgcb_diskcache")
    from bgcb import provider
    from bgcb.jobs import Job

    monkeypatch.setenv("BGCB_DISKCACHE_DIRECTORY", str(tmp_path / "store"))
    backend = provider.load("diskcache", fresh=True, autostart=False)
    try:
        alice = backend.submit(Job(callback="k", args=[], owner="alice"))
        nobody = backend.submit(Job(callback="k", args=[]))
        assert main(["-b", "diskcache", "jobs"]) == 0
    finally:
        backend.close()
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.split()}
    assert rows["JOB"][-1] == "OWNER"
    assert rows[alice][1] == "queued" and rows[alice][-1] == "alice"
    assert rows[nobody][-1] == "-"


def test_doctor_names_the_versions_a_backend_runs_on() -> None:
    from importlib import metadata

    from bgcb.cli_inspect import _requirement_versions

    found = _requirement_versions("bgcb-diskcache")
    assert f"diskcache {metadata.version('diskcache')}" in found and "bgcb" not in found.split(", ")[0], found
