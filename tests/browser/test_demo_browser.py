"""The demo in headless Chromium: the progress-bar example with cancel.

Uses Debian's ``chromium`` and ``chromium-driver`` (nothing is downloaded at
test time) and skips with the reason when they or selenium are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
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


@pytest.fixture(params=["flask", "fastapi"])
def demo(tmp_path, request):
    pytest.importorskip("bgcb_diskcache", reason="bgcb-diskcache is not installed")
    if not _can_serve(request.param):
        pytest.skip(f"this Dash cannot serve on {request.param} (Dash 4.4+ with fastapi and uvicorn)")
    port = free_port()
    env = dict(
        os.environ,
        BGCB_BACKEND="diskcache",
        BGCB_DISKCACHE_DIRECTORY=str(tmp_path / "store"),
        BGCB_DISKCACHE_WORKERS="2",
        DEMO_PORT=str(port),
        DEMO_SERVER=request.param,
    )
    # its own process group, so that Ctrl-C reaches every process of it, as from a terminal
    proc = subprocess.Popen([sys.executable, str(DEMO)], env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("the demo did not start") from None
            time.sleep(0.2)
    yield url, tmp_path / "store"
    import psutil

    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    os.killpg(proc.pid, signal.SIGINT)
    _, alive = psutil.wait_procs(tree, timeout=15)
    for p in alive:
        p.kill()
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


def test_progress_bar_with_cancel(demo, browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    from bgcb_diskcache.store import Store

    url, directory = demo
    browser.get(url)
    run = wait_for(lambda: browser.find_elements(By.ID, "progress-run"), 30, "the page", interval=0.05)[0]
    bar = browser.find_element(By.ID, "progress-bar")
    cancel = browser.find_element(By.ID, "progress-cancel")
    assert run.is_enabled() and not cancel.is_enabled()

    run.click()
    wait_for(lambda: not run.is_enabled(), 10, "the button to be disabled while the job runs", interval=0.05)
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

    cancel.click()
    wait_for(lambda: run.is_enabled(), 5, "the button to be enabled again after cancel", interval=0.05)
    store = Store(str(directory))
    wait_for(lambda: not store.running(), 2, "the job to stop in its worker", interval=0.05)
    stopped_at = int(float(bar.get_attribute("value") or 0))
    time.sleep(1.5)  # the job would advance the bar every 0.5 s if it were still running
    assert int(float(bar.get_attribute("value") or 0)) == stopped_at
    assert stopped_at < 10
    assert "Clicked" not in browser.find_element(By.ID, "progress-out").text
