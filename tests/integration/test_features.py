"""Every background-callback feature, through a real Dash app served over HTTP,
on the backend named by ``$BGCB_BACKEND`` (``testing`` by default)."""

from __future__ import annotations

import threading
import time
import urllib.parse

import pytest

from bgcb_testing import DashClient

PM_BTN = {"type": "pm-btn", "index": 1}
PM_OUT = {"type": "pm-out", "index": 1}


def test_simple_result_and_running_flag(client: DashClient) -> None:
    handles = client.start([("simple-out", "children")], [("simple-btn", "n_clicks", 3)])
    assert set(handles) >= {"cacheKey", "job"}
    run = client.run([("simple-out", "children")], [("simple-btn", "n_clicks", 3)], handles=handles)
    assert run.final.status == 200
    assert run.output("simple-out", "children") == "done 3"


def test_job_handle_is_opaque(client: DashClient) -> None:
    handles = client.start([("simple-out", "children")], [("simple-btn", "n_clicks", 1)])
    job = handles["job"].split("~")[0]
    assert not job.isdigit(), "a job handle must not be a pid or counter"
    assert len(job) >= 20
    client.run([("simple-out", "children")], [("simple-btn", "n_clicks", 1)], handles=handles)


def test_progress_and_progress_default(client: DashClient) -> None:
    outputs, inputs = [("prog-out", "children")], [("prog-btn", "n_clicks", 4)]
    handles = client.start(outputs, inputs)
    assert handles["progressDefault"] == {"prog-bar.value": "0", "prog-bar.max": "10"}
    assert handles["cancel"]
    run = client.run(outputs, inputs, handles=handles)
    assert run.output("prog-out", "children") == "progressed 4"
    seen = [p["prog-bar.value"] for p in run.progress]
    assert seen, "no progress reached the browser"
    assert seen == sorted(seen, key=int)
    assert all(p["prog-bar.max"] == "4" for p in run.progress)


def test_set_props_none_lost(client: DashClient) -> None:
    run = client.run([("props-out", "children")], [("props-btn", "n_clicks", 1)])
    assert run.output("props-out", "children") == "props done"
    merged: dict = {}
    for side in run.side_updates:
        for cid, props in side.items():
            merged.setdefault(cid, {}).update(props)
    assert merged == {"props-a": {"children": "a1", "title": "t1"}, "props-b": {"children": "b1"}}


def test_one_backend_read_per_poll_on_this_server(client: DashClient, feature_app) -> None:
    """Dash asks four questions per poll; on Flask, FastAPI and Quart they share one backend read."""
    if feature_app.HOLD:
        pytest.skip("with hold the gate reads while it waits; tests/integration/test_hold.py counts those reads")
    backend = feature_app.manager.backend
    reads: list[str] = []
    undo = backend.pm.add_hookcall_monitoring(
        lambda name, impls, kw: reads.append(kw["job_id"]) if name == "bgcb_read" and kw.get("drain") else None,
        lambda *a: None,
    )
    try:
        run = client.run([("props-out", "children")], [("props-btn", "n_clicks", 2)])
    finally:
        undo()
    job = run.job.split("~")[0]
    assert run.polls and reads.count(job) == run.polls, (reads.count(job), run.polls)


def test_no_backend_call_on_the_event_loop(client: DashClient, feature_app) -> None:
    """On FastAPI and Quart, submitting and polling read and write the backend off the event loop."""
    if feature_app.SERVER == "flask":
        pytest.skip("Flask serves each request on a thread of its own")
    backend = feature_app.manager.backend
    threads: list[tuple[str, str]] = []
    wanted = {"bgcb_enqueue", "bgcb_read"}
    undo = backend.pm.add_hookcall_monitoring(
        lambda name, impls, kw: threads.append((name, threading.current_thread().name)) if name in wanted else None,
        lambda *a: None,
    )
    try:
        run = client.run([("props-out", "children")], [("props-btn", "n_clicks", 5)])
    finally:
        undo()
    assert run.output("props-out", "children") == "props done"
    seen = {name for name, _ in threads}
    assert "bgcb_enqueue" in seen and "bgcb_read" in seen
    web = [(name, thread) for name, thread in threads if not thread.startswith(("bgcb-hold", "bgcb-testing"))]
    assert not web, f"backend calls on the server's own threads: {web}"


