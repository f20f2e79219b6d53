"""Phase ``visible``: time from click to result on screen, and HTTP requests per job.

At the renderer's default interval (1000 ms), for jobs of 0.01, 0.3, 1.2 and
3.5 s and for a ``cache_by`` hit, on every side, in alternating order (each
repetition rotates which side goes first). The floor is a plain callback.
"""

from __future__ import annotations

import itertools
from typing import Any

from .browser import Browser
from .context import Context

#: Job lengths, by the name of the callback that sleeps that long (see harness/app.py).
JOB_SECONDS = {"001": 0.01, "03": 0.3, "12": 1.2, "35": 3.5}
CACHE_KEY = "bench-cache"


def cases(smoke: bool = False) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = [
        (f"{s:g} s job", {"button": f"go-{name}", "output": f"out-{name}", "state": []}) for name, s in JOB_SECONDS.items()
    ]
    if smoke:  # the harness works: a quick job and a cache hit suffice
        out = out[:1]
    out.append(
        (
            "cache hit",
            {"button": "cache-go", "output": "cache-out", "state": [("cache-key", "children", CACHE_KEY)], "expect": CACHE_KEY},
        )
    )
    return out


NAME = "visible"


def run(ctx: Context) -> dict[str, Any]:
    sides, reps, interval, log = ctx.standard(), ctx.reps, ctx.interval, ctx.log
    pages = {side.label: Browser(side.url, interval).load() for side in sides}
    counter = itertools.count(1)
    for side in sides:  # warm up: workers up, connections made, the cache entry written, each callback run once
        page = pages[side.label]
        for button, output, state in [(c["button"], c["output"], c["state"]) for _, c in cases(ctx.smoke)]:
            page.click(button, output, state, next(counter))
        page.click("cache-go", "cache-out", [("cache-key", "children", CACHE_KEY)], next(counter))
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rep in range(reps):
        order = sides[rep % len(sides) :] + sides[: rep % len(sides)]
        for name, case in cases(ctx.smoke):
            for side in order:
                n = next(counter)
                click = pages[side.label].click(case["button"], case["output"], case["state"], n)
                expected = case.get("expect", n)
                samples.setdefault(name, {}).setdefault(side.label, []).append(
                    {
                        "seconds": click.seconds,
                        "requests": click.requests,
                        "ok": click.status == 200 and click.output(case["output"]) == expected,
                    }
                )
        log(f"visible: repetition {rep + 1}/{reps} done")
    floor_page = pages[sides[0].label]
    floor = [floor_page.click("plain-go", "plain-out", n_clicks=next(counter)) for _ in range(max(3, reps))]
    for page in pages.values():
        page.close()
    return {
        "interval_ms": interval * 1000,
        "reps": reps,
        "cases": samples,
        "floor": [{"seconds": c.seconds, "requests": c.requests, "ok": c.status == 200} for c in floor],
    }


def table(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from . import report

    return report.visible_table(result)


def chart(figures: dict[str, Any], path: Any) -> bool:
    from . import report

    return report.visible_chart(figures, path)
