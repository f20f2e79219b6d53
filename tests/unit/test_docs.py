"""docs/writing-a-backend.md against the contract it documents (bgcb.hookspecs).

The guide gives each hook's signature as ``name(param, ...) -> return``, the
way :func:`inspect.signature` reads the hook specification without ``self``;
a hook added, renamed or re-parametrised in hookspecs fails here until the
guide says so.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bgcb import hookspecs

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "writing-a-backend.md"
MOVING = "Moving from contract 1"
REQUIRED_PART = "Required hooks"


def _hooks(spec: type) -> dict[str, Callable[..., object]]:
    return {name: getattr(spec, name) for name in dir(spec) if name.startswith("bgcb_")}


BACKEND = _hooks(hookspecs.BackendSpec)
OBSERVER = _hooks(hookspecs.ObserverSpec)
ALL = {**BACKEND, **OBSERVER}
CURRENT = sorted(name for name in ALL if name not in hookspecs.V1_HOOKS)


def signature(name: str) -> str:
    """The guide's form of a hook's signature: ``bgcb_cas(job_id, expect, state, data, ttl) -> bool``."""
    sig = inspect.signature(ALL[name])
    params = ", ".join(p for p in sig.parameters if p != "self")
    ret = sig.return_annotation
    ret = ret if isinstance(ret, str) else inspect.formatannotation(ret)
    return f"{name}({params}) -> {ret}"


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def section(text: str, title: str) -> str:
    """The part of ``text`` under the heading ``title``, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}\s*$", text, re.M)
    assert match, f"the guide has no heading '{title}'"
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def inline_spans(text: str) -> list[str]:
    """Inline code spans outside fenced code blocks (a span may wrap onto the next line)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]


def test_the_contract_has_hooks_to_document() -> None:
    assert set(hookspecs.REQUIRED) <= set(BACKEND)
    assert set(hookspecs.V1_HOOKS) <= set(BACKEND)
    assert len(CURRENT) >= len(hookspecs.REQUIRED) + len(OBSERVER)
    assert signature("bgcb_cas").startswith("bgcb_cas(job_id, expect, state, data, ttl) -> ")


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_hook_has_a_docstring(name: str) -> None:
    assert (inspect.getdoc(ALL[name]) or "").strip(), f"hookspecs: {name} has no docstring"


@pytest.mark.parametrize("name", CURRENT)
def test_every_hook_is_in_the_guide_with_its_signature(guide: str, name: str) -> None:
    expected = signature(name)
    assert expected in inline_spans(guide), f"docs/writing-a-backend.md should give `{expected}`"


@pytest.mark.parametrize("name", sorted(hookspecs.V1_HOOKS))
def test_contract_1_hooks_are_in_the_moving_section(guide: str, name: str) -> None:
    assert re.search(rf"\b{name}\b", section(guide, MOVING)), f"'{MOVING}' should say what replaces {name}"


def test_every_hook_signature_in_the_guide_is_exact(guide: str) -> None:
    """A hook written with parentheses in the prose is its exact current signature (no stale contract-1 forms)."""
    stale = []
    for span in inline_spans(guide):
        match = re.match(r"(bgcb_\w+)\(", span)
        if match and (match.group(1) not in ALL or span != signature(match.group(1))):
            stale.append(span)
    assert not stale, f"signatures that do not match bgcb.hookspecs: {stale}"


@pytest.mark.parametrize("name", hookspecs.REQUIRED)
def test_required_hooks_are_listed_as_required(guide: str, name: str) -> None:
    assert signature(name) in inline_spans(section(guide, REQUIRED_PART))


def test_optional_hooks_are_not_listed_as_required(guide: str) -> None:
    required = " ".join(inline_spans(section(guide, REQUIRED_PART)))
    optional = [n for n in BACKEND if n not in hookspecs.REQUIRED and n not in hookspecs.V1_HOOKS]
    assert not [n for n in optional if re.search(rf"\b{n}\(", required)]
