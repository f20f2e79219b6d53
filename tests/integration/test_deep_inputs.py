"""Inputs nested as deep as Dash itself accepts: a background callback runs, or fails alone with a clear
message as any failing callback does (before: Job encoding and the gate's JSON decoding recursed past
Python's limit, an internal error)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

DEEP = "__deep_value__"


def _post(url: str, body: dict, depth: int) -> tuple[int, str]:
    """POST ``body`` with the deep value spliced in as text: no encoder here recurses through it."""
    text = json.dumps(body).replace(json.dumps(DEEP), "[" * depth + "]" * depth)
    request = urllib.request.Request(url, data=text.encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def _body(output: str, button: str, n: int) -> dict:
    return {
        "output": output,
        "outputs": {"id": output.split(".")[0], "property": "children"},
        "inputs": [{"id": button, "property": "n_clicks", "value": n}],
        "state": [{"id": "echo-in", "property": "value", "value": DEEP}],
        "changedPropIds": [f"{button}.n_clicks"],
    }


def _run(base: str, end_id: str | None, depth: int) -> tuple[int, str]:
    """The renderer's flow for the background echo: the first request, then polls until an answer."""
    params = [("endId", end_id)] if end_id else []
    path = "/_dash-update-component"
    status, text = _post(
        base + path + ("?" + urllib.parse.urlencode(params) if params else ""),
        _body("echo-out.children", "echo-btn", depth),
        depth,
    )
    deadline = time.monotonic() + 20
    first = json.loads(text) if status == 200 else {}
    while status == 200:
        answer = json.loads(text)
        if "response" in answer or "job" not in first:
            return status, text
        query = [("cacheKey", first["cacheKey"]), ("job", first["job"]), *params]
        status, text = _post(
            base + path + "?" + urllib.parse.urlencode(query), _body("echo-out.children", "echo-btn", depth), depth
        )
        assert time.monotonic() < deadline, "the job never answered"
        time.sleep(0.05)
    return status, text


def test_any_depth_plain_dash_accepts_runs_or_fails_only_its_callback(live_server, client) -> None:
    base, end_id = live_server.url.rstrip("/"), client.end_id
    seen = {}
    for depth in [*range(900, 1000, 4), 1000, 1500, 3000]:
        plain, _ = _post(base + "/_dash-update-component", _body("plain-echo-out.children", "plain-echo-btn", depth), depth)
        status, text = _run(base, end_id, depth)
        seen[depth] = (plain, status)
        if plain == 200:
            # It ran, or it failed as any failing callback does (Dash answers a callback's error with its
            # message, a 500 without on_error), with bgcb's reason: never an internal error.
            ran = status == 200 and '"echo ' in text
            failed = any(why in text for why in ("inputs cannot be stored for a worker", "nest too deeply to be read back"))
            failed |= "cannot be sent to the browser as JSON" in text
            assert ran or failed, (depth, status, text[-800:])
        else:
            assert status == plain, f"depth {depth}: plain Dash {plain}, background {status}: {text[-500:]}"
    deepest = max(d for d, (p, _) in seen.items() if p == 200)
    outcomes = sorted({s for p, s in seen.values() if p == 200})
    print(f"deep inputs: plain Dash accepts up to depth {deepest}; the background callback answered {outcomes} there")
