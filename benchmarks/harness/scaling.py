"""Phase ``scaling``: many browsers at once, each clicking no-op jobs back to back.

At each level (1, 8, 32, 64 browsers; smoke: 1 and 4) every simulated browser
is a thread with a keep-alive connection of its own that polls every 50 ms and
clicks ``go-000`` (a job that returns at once) again as soon as the previous
answer arrived. After a warm-up, the phase counts the jobs answered inside a
fixed window (throughput) and times the clicks started inside it (latency).
Sides run one at a time; each level rotates which side goes first. A side
that fails is recorded as failed, never fatal to the phase.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from . import report
from .browser import Browser
from .context import Context, counts

NAME = "scaling"
INTERVAL = 0.05
BUTTON, OUTPUT = "go-000", "out-000"
#: What can go wrong with a click: a wrong value, a non-200 answer, no answer in time, an exception.
KINDS = ("wrong", "non_200", "unanswered", "exception")


def _browse(page: Browser, clicks, until: float, grace: float, out: list[dict[str, Any]]) -> None:
    """One browser: click, wait for the answer, click again, until ``until`` (perf_counter).

    A click still unanswered ``grace`` seconds after ``until`` is given up (a lost job).
    """
    while time.perf_counter() < until:
        n = next(clicks)
        started = time.perf_counter()
        page.timeout = max(grace, until + grace - started)  # Browser.click gives up after this many seconds
        try:
            click = page.click(BUTTON, OUTPUT, n_clicks=n)
            answer = click.output(OUTPUT)
            ok = click.status == 200 and answer == n
            kind = "" if ok else "wrong" if click.status == 200 else "non_200"
            sample = {"kind": kind, "error": "" if ok else f"status {click.status} answer {answer!r}"[:200]}
        except Exception as exc:  # a failing side is a result, not a crash
            kind = "unanswered" if "no answer after" in str(exc) else "exception"
            sample = {"kind": kind, "error": f"{type(exc).__name__}: {exc}"[:200]}
        out.append({**sample, "ok": not sample["kind"], "start": started, "end": time.perf_counter()})
        if sample["kind"]:
            time.sleep(INTERVAL)  # no hot loop against a side that answers errors at once


def level(url: str, browsers: int, warmup: float, window: float, grace: float, clicks) -> dict[str, Any]:
    """``browsers`` threads against ``url``: counts and latencies of the window after ``warmup``."""
    timeout = window + warmup + grace
    pages = [Browser(url, INTERVAL, timeout=timeout).load() for _ in range(browsers)]
    samples: list[list[dict[str, Any]]] = [[] for _ in pages]
    begin = time.perf_counter()
    window_start, window_end = begin + warmup, begin + warmup + window
    threads = [
        threading.Thread(target=_browse, args=(page, clicks, window_end, grace, out), daemon=True)
        for page, out in zip(pages, samples, strict=True)
    ]
    for thread in threads:
        thread.start()
    stuck = 0
    for thread in threads:
        thread.join(max(0.1, window_end + grace + 5 - time.perf_counter()))
        stuck += thread.is_alive()
    for page in pages:
        page.close()
    flat = [s for out in samples for s in out]
    measured = [s for s in flat if s["start"] >= window_start]  # started in the window (they all start before its end)
    done_in_window = [s for s in flat if s["ok"] and window_start <= s["end"] <= window_end]
    seconds = [s["end"] - s["start"] for s in measured if s["ok"]]
    errors = [s for s in measured if not s["ok"]]
    return {
        "browsers": browsers,
        "window_s": window,
        "jobs": len(done_in_window),
        "jobs_per_s": len(done_in_window) / window,
        "clicks": len(measured),
        "latency_ms": [round(s * 1000, 2) for s in seconds],
        **{kind: sum(1 for s in errors if s["kind"] == kind) for kind in KINDS},
        "warmup_errors": sum(1 for s in flat if s["start"] < window_start and not s["ok"]),
        "stuck_threads": stuck,
        "first_errors": sorted({s["error"] for s in errors})[:3],
    }


def run(ctx: Context) -> dict[str, Any]:
    sides = ctx.standard(hold=False)
    levels = counts(ctx, [1, 8, 32, 64], [1, 4])
    warmup, window = counts(ctx, (1.0, 10.0), (0.5, 1.5))
    grace = counts(ctx, 15.0, 3.0)  # how long past the window a click may still take before it counts as lost
    clicks = itertools.count(1)
    cells: dict[str, dict[str, Any]] = {side.label: {} for side in sides}
    for i, browsers in enumerate(levels):
        order = sides[i % len(sides) :] + sides[: i % len(sides)]
        for side in order:
            try:
                cell = level(side.url, browsers, warmup, window, grace, clicks)
            except Exception as exc:  # e.g. the page does not load: record it, go on
                cell = {"browsers": browsers, "failed": f"{type(exc).__name__}: {exc}"[:300]}
            cells[side.label][str(browsers)] = cell
            ctx.log(
                f"scaling: {side.label} x{browsers}: "
                + (
                    cell["failed"]
                    if "failed" in cell
                    else f"{cell['jobs_per_s']:.1f} jobs/s, errors " + " / ".join(f"{k} {cell[k]}" for k in KINDS)
                )
            )
    return {
        "interval_ms": INTERVAL * 1000,
        "warmup_s": warmup,
        "window_s": window,
        "grace_s": grace,
        "levels": levels,
        "cells": cells,
    }


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q * len(ordered)) - 1)]


def table(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from .report import dash_side_of

    lines = [
        f"Concurrent browsers, each clicking a no-op job (`go-000`) back to back at {result['interval_ms']:g} ms polls: "
        f"jobs answered per second in a {result['window_s']:g} s window after {result['warmup_s']:g} s of warm-up, and "
        "click-to-answer latency (ms) of the answered clicks started in the window; errors = wrong value / non-200 / "
        f"no answer {result['grace_s']:g} s after the window (lost job) / exception.",
        "",
        "| browsers | side | jobs/s | vs Dash | median ms | p90 ms | jobs | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    figures: dict[str, Any] = {"levels": result["levels"], "sides": {}}
    for label, cells in result["cells"].items():
        figures["sides"][label] = {}
        for browsers, cell in cells.items():
            if "failed" in cell:
                figures["sides"][label][browsers] = {"failed": cell["failed"]}
                continue
            lat = cell["latency_ms"]
            figures["sides"][label][browsers] = {
                "jobs_per_s": cell["jobs_per_s"],
                "median_ms": statistics.median(lat) if lat else None,
                "p90_ms": _p(lat, 0.9) if lat else None,
                "jobs": cell["jobs"],
                **{kind: cell[kind] for kind in KINDS},
                "warmup_errors": cell["warmup_errors"],
            }
    for browsers in [str(n) for n in result["levels"]]:
        for label, stats in figures["sides"].items():
            s = stats.get(browsers)
            if s is None:
                continue
            if "failed" in s:
                lines.append(f"| {browsers} | {label} | failed: {s['failed'][:80]} | | | | | |")
                continue
            base = figures["sides"].get(dash_side_of(label), {}).get(browsers, {})
            ratio = ""
            if not label.startswith("dash") and base.get("jobs_per_s"):
                ratio = f"{s['jobs_per_s'] / base['jobs_per_s']:.2f}"

            def ms(v: float | None) -> str:
                return "—" if v is None else f"{v:.0f}"

            errors = " / ".join(str(s[kind]) for kind in KINDS)
            cells = [
                browsers,
                label,
                f"{s['jobs_per_s']:.1f}",
                ratio,
                ms(s["median_ms"]),
                ms(s["p90_ms"]),
                str(s["jobs"]),
                errors,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", figures


def chart(figures: dict[str, Any], path: Path) -> bool:
    levels = [str(n) for n in figures["levels"]]
    sides = figures["sides"]

    def draw(ax: Any) -> None:
        series = {label: [sides[label].get(n, {}).get("jobs_per_s", 0) or 0 for n in levels] for label in sides}
        report.grouped_bars(ax, levels, series)
        ax.set_xlabel("concurrent browsers")
        ax.set_ylabel("no-op jobs answered per second")
        ax.set_title("Throughput under concurrent browsers (50 ms polls)")

    return report.plot(path, draw)
