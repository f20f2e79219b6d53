"""Span attributes from bgcb's job data, kept small: every span and event travels to the exporter."""

from __future__ import annotations

import json
import os
from typing import Any

from bgcb.joblog import callback_label
from bgcb.jobs import Job, Outcome, Update

#: Longest text of a progress value, a component id or a list of prop names on an event.
VALUE_CHARS = 128
#: Longest traceback kept on a failed run's exception event (the top of a deep one is dropped, not the end).
TRACEBACK_CHARS = 8000
#: Set to 0 to record progress events without their values (values may hold user data).
ENV_VALUES = "BGCB_OTEL_PROGRESS_VALUES"

JOB_ID = "bgcb.job_id"
CALLBACK = "bgcb.callback"
OWNER = "bgcb.owner"
ATTEMPT = "bgcb.attempt"
QUEUE_WAIT = "bgcb.queue_wait_seconds"
STATE = "bgcb.state"


def short(value: Any, limit: int = VALUE_CHARS) -> str:
    """``value`` as compact JSON text (a str as is), cut to ``limit`` characters with an ellipsis."""
    text = value if isinstance(value, str) else _json(value, limit)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: Any, budget: int) -> str:
    """Compact JSON of ``value`` that stops once ``budget`` characters are written: a progress value
    holding a whole figure costs no more to describe than a number."""
    parts: list[str] = []
    size = 0

    def put(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            put("{")
            for i, (key, inner) in enumerate(item.items()):
                if size > budget:
                    return
                put(("," if i else "") + json.dumps(str(key)[:budget]) + ":")
                walk(inner)
            put("}")
        elif isinstance(item, (list, tuple)):
            put("[")
            for i, inner in enumerate(item):
                if size > budget:
                    return
                put("," if i else "")
                walk(inner)
            put("]")
        elif item is None or isinstance(item, bool):
            put("null" if item is None else "true" if item else "false")
        elif isinstance(item, (int, float)):
            put(repr(item))
        else:
            put(json.dumps(str(item)[:budget]))

    walk(value)
    return "".join(parts)


def job_attributes(job: Job, job_id: str | None = None) -> dict[str, Any]:
    """What names a job on every span: its callback (as the outputs it writes), its owner, its id."""
    found: dict[str, Any] = {CALLBACK: callback_label(job), "messaging.system": "bgcb"}
    if job.owner:
        found[OWNER] = job.owner
    if job_id:
        found[JOB_ID] = job_id
        found["messaging.message.id"] = job_id
    return found


def span_name(verb: str, job: Job) -> str:
    """``bgcb <verb> <callback label>``: low cardinality (no job id), as span names should be."""
    return f"bgcb {verb} {callback_label(job) or 'job'}"


def update_event(update: Update) -> tuple[str, dict[str, Any]]:
    """The span event of one progress or set_props update: its name and attributes."""
    if update.get("type") == "props":
        props = update.get("props")
        names = ",".join(sorted(str(k) for k in props)) if isinstance(props, dict) else ""
        return "set_props", {"bgcb.component_id": short(update.get("id", "")), "bgcb.props": short(names)}
    if os.environ.get(ENV_VALUES, "1").strip().lower() in ("0", "false", "no", "off"):
        return "progress", {}
    return "progress", {"bgcb.progress": short(update.get("value"))}


def exception_event(outcome: Outcome) -> dict[str, Any]:
    """A failed run's ``exception`` event (OpenTelemetry's semantic conventions), from the outcome's text:
    the callback's exception object stays in the worker's runner, its traceback reaches us as text."""
    error = outcome.error or {}
    message, tb = str(error.get("msg", "")), str(error.get("tb") or "").rstrip()
    found = {"exception.message": message}
    last = tb.rsplit("\n", 1)[-1] if tb else ""
    kind = last.split(":", 1)[0].strip()
    if kind and " " not in kind:
        found["exception.type"] = kind
    if tb:
        found["exception.stacktrace"] = tb if len(tb) <= TRACEBACK_CHARS else "…" + tb[-(TRACEBACK_CHARS - 1) :]
    return found
