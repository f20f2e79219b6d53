"""Phase ``burst``: hundreds of jobs at once, drained; what each side answers, loses and costs.

Bursts of 300 and 900 jobs, of no-op (``go-000``) and 50 ms sleep (``go-005``)
jobs: every first request sent as fast as 32 concurrent connections go
(distinct n_clicks per job, so each answer is checked), then every pending
job polled once a round, a round every 50 ms, until it answers or the
deadline (120 s from the first submit). Per side and burst: jobs/s (jobs
answered correctly / drain time, first submit to last answer), lost (no
answer by the deadline, or the first request or a poll got an error), wrong
(value != n_clicks), empty (HTTP 204 where a value was due: Dash's answer
for a job it thinks was cancelled), and the peak process count and peak
summed RSS of the side's whole process tree (sampled every 100 ms).
Bursts go burst by burst, each rotating which side goes first.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from . import load, report
from .context import Context, counts

NAME = "burst"
CONNECTIONS = 32
#: (jobs, callback name): go-000 answers at once, go-005 sleeps 50 ms (harness/app.py).
BURSTS = [(300, "000"), (300, "005"), (900, "000"), (900, "005")]
SMOKE_BURSTS = [(5, "000"), (5, "005")]
JOB_LABEL = {"000": "no-op", "005": "50 ms"}


def run(ctx: Context) -> dict[str, Any]:
    sides, log = ctx.standard(hold=False), ctx.log
    began = time.perf_counter()
    bursts = counts(ctx, BURSTS, SMOKE_BURSTS)
    deadline_s = counts(ctx, 120.0, 15.0)
    clicks = itertools.count(1)
    for side in sides:
        load.warm(side, [(f"go-{name}", f"out-{name}") for name in ("000", "005")], clicks)
    idle = {side.label: load.settle(side, None, 0) for side in sides}
    results: dict[str, dict[str, Any]] = {}
    for i, (size, name) in enumerate(bursts):
        burst = f"{size} x {JOB_LABEL[name]}"
        order = sides[i % len(sides) :] + sides[: i % len(sides)]
        for side in order:
            load.settle(side, idle[side.label], counts(ctx, 20.0, 1.0))  # the last burst's processes gone
            jobs = [load.Job(next(clicks), f"go-{name}", f"out-{name}") for _ in range(size)]
            try:
                timing = load.run_jobs(side, jobs, CONNECTIONS, deadline_s)
            except Exception as exc:  # noqa: BLE001 - e.g. the page load failed: every job lost
                log(f"burst {burst} on {side.label}: {exc!r}")
                timing = {"error": repr(exc)[:300]}
                for job in jobs:
                    job.outcome, job.detail = "failed", "side unreachable"
            answered = [job.done for job in jobs if job.done is not None]
            tally = load.outcomes(jobs)
            drain = max(answered) - timing["began"] if answered and "began" in timing else None
            record = {
                **tally,
                "drain_s": drain,
                "jobs_per_s": tally["ok"] / drain if drain else 0.0,
                **load.latency(jobs),
                **{k: v for k, v in timing.items() if k != "began"},
                "examples": load.examples(jobs),
            }
            results.setdefault(burst, {})[side.label] = record
            log(
                f"burst {burst} on {side.label}: {record['jobs_per_s']:.0f} jobs/s, drain {drain or 0:.2f} s, "
                f"lost {tally['lost']} wrong {tally['wrong']} empty {tally['empty']}, "
                f"peak {record.get('procs_peak', 0)} procs {record.get('rss_peak_mb', 0):.0f} MB"
            )
    return {
        "connections": CONNECTIONS,
        "poll_interval_ms": load.POLL_INTERVAL * 1000,
        "deadline_s": deadline_s,
        "bursts": results,
        "measure_s": time.perf_counter() - began,
    }


def table(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    bursts: dict[str, dict[str, Any]] = result["bursts"]
    keep = ("jobs", "ok", "lost", "wrong", "empty", "jobs_per_s", "drain_s", "submit_s", "p90_s", "procs_peak", "rss_peak_mb")
    figures = {burst: {label: {k: r.get(k) for k in keep} for label, r in sides.items()} for burst, sides in bursts.items()}
    totals: dict[str, dict[str, int]] = {}
    for sides in bursts.values():
        for label, r in sides.items():
            t = totals.setdefault(label, {"jobs": 0, "bad": 0})
            t["jobs"] += r["jobs"]
            t["bad"] += r["lost"] + r["wrong"] + r["empty"]
    lost_line = "; ".join(f"{label} {t['bad']} of {t['jobs']}" for label, t in totals.items())
    lines = [
        f"Bursts submitted over {result['connections']} connections, polled every {result['poll_interval_ms']:g} ms until "
        f"answered or {result['deadline_s']:g} s; jobs/s = correct answers / drain (first submit to last answer); "
        f"RSS summed over the side's process tree (shared pages counted per process). Jobs not answered correctly in "
        f"this run: {lost_line}.",
        "",
        "| burst | side | jobs/s | drain s | submit s | p90 s | lost | wrong | empty | peak procs | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for burst, sides in figures.items():
        for label, r in sides.items():
            cells = [
                burst,
                label,
                num(r["jobs_per_s"], ".0f"),
                num(r["drain_s"], ".2f"),
                num(r["submit_s"], ".2f"),
                num(r["p90_s"], ".2f"),
                str(r["lost"]),
                str(r["wrong"]),
                str(r["empty"]),
                num(r["procs_peak"], "d"),
                num(r["rss_peak_mb"], ".0f"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", figures


def chart(figures: dict[str, Any], path: Path) -> bool:
    bursts = list(figures)
    labels = list(dict.fromkeys(label for sides in figures.values() for label in sides))

    def draw(ax: Any) -> None:
        rows = {label: [figures[b].get(label, {}) for b in bursts] for label in labels}
        series = {label: [r.get("jobs_per_s") or 0 for r in rows[label]] for label in labels}
        for xs, label in zip(report.grouped_bars(ax, bursts, series), labels, strict=True):
            for x, r in zip(xs, rows[label], strict=True):
                bad = (r.get("lost") or 0) + (r.get("wrong") or 0) + (r.get("empty") or 0)
                if bad:
                    ax.annotate(f"{bad} bad", (x, r.get("jobs_per_s") or 0), ha="center", va="bottom", fontsize=7, color="red")
        ax.set_ylabel("jobs answered correctly per second")
        ax.set_title("Bursts: throughput (red: jobs lost, wrong or empty)")

    return report.plot(path, draw)
