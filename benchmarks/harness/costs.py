"""Phase ``costs``: what a job costs the web processes (CPU) and, on the Celery sides, Redis (commands).

One browser per side runs N jobs one after another, in four series:

* ``noop_50``: no-op jobs (``go-000``) at 50 ms polls, the per-job figures;
* ``noop_10``: the same at 10 ms polls;
* ``slow_50`` and ``slow_10``: 0.3 s jobs (``go-03``) at 50 and at 10 ms polls.

CPU is the user+system time of the side's gunicorn master and its direct
children that are gunicorn workers, read at the start and the end of a series
(pids present at both; a worker's own children, such as the process Dash's
DiskcacheManager forks per job or bgcb-diskcache's pool, are not counted).
Redis commands are the change in ``INFO commandstats`` calls of the side's
Redis (``info`` and ``config`` left out): web processes and workers together.

Per poll: the two slow series take about the same wall time and submit the
same jobs, so the difference in CPU (or commands) over the difference in polls
is the cost of one poll. Per submit: the no-op series' CPU less its polls at
that per-poll cost, per job (so it includes the answering request's extra work).
The no-op pair gives a second per-poll estimate (``figures``), usually
ill-conditioned: a no-op job needs few polls at either interval.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from . import report
from .browser import Browser
from .context import Context, counts
from .stack import Side

NAME = "costs"
NOOP = ("go-000", "out-000")
SLOW = ("go-03", "out-03")
#: series name -> (button, output, poll interval in seconds)
SERIES = {
    "noop_50": (*NOOP, 0.05),
    "noop_10": (*NOOP, 0.01),
    "slow_50": (*SLOW, 0.05),
    "slow_10": (*SLOW, 0.01),
}
#: commandstats entries that are the measurement's own, not the side's.
EXCLUDED = ("info", "config")


class Meter:
    """Reads the CPU time of a side's gunicorn processes and its Redis command count."""

    def __init__(self, side: Side) -> None:
        import psutil

        self.psutil = psutil
        web = next(p for p in side.procs if p.name == "web")
        master = psutil.Process(web.popen.pid)
        workers = []
        for child in master.children(recursive=False):
            try:
                if "gunicorn" in " ".join(child.cmdline()):
                    workers.append(child)
            except psutil.Error:
                continue
        self.procs = [master, *workers]
        self.redis = None
        if side.celery and side.redis_url:
            import redis

            self.redis = redis.Redis.from_url(side.redis_url)
            self.commands()  # connect now: the connection's own handshake is not the side's

    def cpu(self) -> dict[int, float]:
        """user+system seconds by pid, of the processes still alive."""
        out: dict[int, float] = {}
        for proc in self.procs:
            try:
                times = proc.cpu_times()
            except self.psutil.Error:
                continue
            out[proc.pid] = times.user + times.system
        return out

    def commands(self) -> dict[str, int]:
        if self.redis is None:
            return {}
        stats = self.redis.info("commandstats")
        out: dict[str, int] = {}
        for key, value in stats.items():
            name = key.removeprefix("cmdstat_")
            if not name.startswith(EXCLUDED):
                out[name] = int(value["calls"])
        return out

    def read(self) -> tuple[dict[int, float], dict[str, int], float]:
        return self.cpu(), self.commands(), time.perf_counter()

    def change(self, before: tuple[dict[int, float], dict[str, int], float]) -> dict[str, Any]:
        cpu0, cmd0, t0 = before
        cpu1, cmd1, t1 = self.read()
        common = cpu0.keys() & cpu1.keys()
        by_command = {k: v - cmd0.get(k, 0) for k, v in cmd1.items() if v - cmd0.get(k, 0)}
        return {
            "seconds": t1 - t0,
            "cpu_ms": sum(cpu1[pid] - cpu0[pid] for pid in common) * 1000,
            "lost_pids": len(cpu0.keys() - common),
            "redis": sum(by_command.values()) if self.redis is not None else None,
            "redis_by_command": by_command,
        }

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()


def series(page: Browser, meter: Meter, button: str, output: str, interval: float, n: int, clicks) -> dict[str, Any]:
    """``n`` jobs one after another, polled every ``interval``: their requests and what they cost."""
    page.interval = interval
    requests = wrong = exceptions = 0
    before = meter.read()
    for _ in range(n):
        k = next(clicks)
        try:
            click = page.click(button, output, n_clicks=k)
        except Exception:  # a failing side is a result, not a crash
            exceptions += 1
            continue
        requests += click.requests
        wrong += not (click.status == 200 and click.output(output) == k)
    out = meter.change(before)
    return {
        "jobs": n,
        "requests": requests,
        "polls": requests - (n - exceptions),
        "wrong": wrong,
        "exceptions": exceptions,
        **out,
    }


def measure(side: Side, n: int, idle: float, clicks) -> dict[str, Any]:
    meter = Meter(side)
    page = Browser(side.url, 0.05, timeout=60).load()
    try:
        for button, output in (NOOP, NOOP, SLOW):  # warm up: imports, connections, worker processes
            page.click(button, output, n_clicks=next(clicks))
        before = meter.read()
        time.sleep(idle)
        out: dict[str, Any] = {"idle": meter.change(before)}
        for name, (button, output, interval) in SERIES.items():
            out[name] = series(page, meter, button, output, interval, n, clicks)
        return out
    finally:
        page.close()
        meter.close()


def run(ctx: Context) -> dict[str, Any]:
    sides = ctx.standard(hold=False)
    n = counts(ctx, 50, 3)
    idle = counts(ctx, 3.0, 0.5)
    clicks = itertools.count(1)
    out: dict[str, Any] = {}
    for side in sides:
        try:
            out[side.label] = measure(side, n, idle, clicks)
            ctx.log(f"costs: {side.label} done")
        except Exception as exc:  # record it, go on with the other sides
            out[side.label] = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
            ctx.log(f"costs: {side.label} failed: {out[side.label]['failed']}")
    return {"jobs_per_series": n, "idle_s": idle, "series": {k: v[2] for k, v in SERIES.items()}, "sides": out}


