"""Phase ``turnaround``: how long a no-op background callback takes, click to answer.

A click on ``go-000`` (a job that returns at once) until the answer that carries
``response``, at 10 ms and 1 ms polls, over one keep-alive connection and over
a new connection per request, on every side (the ``hold`` sides answer in the
first request). Then the same at 10 ms polls with a web process that holds
~600 MB of live objects (50 MB in a smoke run), where a fork per job costs.

Floors: a plain callback over the same HTTP path (on each side, same kind of
connection), a bare diskcache set()+get() in this process, and a bare Celery
no-op round trip on the bgcb-celery side's Redis (see floors.py). A side's
floor is its plain callback plus its store's bare round trip.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from . import floors, report
from .browser import Browser
from .context import HOLD, Context, counts
from .stack import Side

NAME = "turnaround"
BUTTON, OUTPUT = "go-000", "out-000"
#: (cell name, poll interval in seconds, a new connection per request?)
CELLS = [
    ("10 ms, keep-alive", 0.01, False),
    ("10 ms, new connection", 0.01, True),
    ("1 ms, keep-alive", 0.001, False),
    ("1 ms, new connection", 0.001, True),
]
BALLAST_INTERVAL = 0.01
#: Targets from the issue: bgcb / Dash medians, by store, in the ballast cell.
TARGETS = {"diskcache": 1 / 8, "celery": 1.0}


def _kind(label: str) -> str:
    return "celery" if "celery" in label else "diskcache"


def _sample(click: Any, n: int) -> dict[str, Any]:
    return {"seconds": click.seconds, "requests": click.requests, "ok": click.status == 200 and click.output(OUTPUT) == n}


def _measure(
    cells: list[tuple[str, float, bool]], sides: list[Side], jobs: int, warmup: int, counter: Any, log: Any
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Samples by cell, then side label: ``warmup`` then ``jobs`` clicks per side and cell, sides in rotating order."""
    pages = {(side.label, fresh): Browser(side.url, fresh=fresh).load() for side in sides for fresh in {c[2] for c in cells}}
    try:
        for (_, interval, fresh), side in itertools.product(cells, sides):
            page = pages[side.label, fresh]
            page.interval = interval
            for _ in range(warmup):
                page.click(BUTTON, OUTPUT, n_clicks=next(counter))
        samples: dict[str, dict[str, list[dict[str, Any]]]] = {name: {side.label: [] for side in sides} for name, _, _ in cells}
        for rep in range(jobs):
            order = sides[rep % len(sides) :] + sides[: rep % len(sides)]
            for name, interval, fresh in cells:
                for side in order:
                    page = pages[side.label, fresh]
                    page.interval = interval
                    n = next(counter)
                    samples[name][side.label].append(_sample(page.click(BUTTON, OUTPUT, n_clicks=n), n))
            if (rep + 1) % 10 == 0 or rep + 1 == jobs:
                log(f"turnaround: {rep + 1}/{jobs} jobs per cell done on {len(sides)} sides")
        return samples
    finally:
        for page in pages.values():
            page.close()


def _plain(sides: list[Side], modes: list[bool], jobs: int, warmup: int, counter: Any) -> dict[str, dict[str, list]]:
    """The plain callback's samples, by side label, then connection mode ("keep-alive" / "new connection")."""
    out: dict[str, dict[str, list]] = {}
    for side, fresh in itertools.product(sides, modes):
        page = Browser(side.url, fresh=fresh).load()
        try:
            for _ in range(warmup):
                page.click("plain-go", "plain-out", n_clicks=next(counter))
            samples = []
            for _ in range(jobs):
                n = next(counter)
                click = page.click("plain-go", "plain-out", n_clicks=n)
                samples.append({"seconds": click.seconds, "requests": click.requests, "ok": click.output("plain-out") == n})
        finally:
            page.close()
        out.setdefault(side.label, {})["new connection" if fresh else "keep-alive"] = samples
    return out


