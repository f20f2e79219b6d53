"""The live jobs page mounted on the app's own server (``bgcb.jobs_page(app)``), on every server Dash runs on."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from bgcb_testing import DashClient


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read().decode()


def _post(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_the_jobs_page_lists_a_running_job_and_cancels_it_when_allowed(live_server, client: DashClient, feature_app) -> None:
    from bgcb.jobs import State

    backend = feature_app.manager.backend
    status, html = _get(f"{live_server.url}/bgcb/jobs")
    assert status == 200 and "<title>bgcb jobs</title>" in html
    handles = client.start([("slow-out", "children")], [("slow-btn", "n_clicks", 1)])
    job = handles["job"].split("~")[0]
    deadline = time.monotonic() + 20
    while True:
        data = json.loads(_get(f"{live_server.url}/bgcb/jobs/data")[1])
        row = next((j for j in data["jobs"] if j["id"] == job), None)
        if row is not None and row["state"] == "running":
            break
        assert time.monotonic() < deadline, f"the running job is not listed: {data['jobs']}"
        time.sleep(0.2)
    assert row["label"] == "slow-out.children" and data["allowed"] is True
    assert data["backends"] and data["history"], data

    assert _post(f"{live_server.url}/bgcb/jobs-readonly/cancel?job={job}")[0] == 403
    assert json.loads(_get(f"{live_server.url}/bgcb/jobs-readonly/data")[1])["allowed"] is False
    assert backend.status(job).state is State.RUNNING, "a refused cancel touched the job"
    assert _get(f"{live_server.url}/bgcb/jobs/cancel?job={job}".replace("/cancel", "/data"))[0] == 200
    assert _post(f"{live_server.url}/bgcb/jobs/cancel?job=not-a-job")[0] == 400
    status, body = _post(f"{live_server.url}/bgcb/jobs/cancel?job={job}")
    assert status == 200 and json.loads(body) == {"cancelled": True}
    assert backend.status(job).state is State.CANCELLED
    recent = json.loads(_get(f"{live_server.url}/bgcb/jobs/data")[1])["recent"]
    assert any(r["id"] == job and r["state"] == "cancelled" for r in recent), recent
    assert _get(f"{live_server.url}/_dash-layout")[0] == 200, "the app itself still answers"
