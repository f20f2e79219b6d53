"""A browser page as dash-renderer drives it: load the page, click, poll every ``interval``.

One keep-alive connection per page, like a browser's (or, with ``fresh=True``,
a new connection for every request, closed after it). A click's time runs
from sending the first request to receiving the answer that carries the
callback's ``response`` (what the renderer then paints).
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

ENDPOINT = "/_dash-update-component"


@dataclass
class Click:
    seconds: float
    requests: int
    status: int
    answer: dict[str, Any]

    def output(self, component: str) -> Any:
        return self.answer.get("response", {}).get(component, {}).get("children")


class Browser:
    def __init__(self, url: str, interval: float = 1.0, timeout: float = 120.0, fresh: bool = False) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.interval, self.timeout = interval, timeout
        #: A new TCP connection per request (connect, send, read, close) instead of one kept alive.
        self.fresh = fresh
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        self.end_id: str | None = None

    def _send(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.fresh:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request(method, path, body=body, headers={**headers, "Connection": "close"})
                resp = conn.getresponse()
                return resp.status, resp.read()
            finally:
                conn.close()
        for attempt in (1, 2):  # a keep-alive connection the server closed: reconnect once
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def load(self) -> Browser:
        status, page = self._send("GET", "/")
        if status != 200:
            raise RuntimeError(f"page load failed: {status} {page[:300]!r}")
        found = re.search(rb'"end_id":\s*"([^"]+)"', page)
        self.end_id = found.group(1).decode() if found else None
        return self

    def _post(self, body: dict[str, Any], query: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
        if self.end_id:
            query = [("endId", self.end_id), *query]
        path = ENDPOINT + ("?" + urllib.parse.urlencode(query) if query else "")
        status, data = self._send("POST", path, json.dumps(body).encode())
        return status, (json.loads(data) if data else {})

    def click(self, button: str, output: str, state: list[tuple[str, str, Any]] = (), n_clicks: int = 1) -> Click:
        """Click ``button`` (its callback writes ``output``.children) and wait for the answer."""
        body = {
            "output": f"{output}.children",
            "outputs": {"id": output, "property": "children"},
            "inputs": [{"id": button, "property": "n_clicks", "value": n_clicks}],
            "state": [{"id": c, "property": p, "value": v} for c, p, v in state],
            "changedPropIds": [f"{button}.n_clicks"],
        }
        started = time.perf_counter()
        status, answer = self._post(body, [])
        requests = 1
        handles: list[tuple[str, str]] = []
        while status == 200 and "response" not in answer:
            if not handles:
                if "job" not in answer:
                    raise RuntimeError(f"the first answer has no job: {answer}")
                handles = [("cacheKey", answer["cacheKey"]), ("job", answer["job"])]
                # the renderer sends polls with the input values cleared
                body = {
                    **body,
                    "inputs": [dict(i, value=None) for i in body["inputs"]],
                    "state": [dict(s, value=None) for s in body["state"]],
                }
            if time.perf_counter() - started > self.timeout:
                raise RuntimeError(f"no answer after {self.timeout} s")
            time.sleep(self.interval)
            status, answer = self._post(body, handles)
            requests += 1
        return Click(time.perf_counter() - started, requests, status, answer)

    def close(self) -> None:
        self.conn.close()