def test_cache_by_reuses_result_and_ignores_args(client: DashClient) -> None:
    outputs = [("cache-out", "children")]

    def ask(n: int, value: str, ignored: str):
        return client.run(
            outputs, [("cache-btn", "n_clicks", n)], [("cache-in", "value", value), ("cache-ignored", "value", ignored)]
        )

    first = ask(1, "x", "i1").output("cache-out", "children")
    second = ask(2, "x", "i2").output("cache-out", "children")
    other = ask(3, "y", "i1").output("cache-out", "children")
    assert first.startswith("x:")
    assert second == first, "cache_by: identical (non-ignored) inputs must reuse the cached result"
    assert other != first and other.startswith("y:")


def test_cache_hit_starts_no_job(client: DashClient) -> None:
    outputs, state = [("cache-out", "children")], [("cache-in", "value", "hit"), ("cache-ignored", "value", "")]
    client.run(outputs, [("cache-btn", "n_clicks", 1)], state)
    handles = client.start(outputs, [("cache-btn", "n_clicks", 2)], state)
    assert handles["job"].startswith("cached:")


def test_error_reaches_the_browser(client: DashClient) -> None:
    run = client.run([("err-out", "children")], [("err-btn", "n_clicks", 1)])
    assert run.final.status == 500
    assert "boom from the worker" in run.final.text


def test_on_error_handler(client: DashClient) -> None:
    run = client.run([("handled-out", "children")], [("handled-btn", "n_clicks", 1)])
    assert run.final.status == 200
    text = run.output("handled-out", "children")
    assert text.startswith("handled: ") and "handled boom" in text


def test_prevent_update_is_no_update(client: DashClient) -> None:
    run = client.run([("prevent-out", "children")], [("prevent-btn", "n_clicks", 1)])
    assert run.final.status == 204


def test_no_update_in_multi_output(client: DashClient) -> None:
    run = client.run([("multi-a", "children"), ("multi-b", "children")], [("multi-btn", "n_clicks", 2)])
    assert run.final.status == 200
    assert run.outputs == {"multi-a": {"children": "a2"}}


def test_pattern_matching_ids(client: DashClient) -> None:
    run = client.run([(PM_OUT, "children")], [(PM_BTN, "n_clicks", 5)])
    assert run.output(PM_OUT, "children") == "pm 1 5"


def test_async_callback(client: DashClient) -> None:
    run = client.run([("async-out", "children")], [("async-btn", "n_clicks", 7)])
    assert run.output("async-out", "children") == "async 7"


def test_callback_context_in_worker(live_server) -> None:
    client = DashClient.http(live_server.url, headers={"X-Bgcb-Test": "hdr", "Cookie": "bgcb=cookie-value"}).load()
    run = client.run([("ctx-out", "children")], [("ctx-btn", "n_clicks", 1)], [("ctx-state", "value", "st")])
    value = run.output("ctx-out", "children")
    assert value["triggered_id"] == "ctx-btn"
    assert value["inputs"] == {"ctx-btn.n_clicks": 1}
    assert value["states"] == {"ctx-state.value": "st"}
    assert value["header"] == "hdr"
    assert value["cookie"] == "cookie-value"
    # Dash gives the path on Flask and Quart, the full URL on FastAPI
    assert urllib.parse.urlsplit(value["path"]).path.startswith("/_dash-update-component")


def test_unserialisable_result_is_a_clear_error(client: DashClient) -> None:
    run = client.run([("bad-out", "children")], [("bad-btn", "n_clicks", 1)])
    assert run.final.status == 500
    assert "cannot be sent to the browser as JSON" in run.final.text


def test_cancel_input_stops_running_job(client: DashClient) -> None:
    outputs, inputs = [("slow-out", "children")], [("slow-btn", "n_clicks", 1)]
    handles = client.start(outputs, inputs)
    _wait_progress(client, handles, outputs, inputs)
    resp = client.cancel(("prog-cancel", "n_clicks"), handles["job"])
    assert resp.status in (200, 204)
    run = client.run(outputs, inputs, handles=handles, timeout=5)
    assert run.final.status == 204, "a cancelled job ends with no update"


def test_page_reload_old_job_is_cancelled(client: DashClient) -> None:
    outputs, inputs = [("slow-out", "children")], [("slow-btn", "n_clicks", 1)]
    old = client.start(outputs, inputs)
    _wait_progress(client, old, outputs, inputs)
    new = client.start([("simple-out", "children")], [("simple-btn", "n_clicks", 9)], old_jobs=[old["job"]])
    done = client.run([("simple-out", "children")], [("simple-btn", "n_clicks", 9)], handles=new)
    assert done.output("simple-out", "children") == "done 9"
    run = client.run(outputs, inputs, handles=old, timeout=5)
    assert run.final.status == 204


