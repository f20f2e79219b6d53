"""Phase ``cpu``: 20 CPU-bound jobs at once on each side's 2 job workers; who finishes when, and in what order.

Each ``cpu-go`` job burns 0.5 s of CPU (``BENCH_CPU_SECONDS``). The first
requests go one right after another on one connection (a few ms apart), so
the submit order is the order the side received the jobs; then every
pending job is polled once a round, a round every 50 ms, over 8 connections.
Per side: mean completion time (each job's first request to its answer), the
first and last completion, and order inversions: pairs where a job submitted
later answered in an earlier poll round than one submitted before it; and
of them, the pairs at least 2 places apart in submit order (jobs that ran
side by side on the 2 workers may finish either way round; a job that had
to wait for a worker overtaking one that did not means the queue is not
first-in first-out).
"""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path
from typing import Any

from . import load, report
from .context import Context, counts
from .stack import JOB_WORKERS

NAME = "cpu"
CONNECTIONS = 8


def inversions(jobs: list[load.Job], apart: int = 1) -> int:
    """Pairs (earlier, later) in submit order, at least ``apart`` places apart, where the later one answered in an
    earlier poll round (jobs answered in the same round are a tie, not an inversion).

    With ``apart`` = the job workers (2), a first-in first-out queue has none: jobs that ran side by side on the two
    workers may finish either way round, a job that had to wait for a worker may not overtake one that did not.
    """
    rounds = [job.round for job in jobs if job.outcome == "ok"]
    return sum(rounds[j] < rounds[i] for i in range(len(rounds)) for j in range(i + apart, len(rounds)))


def run(ctx: Context) -> dict[str, Any]:
    sides, log = ctx.standard(hold=False), ctx.log
    began = time.perf_counter()
    size = counts(ctx, 20, 4)
    deadline_s = counts(ctx, 60.0, 15.0)
    clicks = itertools.count(1)
    for side in sides:
        load.warm(side, [("cpu-go", "cpu-out")], clicks)
    results: dict[str, Any] = {}
    for side in sides:
        load.settle(side, None, 0)
        jobs = [load.Job(next(clicks), "cpu-go", "cpu-out") for _ in range(size)]
        try:
            timing = load.run_jobs(side, jobs, CONNECTIONS, deadline_s, concurrent_submit=False)
        except Exception as exc:  # noqa: BLE001 - e.g. the page load failed: every job lost
            log(f"cpu on {side.label}: {exc!r}")
            timing = {"error": repr(exc)[:300]}
            for job in jobs:
                job.outcome, job.detail = "failed", "side unreachable"
        seconds = [s for job in jobs if job.outcome == "ok" and (s := job.seconds) is not None]
        record = {
            **load.outcomes(jobs),
            "mean_s": statistics.mean(seconds) if seconds else None,
            "first_s": min(seconds) if seconds else None,
            "last_s": max(seconds) if seconds else None,
            "inversions": inversions(jobs),
            "inversions_apart": inversions(jobs, JOB_WORKERS),
            "completion_s": [job.seconds for job in jobs],
            "rounds_answered": [job.round for job in jobs],
            **{k: v for k, v in timing.items() if k != "began"},
            "examples": load.examples(jobs),
        }
        results[side.label] = record
        log(
            f"cpu on {side.label}: mean {record['mean_s'] or 0:.2f} s, first {record['first_s'] or 0:.2f} s, "
            f"inversions {record['inversions']} ({record['inversions_apart']} {JOB_WORKERS}+ apart), lost {record['lost']}"
        )
    return {
        "jobs": size,
        "connections": CONNECTIONS,
        "deadline_s": deadline_s,
        "sides": results,
        "measure_s": time.perf_counter() - began,
    }


def table(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    sides: dict[str, Any] = result["sides"]
    keep = ("jobs", "ok", "lost", "wrong", "empty", "mean_s", "first_s", "last_s", "inversions", "inversions_apart")
    figures: dict[str, Any] = {label: {k: r.get(k) for k in keep} for label, r in sides.items()}
    for label, r in figures.items():
        base = figures.get(report.dash_side_of(label))
        ok = not label.startswith("dash") and base and base["mean_s"] and r["mean_s"] is not None
        r["vs_dash"] = r["mean_s"] / base["mean_s"] if ok else None

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        f"{result['jobs']} CPU-bound jobs (0.5 s of CPU each) submitted back to back on one connection to each side's "
        f"2 job workers, polled every 50 ms; completion = first request to answer, in s; "
        f"inversions = pairs answered out of submit order (in brackets: of them, pairs {JOB_WORKERS}+ places apart, "
        f"which a first-in first-out queue on {JOB_WORKERS} workers never has).",
        "",
        "| side | mean s | first s | last s | vs Dash (mean) | inversions | lost | wrong | empty |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in figures.items():
        cells = [
            label,
            num(r["mean_s"], ".2f"),
            num(r["first_s"], ".2f"),
            num(r["last_s"], ".2f"),
            num(r["vs_dash"], ".2f"),
            f"{r['inversions']} ({r['inversions_apart']})",
            str(r["lost"]),
            str(r["wrong"]),
            str(r["empty"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", figures


def chart(figures: dict[str, Any], path: Path) -> bool:
    labels = list(figures)
    xs = range(len(labels))

    def draw(ax: Any) -> None:
        ax.bar([x - 0.2 for x in xs], [figures[k]["mean_s"] or 0 for k in labels], 0.4, label="mean completion")
        ax.bar([x + 0.2 for x in xs], [figures[k]["first_s"] or 0 for k in labels], 0.4, label="first completion")
        for x, label in zip(xs, labels, strict=True):
            ax.annotate(f"{figures[label]['inversions']} inv.", (x, 0), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("seconds")
        ax.set_title("CPU-bound jobs at once on 2 job workers")
        ax.legend(fontsize=8)

    return report.plot(path, draw, size=(8, 4.5))
