"""The worker's log line per job: the callback's outputs, the outcome at its level, the traceback of errors."""

from __future__ import annotations

import logging

from bgcb import joblog
from bgcb.jobs import Job, Outcome


def _job(outputs) -> Job:
    return Job(callback="c" * 64, args=[], context={"outputs_list": outputs})


def test_the_callback_is_named_by_its_outputs() -> None:
    assert joblog.callback_label(_job({"id": "graph", "property": "figure"})) == "graph.figure"
    many = [{"id": "out", "property": "children"}, [{"id": {"type": "row", "index": 1}, "property": "value"}]]
    assert joblog.callback_label(_job(many)) == "out.children + {'type': 'row', 'index': 1}.value"
    assert joblog.callback_label(Job(callback="c" * 64, args=[])) == "c" * 12


def test_each_outcome_at_its_level_with_the_traceback_of_errors(caplog) -> None:
    caplog.set_level(logging.INFO, logger="bgcb.jobs")
    job = _job({"id": "out", "property": "children"})
    joblog.ran("J1", job, Outcome.of_value(1), 0.25)
    joblog.ran("J2", job, Outcome.failure("boom", "Traceback (most recent call last):\n  ValueError: boom\n"), 1.5)
    joblog.ran("J3", job, Outcome.timed_out("ran longer than 2 s"), 2.0)
    levels = {r.getMessage().split()[2]: r.levelno for r in caplog.records}
    assert levels == {"J1": logging.INFO, "J2": logging.ERROR, "J3": logging.WARNING}
    text = caplog.text
    assert "job J1 (out.children) succeeded in 0.250 s" in text
    assert "job J2 (out.children) failed after 1.500 s: boom\nTraceback" in text and "ValueError: boom" in text
    assert "job J3 (out.children) timed out" in text