def test_keep_running_on_retrigger(client: DashClient) -> None:
    outputs = [("keep-out", "children")]
    old = client.start(outputs, [("keep-btn", "n_clicks", 1)])
    new = client.start(outputs, [("keep-btn", "n_clicks", 2)], old_jobs=[old["job"]])
    assert client.run(outputs, [("keep-btn", "n_clicks", 1)], handles=old).output("keep-out", "children") == "kept 1"
    assert client.run(outputs, [("keep-btn", "n_clicks", 2)], handles=new).output("keep-out", "children") == "kept 2"


def test_timeout_stops_job_with_error(client: DashClient) -> None:
    run = client.run([("timeout-out", "children")], [("timeout-btn", "n_clicks", 1)], timeout=20)
    assert run.final.status == 500
    assert "timed out" in run.final.text


def test_identical_inputs_two_users_both_get_results(live_server) -> None:
    outputs, inputs, state = [("echo-out", "children")], [("echo-btn", "n_clicks", 1)], [("echo-in", "value", "same")]
    users = [DashClient.http(live_server.url).load() for _ in range(2)]
    handles = [u.start(outputs, inputs, state) for u in users]
    assert handles[0]["cacheKey"].split("~")[0] == handles[1]["cacheKey"].split("~")[0]
    results: list = [None, None]

    def finish(i: int) -> None:
        results[i] = users[i].run(outputs, inputs, state, handles=handles[i]).output("echo-out", "children")

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r and r.startswith("echo same ") for r in results), results
    assert results[0] != results[1], "each user gets the result of their own job"


def test_forged_job_handle_is_refused(client: DashClient) -> None:
    outputs, inputs = [("simple-out", "children")], [("simple-btn", "n_clicks", 1)]
    real = client.start(outputs, inputs)
    client.run(outputs, inputs, handles=real)
    forged = dict(real, job="A" * 24)
    resp = client.poll(forged, outputs, inputs)
    # Dash 4.4 refuses the bad signature itself (no update); older versions
    # reach bgcb, which reports an unknown job instead of spinning forever.
    assert resp.status in (204, 500)
    if resp.status == 500:
        assert "unknown" in resp.text
    # A handle bgcb never issues (not an id's shape) is refused as quietly on every Dash version: no update.
    malformed = client.poll(dict(real, job="not a handle ✗"), outputs, inputs)
    assert malformed.status == 204, (malformed.status, malformed.text[:300])