def _per_poll(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    """(b - a) in ``key`` per extra poll of series b over series a."""
    if a.get(key) is None or b.get(key) is None or b["polls"] <= a["polls"]:
        return None
    return (b[key] - a[key]) / (b["polls"] - a["polls"])


def figures_of(m: dict[str, Any]) -> dict[str, Any]:
    noop, slow50, slow10 = m["noop_50"], m["slow_50"], m["slow_10"]
    jobs = max(1, noop["jobs"] - noop["exceptions"])
    poll_cpu = _per_poll(slow50, slow10, "cpu_ms")
    redis = noop["redis"] is not None
    return {
        "cpu_ms_per_job": noop["cpu_ms"] / jobs,
        "cpu_ms_per_request": noop["cpu_ms"] / max(1, noop["requests"]),
        "cpu_ms_per_poll": poll_cpu,
        "cpu_ms_per_submit": None if poll_cpu is None else (noop["cpu_ms"] - noop["polls"] * poll_cpu) / jobs,
        "cpu_ms_per_poll_noop_pair": _per_poll(noop, m["noop_10"], "cpu_ms"),
        "requests_per_job": noop["requests"] / jobs,
        "polls_per_job": {k: m[k]["polls"] / max(1, m[k]["jobs"]) for k in SERIES},
        "redis_per_job": noop["redis"] / jobs if redis else None,
        "redis_per_poll": _per_poll(slow50, slow10, "redis") if redis else None,
        "redis_by_command_per_job": {k: v / jobs for k, v in sorted(noop["redis_by_command"].items())} if redis else None,
        "idle_cpu_ms_per_s": m["idle"]["cpu_ms"] / m["idle"]["seconds"],
        "idle_redis_per_s": m["idle"]["redis"] / m["idle"]["seconds"] if redis else None,
        "errors": sum(m[k]["wrong"] + m[k]["exceptions"] for k in SERIES),
        "lost_pids": sum(m[k]["lost_pids"] for k in SERIES),
    }


def table(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from .report import dash_side_of

    n = result["jobs_per_series"]
    lines = [
        f"Web-process CPU (gunicorn master + workers, user+sys; per-job forks and pools excluded) and Redis commands "
        f"(INFO commandstats, all clients, info/config excluded), {n} sequential jobs per series: per job and per request from "
        "no-op jobs at 50 ms polls; per poll = Δcost / Δpolls between 0.3 s jobs at 10 ms and at 50 ms polls; per submit = "
        "(no-op CPU − its polls × per-poll CPU) / jobs. CPU is read in 10 ms ticks: small runs are noisy, negatives are noise. "
        "Target: bgcb-celery Redis commands per job ≤ 1/3 of Dash's CeleryManager.",
        "",
        "| side | CPU ms/job | vs Dash | CPU ms/request | CPU ms/submit | CPU ms/poll | Redis cmds/job | vs Dash | "
        "Redis cmds/poll | idle CPU ms/s | idle cmds/s | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    figures: dict[str, Any] = {"sides": {}}
    for label, m in result["sides"].items():
        figures["sides"][label] = {"failed": m["failed"]} if "failed" in m else figures_of(m)

    def num(v: float | None, digits: int = 2) -> str:
        return "—" if v is None else f"{v:.{digits}f}"

    for label, f in figures["sides"].items():
        if "failed" in f:
            lines.append(f"| {label} | failed: {f['failed'][:100]} |" + " |" * 10)
            continue
        base = figures["sides"].get(dash_side_of(label), {})
        cpu_ratio = redis_ratio = ""
        if not label.startswith("dash"):
            if base.get("cpu_ms_per_job"):
                cpu_ratio = f"{f['cpu_ms_per_job'] / base['cpu_ms_per_job']:.2f}"
            if f["redis_per_job"] is not None and base.get("redis_per_job"):
                ratio = f["redis_per_job"] / base["redis_per_job"]
                redis_ratio = f"{ratio:.2f} (target {'met' if ratio <= 1 / 3 else 'missed'})"
                f["redis_ratio_vs_dash"] = ratio
        cells = [
            label,
            num(f["cpu_ms_per_job"]),
            cpu_ratio,
            num(f["cpu_ms_per_request"]),
            num(f["cpu_ms_per_submit"]),
            num(f["cpu_ms_per_poll"]),
            num(f["redis_per_job"], 1),
            redis_ratio,
            num(f["redis_per_poll"]),
            num(f["idle_cpu_ms_per_s"]),
            num(f["idle_redis_per_s"], 1),
            str(f["errors"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", figures


def chart(figures: dict[str, Any], path: Path) -> bool:
    sides = {k: v for k, v in figures["sides"].items() if "failed" not in v}
    if not sides:
        return False
    labels = list(sides)

    def draw(axes: Any) -> None:
        left, right = axes
        left.bar(labels, [sides[k]["cpu_ms_per_job"] for k in labels], color="tab:blue")
        left.set_ylabel("web CPU ms per no-op job")
        left.set_title("Web-process CPU per job")
        celery = [k for k in labels if sides[k]["redis_per_job"] is not None]
        right.bar(celery, [sides[k]["redis_per_job"] for k in celery], color="tab:red")
        right.set_ylabel("Redis commands per no-op job")
        right.set_title("Redis commands per job (Celery sides)")
        for ax in (left, right):
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)

    return report.plot(path, draw, size=(11, 4.5), panels=2)
