"""The job's cache key (``bgcb.inputs.cache_key``): what it depends on, and that a callback's source is
read once per function object instead of on every request."""

from __future__ import annotations

import inspect

import pytest

from bgcb import inputs


def _callback(a, b):
    return a + b


def _other(a, b):
    return a - b


def test_same_inputs_same_key_and_each_ingredient_changes_it() -> None:
    key = inputs.cache_key(_callback, [1, 2], [], None, None)
    assert key == inputs.cache_key(_callback, [1, 2], [], None, None)
    assert key != inputs.cache_key(_callback, [1, 3], [], None, None)
    assert key != inputs.cache_key(_other, [1, 2], [], None, None)
    assert key != inputs.cache_key(_callback, [1, 2], [], ["b.n_clicks"], None)
    assert key != inputs.cache_key(_callback, [1, 2], [], None, [lambda: "user-a"])
    assert inputs.cache_key(_callback, [1, 2], [], None, [lambda: "a"]) != inputs.cache_key(
        _callback, [1, 2], [], None, [lambda: "b"]
    )


def test_ignored_arguments_do_not_change_the_key() -> None:
    assert inputs.cache_key(_callback, [1, 2], [1], None, None) == inputs.cache_key(_callback, [1, 99], [1], None, None)
    assert inputs.cache_key(_callback, [1, 2], 0, None, None) == inputs.cache_key(_callback, [7, 2], 0, None, None)
    by_name = {"a": 1, "b": 2}
    assert inputs.cache_key(_callback, by_name, ["b"], None, None) == inputs.cache_key(
        _callback, {"a": 1, "b": 3}, ["b"], None, None
    )


def test_the_source_is_read_once_per_function_object(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[object] = []
    real = inspect.getsource

    def counting(obj):
        reads.append(obj)
        return real(obj)

    monkeypatch.setattr(inspect, "getsource", counting)

    def fresh(x):  # a function object no earlier test has keyed
        return x

    for n in range(5):
        inputs.cache_key(fresh, [n], [], None, None)
    assert reads == [fresh]

    def fresh(x):  # noqa: F811  # what the debug reloader does: a new object, read again
        return x * 2

    inputs.cache_key(fresh, [0], [], None, None)
    assert len(reads) == 2


def test_a_function_without_source_is_keyed_by_name() -> None:
    made = eval("lambda n: n")  # no source file
    assert inputs.cache_key(made, [1], [], None, None) == inputs.cache_key(made, [1], [], None, None)


def test_inputs_nested_too_deep_for_repr_still_get_a_key() -> None:
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    key = inputs.cache_key(_callback, [deep, 1], [], None, None)
    assert key == inputs.cache_key(_callback, [deep, 1], [], None, None)
    assert key != inputs.cache_key(_callback, [deep, 2], [], None, None)