def run(ctx: Context) -> dict[str, Any]:
    log = ctx.log
    jobs, warmup = counts(ctx, 30, 2), counts(ctx, 3, 1)
    ballast_mb = counts(ctx, 600, 50)
    counter = itertools.count(1)
    startup = time.perf_counter()
    sides = ctx.standard(hold=True)
    startup = time.perf_counter() - startup
    began = time.perf_counter()

    samples = _measure(CELLS, sides, jobs, warmup, counter, log)
    plain = _plain(sides, [False, True], jobs, warmup, counter)

    # floors of the stores, outside the web processes
    disk = floors.diskcache_floor(counts(ctx, 500, 50))
    celery = floors.celery_floor(ctx.side("bgcb-celery").redis_url, counts(ctx, 30, 5), warmup=counts(ctx, 3, 2), log=log)

    # the ballast cell: web processes holding ~ballast_mb MB of live objects
    measuring = time.perf_counter() - began
    started = time.perf_counter()
    names = [
        (n, h)
        for n in ("dash-diskcache", "bgcb-diskcache", "dash-celery", "bgcb-celery")
        for h in (0.0, HOLD)
        if h == 0 or n[:4] == "bgcb"
    ]
    labels = {(n, h): f"{n}{f' hold={h:g}' if h else ''} {ballast_mb}MB" for n, h in names}
    new = [labels[key] for key in names if labels[key] not in ctx.started]
    extra = {"BENCH_BALLAST_MB": str(ballast_mb)}
    heavy = [ctx.side(n, hold=h, extra=extra, label=labels[(n, h)]) for n, h in names]
    startup += time.perf_counter() - started
    began = time.perf_counter()
    ballast_cell = f"10 ms, keep-alive, {ballast_mb} MB app"
    samples.update(_measure([(ballast_cell, BALLAST_INTERVAL, False)], heavy, jobs, warmup, counter, log))
    plain.update(_plain(heavy, [False], jobs, warmup, counter))
    measuring += time.perf_counter() - began
    for label in new:  # ~1 GB each: free it for the phases that follow (a later phase that wants them restarts them)
        ctx.started.pop(label).stop()
    log(f"turnaround: measured in {measuring:.1f} s (plus {startup:.1f} s starting sides)")
    return {
        "jobs": jobs,
        "warmup": warmup,
        "ballast_mb": ballast_mb,
        "ballast_cell": ballast_cell,
        "cells": samples,
        "plain": plain,
        "floors": {"diskcache": [{"seconds": s, "requests": 0, "ok": True} for s in disk], "celery": celery},
        "measure_seconds": measuring,
        "startup_seconds": startup,
    }


def _dash_label(label: str, labels: list[str]) -> str | None:
    """The Dash side of the same store in the same cell (``dash-diskcache``, ``dash-celery 600MB``...)."""
    found = [other for other in labels if other.startswith("dash-") and _kind(other) == _kind(label)]
    return found[0] if found else None


