"""A client that speaks the Dash renderer's protocol for background callbacks.

It does what the browser does, without a browser: loads the page (for Dash
4.4's signed ``end_id``), posts the first request to
``/_dash-update-component``, then polls with ``cacheKey``/``job``/``endId``
until the job ends, collecting progress and set_props updates on the way. It
talks to a live server over HTTP (``DashClient.http(url)``) or to a Flask
test client (``DashClient.wsgi(app)``), so users' tests need no server.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Prop = tuple[Any, str]  # (component id, property)
Value = tuple[Any, str, Any]  # (component id, property, value)


@dataclass
class Response:
    """One HTTP answer: status code and decoded JSON body (None when empty)."""

    status: int
    body: Any = None
    text: str = ""


@dataclass
class Run:
    """What one background-callback run looked like from the browser."""

    handles: dict[str, Any]
    polls: int = 0
    #: HTTP requests the run took: the first one and every poll.
    requests: int = 0
    progress: list[dict[str, Any]] = field(default_factory=list)
    side_updates: list[dict[str, Any]] = field(default_factory=list)
    final: Response | None = None

    def record(self, body: dict[str, Any]) -> None:
        """Keep what the renderer applies from any answer: progress and set_props."""
        if body.get("progress"):
            self.progress.append(body["progress"])
        if body.get("sideUpdate"):
            self.side_updates.append(body["sideUpdate"])

    @property
    def outputs(self) -> dict[str, Any] | None:
        """``{component_id: {prop: value}}`` of the final answer, or None for
        204 No Content (no_update, cancelled)."""
        if self.final is None or self.final.status == 204 or not self.final.body:
            return None
        return self.final.body.get("response")

    def output(self, component_id: Any, prop: str) -> Any:
        outputs = self.outputs or {}
        return outputs.get(_id_str(component_id), {}).get(prop)

    @property
    def job(self) -> str:
        return self.handles["job"]


def _id_str(component_id: Any) -> str:
    if isinstance(component_id, dict):
        return json.dumps(component_id, sort_keys=True, separators=(",", ":"))
    return str(component_id)


def _prop(component_id: Any, prop: str, value: Any = None, with_value: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {"id": component_id, "property": prop}
    if with_value:
        item["value"] = value
    return item


class DashClient:
    """Drives a Dash app's background callbacks through its HTTP endpoints."""

    def __init__(self, get: Callable[[str], Response], post: Callable[[str, dict[str, Any]], Response]) -> None:
        self._get = get
        self._post = post
        self.end_id: str | None = None
        self._dependencies: list[dict[str, Any]] | None = None

    # -- transports --------------------------------------------------------------

    @classmethod
    def http(cls, base_url: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> DashClient:
        """A client on a live server; ``headers`` go with every request."""
        base = base_url.rstrip("/")
        extra = dict(headers or {})

        def send(req: urllib.request.Request) -> Response:
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    text = resp.read().decode()
                    return Response(resp.status, _maybe_json(text), text)
            except urllib.error.HTTPError as err:
                text = err.read().decode(errors="replace")
                return Response(err.code, _maybe_json(text), text)

        def get(path: str) -> Response:
            return send(urllib.request.Request(base + path, headers=extra))

        def post(path: str, body: dict[str, Any]) -> Response:
            data = json.dumps(body).encode()
            return send(urllib.request.Request(base + path, data=data, headers={**extra, "Content-Type": "application/json"}))

        return cls(get, post)

    @classmethod
    def wsgi(cls, app: Any) -> DashClient:
        """A client on a Dash app (or its Flask server) without any server."""
        server = getattr(app, "server", app)
        test = server.test_client()

        def wrap(resp: Any) -> Response:
            text = resp.get_data(as_text=True)
            return Response(resp.status_code, _maybe_json(text), text)

        return cls(lambda p: wrap(test.get(p)), lambda p, b: wrap(test.post(p, json=b)))

    # -- the protocol --------------------------------------------------------------

    def load(self) -> DashClient:
        """Load the page as the browser does and keep its ``end_id`` (Dash 4.4)."""
        page = self._get("/")
        match = re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>', page.text, re.S)
        if match:
            self.end_id = json.loads(match.group(1)).get("end_id")
        return self

    def dependencies(self) -> list[dict[str, Any]]:
        if self._dependencies is None:
            self._dependencies = self._get("/_dash-dependencies").body or []
        return self._dependencies

    def _callback_output(self, outputs: list[Prop]) -> str:
        """The registered output string of the callback that has ``outputs``."""
        wanted = [f"{_id_str(cid)}.{prop}" for cid, prop in outputs]
        exact = wanted[0] if len(wanted) == 1 else ".." + "...".join(wanted) + ".."
        for dep in self.dependencies():
            if dep["output"] == exact:
                return exact
        # pattern-matching: match on property names and the non-wildcard keys
        for dep in self.dependencies():
            text = dep["output"]
            if all(f".{prop}" in text for _, prop in outputs) and any(
                isinstance(cid, dict) and all(f'"{k}"' in text for k in cid) for cid, _ in outputs
            ):
                return text
        raise LookupError(f"no callback has outputs {wanted}")

    def request(
        self,
        outputs: list[Prop],
        inputs: Sequence[Value],
        state: Sequence[Value] = (),
        *,
        triggered: list[Prop] | None = None,
        query: dict[str, Any] | None = None,
    ) -> Response:
        """POST one callback request, as the renderer builds it."""
        output = self._callback_output(outputs)
        multi = output.startswith("..")
        body = {
            "output": output,
            "outputs": [_prop(c, p, with_value=False) for c, p in outputs] if multi else _prop(*outputs[0], with_value=False),
            "inputs": [_prop(c, p, v) for c, p, v in inputs],
            "state": [_prop(c, p, v) for c, p, v in state],
            "changedPropIds": [
                f"{_id_str(c)}.{p}" for c, p in (triggered if triggered is not None else [i[:2] for i in inputs[:1]])
            ],
        }
        params: list[tuple[str, Any]] = []
        for key, value in (query or {}).items():
            for item in value if isinstance(value, (list, tuple)) else [value]:
                params.append((key, item))
        if self.end_id:
            params.append(("endId", self.end_id))
        path = "/_dash-update-component"
        if params:
            path += "?" + urllib.parse.urlencode(params)
        return self._post(path, body)

    def start(
        self,
        outputs: list[Prop],
        inputs: Sequence[Value],
        state: Sequence[Value] = (),
        *,
        old_jobs: Sequence[str] = (),
        **kw: Any,
    ) -> dict[str, Any]:
        """The first request: returns the handles (``cacheKey``, ``job``, ...)."""
        query = {"oldJob": list(old_jobs)} if old_jobs else None
        resp = self.request(outputs, inputs, state, query=query, **kw)
        if resp.status != 200 or not isinstance(resp.body, dict) or "job" not in resp.body:
            raise AssertionError(f"first request did not start a job: {resp.status} {resp.text[:500]}")
        return resp.body

    def poll(
        self, handles: dict[str, Any], outputs: list[Prop], inputs: Sequence[Value], state: Sequence[Value] = (), **kw: Any
    ) -> Response:
        query = {"cacheKey": handles["cacheKey"], "job": handles["job"]}
        return self.request(outputs, inputs, state, query=query, **kw)

    def run(
        self,
        outputs: list[Prop],
        inputs: Sequence[Value],
        state: Sequence[Value] = (),
        *,
        handles: dict[str, Any] | None = None,
        interval: float = 0.05,
        timeout: float = 30.0,
        on_poll: Callable[[Run], None] | None = None,
        **kw: Any,
    ) -> Run:
        """Start (unless ``handles`` are given) and poll until the job ends, as the renderer does.

        The first answer ends the run when it carries ``response`` or is not
        a 200 (a manager that answers at once, e.g. ``bgcb.manager(hold=...)``).
        """
        if handles is None:
            first = self.request(outputs, inputs, state, query=kw.pop("query", None), **kw)
            body = first.body if isinstance(first.body, dict) else {}
            run = Run(body)
            run.requests = 1
            if first.status != 200 or "response" in body:
                run.record(body)
                run.final = first
                return run
            if "job" not in body:
                raise AssertionError(f"first request did not start a job: {first.status} {first.text[:500]}")
            run.record(body)
        else:
            run = Run(handles)
        deadline = time.monotonic() + timeout
        while True:
            resp = self.poll(run.handles, outputs, inputs, state, **kw)
            run.polls += 1
            run.requests += 1
            body = resp.body if isinstance(resp.body, dict) else {}
            run.record(body)
            if resp.status != 200 or "response" in body:
                run.final = resp
                return run
            if on_poll is not None:
                on_poll(run)
            if time.monotonic() > deadline:
                raise AssertionError(f"background job still pending after {timeout} s ({run.polls} polls)")
            time.sleep(interval)

    def cancel(self, cancel_input: Prop, job: str, value: Any = 1) -> Response:
        """Click a ``cancel`` input of a running job, as the renderer does."""
        cid, prop = cancel_input
        return self.request([(cid, "id")], [(cid, prop, value)], query={"cancelJob": [job]})


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