def _wait_progress(client: DashClient, handles, outputs, inputs, timeout: float = 10.0) -> None:
    """Poll until the job reports progress (it is running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = client.poll(handles, outputs, inputs)
        if isinstance(resp.body, dict) and resp.body.get("progress"):
            return
        time.sleep(0.05)
    pytest.fail("job never reported progress")


def test_a_queued_jobs_page_shows_its_place_and_estimated_wait(client: DashClient, feature_app) -> None:
    """``waiting=Output("wait-status", "children")``: while every worker is busy, the next job's poll
    shows "position 1" and an estimate (from the callback's run time seen before); once it runs, the
    text is cleared."""
    from bgcb.jobs import State

    backend = feature_app.waiting_manager.backend
    outputs = [("wait-out", "children")]

    def inputs(tenths: int) -> list:
        return [("wait-btn", "n_clicks", tenths)]

    assert client.run(outputs, inputs(1)).output("wait-out", "children") == "waited 1"  # a run time to estimate from
    started: list[dict] = []
    try:
        probe = None
        for _ in range(32):  # fill every worker, whatever the backend's capacity, until a job waits
            handles = client.start(outputs, inputs(600))
            started.append(handles)
            job = handles["job"].split("~")[0]
            time.sleep(0.3)
            if backend.status(job).state is State.QUEUED:
                probe = handles
                break
        assert probe is not None, "no job ever waited: the workers were never all busy"
        resp = client.poll(probe, outputs, inputs(600))
        text = ((resp.body or {}).get("sideUpdate") or {}).get("wait-status", {}).get("children")
        assert isinstance(text, str) and text.startswith("Queued: position 1 · about "), resp.body
        assert text.endswith(" to start"), text
        for handles in started[:-1]:  # free the workers: the probe starts
            backend.cancel(handles["job"].split("~")[0])
        deadline = time.monotonic() + 30
        while backend.status(probe["job"].split("~")[0]).state is State.QUEUED:
            assert time.monotonic() < deadline, "the probe never started"
            time.sleep(0.1)
        resp = client.poll(probe, outputs, inputs(600))
        assert ((resp.body or {}).get("sideUpdate") or {}).get("wait-status") == {"children": ""}, resp.body
    finally:
        for handles in started:
            backend.cancel(handles["job"].split("~")[0])


def test_the_owner_function_names_who_submitted(live_server, feature_app) -> None:
    """``owner=bgcb.owner_header("X-Bgcb-User")``: the header of the submitting request, on this
    server, is the job's owner for its status and for observers."""
    import bgcb
    from bgcb.jobs import Job

    heard: list[Job] = []

    class Hears:
        @bgcb.hookimpl
        def bgcb_job_submitted(self, job_id: str, job: Job) -> None:
            heard.append(job)

    observer = Hears()
    bgcb.observers.register(observer)
    try:
        client = DashClient.http(live_server.url, headers={"X-Bgcb-User": "alice"}).load()
        run = client.run([("wait-out", "children")], [("wait-btn", "n_clicks", 1)])
    finally:
        bgcb.observers.unregister(observer)
    job = run.handles["job"].split("~")[0]
    assert feature_app.waiting_manager.backend.status(job).owner == "alice"
    assert [j.owner for j in heard] == ["alice"]


def test_owners_take_turns_in_the_queue(live_server, feature_app) -> None:
    """Owner A queues 20 jobs, then owner B one: B's starts after at most one more of A's jobs."""
    from concurrent.futures import ThreadPoolExecutor

    from bgcb.jobs import State

    backend = feature_app.waiting_manager.backend
    outputs, inputs = [("wait-out", "children")], [("wait-btn", "n_clicks", 3)]  # 0.3 s each

    def start(user: str) -> str:
        client = DashClient.http(live_server.url, headers={"X-Bgcb-User": user}).load()
        return client.start(outputs, inputs)["job"].split("~")[0]

    with ThreadPoolExecutor(10) as pool:
        alice = list(pool.map(start, ["alice"] * 20))
    try:
        bob = start("bob")
        deadline = time.monotonic() + 60
        while backend.status(bob).state is State.QUEUED:
            assert time.monotonic() < deadline, "bob's job never started"
            time.sleep(0.05)
        mine = backend.status(bob)
        started = [backend.status(j).started_at for j in alice]
        overtook = [s for s in started if s is not None and mine.submitted_at < s < mine.started_at]
        print(f"owners' turns: {len(overtook)} of alice's jobs started between bob's submit and start")
        assert len(overtook) <= 1, (len(overtook), mine)
        assert any(backend.status(j).state is State.QUEUED for j in alice), "alice's burst was still queued"
    finally:
        for job in alice:
            backend.cancel(job)


def test_a_closed_pages_jobs_are_cancelled(client: DashClient, feature_app) -> None:
    """``abandon_after=2``: a job whose page stopped polling is cancelled: a queued one never starts,
    a running one ends within abandon_after + 2 s of the last poll."""
    from bgcb.jobs import State

    backend = feature_app.abandon_manager.backend
    outputs = [("abandon-out", "children")]

    def inputs(tenths: int) -> list:
        return [("abandon-btn", "n_clicks", tenths)]

    handles = client.start(outputs, inputs(300))  # 30 s, polled once, then the page goes away
    running = handles["job"].split("~")[0]
    deadline = time.monotonic() + 20
    while backend.status(running).state is State.QUEUED:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    client.poll(handles, outputs, inputs(300))
    last_poll = time.monotonic()
    while backend.status(running).state is State.RUNNING:
        assert time.monotonic() - last_poll < 2 + 2 + 5, "the abandoned running job was not cancelled"
        time.sleep(0.1)
    took = time.monotonic() - last_poll
    print(f"abandoned running job cancelled {took:.1f} s after its page's last poll (abandon_after 2 s)")
    assert backend.status(running).state is State.CANCELLED and took <= 2 + 2, took

    busy = []
    probe = None
    try:
        for _ in range(32):  # every worker busy (their pages keep polling: waiting_manager abandons after 120 s)
            h = client.start([("wait-out", "children")], [("wait-btn", "n_clicks", 600)])
            busy.append(h["job"].split("~")[0])
            time.sleep(0.3)
            if backend.status(busy[-1]).state is State.QUEUED:
                break
        probe = client.start(outputs, inputs(1))["job"].split("~")[0]
        assert backend.status(probe).state is State.QUEUED
        time.sleep(2.5)  # its page is gone: no poll for longer than abandon_after
    finally:
        for job in busy:
            backend.cancel(job)
    status = backend.status(probe)
    deadline = time.monotonic() + 20
    while status.state is State.QUEUED and time.monotonic() < deadline:
        time.sleep(0.1)
        status = backend.status(probe)
    assert status.state is State.CANCELLED and status.started_at is None, status