def table(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    celery = result["floors"]["celery"]
    store = {
        "diskcache": report.summary(result["floors"]["diskcache"]),
        "celery": report.summary([{"seconds": s, "requests": 0, "ok": True} for s in celery["seconds"]]),
    }
    celery_name = (
        "Celery no-op round trip (prefork, 1 process)"
        if celery["kind"] == "celery"
        else f"Redis PING+SET+GET (the Celery floor failed: {celery['error']})"
    )
    plain = {label: {mode: report.summary(s) for mode, s in modes.items()} for label, modes in result["plain"].items()}
    figures: dict[str, Any] = {"cells": {}, "plain": plain, "store": store, "store_kinds": {"celery": celery["kind"]}}
    lines = [
        f"No-op background callback (`go-000`), click to answer, {result['jobs']} jobs per cell after {result['warmup']} "
        f"warm-up; times in ms; vs Dash = median / Dash's manager of the same store in the same cell; vs floor = median / "
        f"(that side's plain callback over the same connection + its store's bare round trip).",
        "",
        "| cell | side | median | p90 | requests | vs Dash | vs floor | wrong |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cell, sides in result["cells"].items():
        mode = "new connection" if "new connection" in cell else "keep-alive"
        stats = {label: report.summary(s) for label, s in sides.items()}
        for label, s in stats.items():
            base = _dash_label(label, list(stats))
            s["vs_dash"] = None if label.startswith("dash-") or base is None else s["median_ms"] / stats[base]["median_ms"]
            floor_ms = plain.get(label, {}).get(mode, {}).get("median_ms", 0.0) + store[_kind(label)]["median_ms"]
            s["floor_ms"] = floor_ms
            s["vs_floor"] = s["median_ms"] / floor_ms if floor_ms else None
            ratio = "" if s["vs_dash"] is None else f"{s['vs_dash']:.2f}"
            cells = [cell, label, f"{s['median_ms']:.1f}", f"{s['p90_ms']:.1f}", f"{s['requests']:g} ({s['max_requests']})"]
            lines.append("| " + " | ".join([*cells, ratio, f"{s['vs_floor']:.1f}", str(s["wrong"])]) + " |")
        figures["cells"][cell] = stats
    for mode in ("keep-alive", "new connection"):
        pooled = [s for modes in result["plain"].values() for s in modes.get(mode, [])]
        if pooled:
            f = report.summary(pooled)
            cells = ["floor", f"plain callback, {mode} (all sides)", f"{f['median_ms']:.1f}", f"{f['p90_ms']:.1f}", "1", "", ""]
            lines.append("| " + " | ".join([*cells, str(f["wrong"])]) + " |")
    for kind, name in (("diskcache", "diskcache set()+get() in-process"), ("celery", celery_name)):
        f = store[kind]
        lines.append(f"| floor | {name} | {f['median_ms']:.2f} | {f['p90_ms']:.2f} |  |  |  |  |")
    lines += ["", _targets(result["ballast_cell"], figures, result["ballast_mb"])]
    figures["chart"] = _chart_data(figures["cells"])
    return "\n".join(lines) + "\n", figures


def _targets(cell: str, figures: dict[str, Any], mb: int) -> str:
    stats = figures["cells"].get(cell, {})
    out = []
    for label, stat in stats.items():
        ratio, target = stat.get("vs_dash"), TARGETS[_kind(label)]
        if not label.startswith("bgcb-") or ratio is None:
            continue
        verdict = "met" if ratio <= target else "NOT met"
        dash = next((s for lbl, s in stats.items() if lbl.startswith("dash-") and _kind(lbl) == _kind(label)), None)
        if ratio > target and " hold=" not in label and dash and dash.get("median_ms"):
            # without hold the answer comes in a poll, and the renderer's first poll comes one interval after the first answer
            ms = BALLAST_INTERVAL * 1000
            best = ms / dash["median_ms"]
            verdict += f"; without hold the first poll comes {ms:g} ms after the first answer: {best:.2f} at best"
        out.append(f"{_series(label)} / Dash = {ratio:.3f} (target <= {target:g}: {verdict})")
        figures.setdefault("targets", {})[_series(label)] = {"ratio": ratio, "target": target, "met": ratio <= target}
    if not out:
        return ""
    note = "" if mb == 600 else " (the targets are for a 600 MB app: indicative only)"
    return f"Targets with the {mb} MB app{note}: " + "; ".join(out) + "."


def _series(label: str) -> str:
    """A side label without its ballast suffix: the chart's series."""
    return " ".join(part for part in label.split() if not part.endswith("MB"))


def _chart_data(cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    series: dict[str, list[float | None]] = {}
    for stats in cells.values():
        for label in stats:
            series.setdefault(_series(label), [])
    for name, values in series.items():
        for stats in cells.values():
            found = [s["median_ms"] for label, s in stats.items() if _series(label) == name]
            values.append(found[0] if found else None)
    return {"cells": list(cells), "series": series}


def chart(figures: dict[str, Any], path: Path) -> bool:
    cells, series = figures["chart"]["cells"], figures["chart"]["series"]

    def draw(ax: Any) -> None:
        report.grouped_bars(ax, cells, series, tick_size=8)
        ax.set_yscale("log")
        ax.set_ylabel("click to answer, median (ms, log scale)")
        ax.set_title("No-op background callback turnaround")

    return report.plot(path, draw, size=(11, 4.8))
