"""bgcb-diskcache against Dash's own DiskcacheManager, measured in one run.

    pip install ./core ./plugins/diskcache_backend "dash[diskcache]" psutil
    python benchmarks/bench_diskcache.py [--ballast-mb 600] [--jobs 20] [--seconds 0.5]

(a) No-op turnaround: submit (the manager's ``call_job_fn``, as Dash calls it
    on a callback's first request) until the result is readable by the
    manager, with the web process holding ~600 MB of live Python objects.
    Dash's manager forks that process per job; bgcb's queues the job for a
    warm worker. Dash's side is read with ``result_ready`` (its cheapest
    check); bgcb's with ``get_result`` (the full poll path).
(b) 20 CPU-bound jobs of ~0.5 s each (a fixed amount of work, calibrated to
    take 0.5 s on one core), submitted at once on a 2-core machine: mean
    completion time (from submission) and the order in which they finished.

Prints the figures and writes them to ``benchmarks/results/diskcache.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dash
import diskcache
import psutil
from dash import Dash, Input, Output, html

import bgcb

try:
    from dash import DiskcacheManager
except ImportError:  # Dash 2.x
    from dash.long_callback import DiskcacheManager  # type: ignore[no-redef,attr-defined]

HERE = Path(__file__).resolve().parent
WORKERS = 2
_TMP = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="bench-dc-"))
os.environ.setdefault("BENCH_DIR", str(_TMP))  # the bgcb pool imports this module too

dash_manager = DiskcacheManager(diskcache.Cache(str(_TMP / "dash")))
bgcb_manager = bgcb.manager("diskcache", directory=str(_TMP / "bgcb"), workers=WORKERS, result_ttl=600.0)

app = Dash(__name__)
app.layout = html.Div([html.Button(id=f"b{i}") for i in range(4)] + [html.Div(id=f"o{i}") for i in range(4)])


def _burn(iterations: int) -> int:
    acc = 0
    for i in range(iterations):
        acc += i * i
    return acc


@dash.callback(Output("o0", "children"), Input("b0", "n_clicks"), background=True, manager=dash_manager)
def dash_noop(n):
    return n


@dash.callback(Output("o1", "children"), Input("b1", "n_clicks"), background=True, manager=bgcb_manager)
def bgcb_noop(n):
    return n


@dash.callback(Output("o2", "children"), Input("b2", "n_clicks"), background=True, manager=dash_manager)
def dash_cpu(n):
    return _burn(n) % 7


@dash.callback(Output("o3", "children"), Input("b3", "n_clicks"), background=True, manager=bgcb_manager)
def bgcb_cpu(n):
    return _burn(n) % 7


def _job_fn(manager, fn_name: str):
    from bgcb._dash_compat import BaseManager

    for key, fn, _ in BaseManager.functions:
        if fn.__name__ == fn_name:
            return manager.func_registry[key]
    raise LookupError(fn_name)


def _ballast(megabytes: int) -> list:
    """~``megabytes`` MB of live small objects, as a big web process holds."""
    before = psutil.Process().memory_info().rss
    chunk = [bytearray(40) for _ in range(100_000)]
    per = (psutil.Process().memory_info().rss - before) / len(chunk) or 100
    count = int(megabytes * 1e6 / per)
    return chunk + [bytearray(40) for _ in range(count - len(chunk))]


def _calibrate(seconds: float) -> int:
    n = 200_000
    while True:
        t0 = time.perf_counter()
        _burn(n)
        took = time.perf_counter() - t0
        if took > 0.1:
            return int(n * seconds / took)
        n *= 2


def _reap_dash() -> None:
    import multiprocess

    multiprocess.active_children()


def turnaround(kind: str, runs: int) -> list[float]:
    if kind == "dash":
        mgr, job_fn = dash_manager, _job_fn(dash_manager, "dash_noop")

        def ready(key, job):
            return mgr.result_ready(key)
    else:
        mgr, job_fn = bgcb_manager, _job_fn(bgcb_manager, "bgcb_noop")

        def ready(key, job):
            return mgr.get_result(key, job) is not mgr.UNDEFINED

    times = []
    for i in range(runs):
        key = f"{kind}-noop-{i}-{time.time_ns()}"
        t0 = time.perf_counter()
        job = mgr.call_job_fn(key, job_fn, [i], {})
        while not ready(key, job):
            time.sleep(0.0001)
        times.append(time.perf_counter() - t0)
        if kind == "dash":
            mgr.handle.delete(key)
            if i % 10 == 9:
                _reap_dash()
    _reap_dash()
    return times


def burst(kind: str, jobs: int, iterations: int) -> tuple[list[float], list[int]]:
    """Submit ``jobs`` CPU-bound jobs at once; completion times and finishing order."""
    mgr = dash_manager if kind == "dash" else bgcb_manager
    job_fn = _job_fn(mgr, f"{kind}_cpu")
    keys = [f"{kind}-cpu-{i}-{time.time_ns()}" for i in range(jobs)]
    t0 = time.perf_counter()
    handles = [mgr.call_job_fn(key, job_fn, [iterations], {}) for key in keys]
    done: dict[int, float] = {}
    while len(done) < jobs:
        for i, (key, job) in enumerate(zip(keys, handles)):
            if i in done:
                continue
            ready = mgr.result_ready(key) if kind == "dash" else mgr.backend.result(job) is not None
            if ready:
                done[i] = time.perf_counter() - t0
        time.sleep(0.01)
    _reap_dash()
    order = sorted(done, key=done.get)
    return [done[i] for i in range(jobs)], order


def _inversions(order: list[int]) -> int:
    return sum(1 for a in range(len(order)) for b in range(a + 1, len(order)) if order[a] > order[b])


def _wait_pool() -> None:
    """Warm up: the pool started with the manager; wait until a job runs."""
    job_fn = _job_fn(bgcb_manager, "bgcb_noop")
    job = bgcb_manager.call_job_fn("warm", job_fn, [0], {})
    deadline = time.time() + 60
    while bgcb_manager.backend.result(job) is None:
        if time.time() > deadline:
            raise SystemExit("the bgcb worker pool did not start within 60 s")
        time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ballast-mb", type=int, default=600)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--out", default=str(HERE / "results" / "diskcache.md"))
    args = parser.parse_args()

    _wait_pool()
    iterations = _calibrate(args.seconds)
    ballast = _ballast(args.ballast_mb)
    rss = psutil.Process().memory_info().rss / 1e6
    print(f"web process RSS with ballast: {rss:.0f} MB ({len(ballast):,} live objects)")
    for kind in ("dash", "bgcb"):  # warm both paths once
        turnaround(kind, 5)

    ta = {kind: turnaround(kind, args.runs) for kind in ("dash", "bgcb")}
    med = {k: statistics.median(v) * 1e3 for k, v in ta.items()}
    p90 = {k: statistics.quantiles(v, n=10)[-1] * 1e3 for k, v in ta.items()}
    for kind in ("dash", "bgcb"):
        print(f"(a) no-op turnaround {kind:>5}: median {med[kind]:.2f} ms, p90 {p90[kind]:.2f} ms ({args.runs} runs)")
    print(f"    bgcb / dash median: {med['bgcb'] / med['dash']:.3f}")

    bursts = {kind: burst(kind, args.jobs, iterations) for kind in ("dash", "bgcb")}
    mean = {k: statistics.mean(v[0]) for k, v in bursts.items()}
    last = {k: max(v[0]) for k, v in bursts.items()}
    for kind in ("dash", "bgcb"):
        order = bursts[kind][1]
        print(
            f"(b) {args.jobs} CPU jobs {kind:>5}: mean completion {mean[kind]:.2f} s, last {last[kind]:.2f} s, "
            f"finishing order {order} ({_inversions(order)} inversions)"
        )
    ratio = mean["bgcb"] / mean["dash"]
    print(f"    bgcb / dash mean completion: {ratio:.3f}")

    bgcb_order = bursts["bgcb"][1]
    # Two workers start jobs in pairs; a pair may finish in either order.
    in_order = all(a // WORKERS <= b // WORKERS for a, b in zip(bgcb_order, bgcb_order[1:]))
    verdict = {
        "turnaround <= 2 ms median": med["bgcb"] <= 2.0,
        "mean completion <= 0.6x Dash": ratio <= 0.6,
        "submission order (pairs of 2 workers)": in_order,
    }
    for name, ok in verdict.items():
        print(f"    {'PASS' if ok else 'FAIL'}: {name}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "\n".join(
            [
                "# bgcb-diskcache vs Dash's DiskcacheManager",
                "",
                f"Measured by `benchmarks/bench_diskcache.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
                f"Python {platform.python_version()}, Dash {dash.__version__}, {os.cpu_count()} cores, "
                f"bgcb workers={WORKERS}; web process RSS {rss:.0f} MB of live objects during both measurements.",
                "",
                "| measure | Dash DiskcacheManager | bgcb-diskcache | ratio bgcb/Dash |",
                "|---|---|---|---|",
                f"| (a) no-op turnaround, median ({args.runs} runs) | {med['dash']:.2f} ms | {med['bgcb']:.2f} ms "
                f"| {med['bgcb'] / med['dash']:.3f} |",
                f"| (a) no-op turnaround, p90 | {p90['dash']:.2f} ms | {p90['bgcb']:.2f} ms | {p90['bgcb'] / p90['dash']:.3f} |",
                f"| (b) {args.jobs} CPU jobs of {args.seconds} s, mean completion | {mean['dash']:.2f} s | {mean['bgcb']:.2f} s "
                f"| {ratio:.3f} |",
                f"| (b) last job done | {last['dash']:.2f} s | {last['bgcb']:.2f} s | {last['bgcb'] / last['dash']:.3f} |",
                f"| (b) finishing-order inversions | {_inversions(bursts['dash'][1])} | {_inversions(bgcb_order)} | |",
                "",
                f"Finishing order, Dash: `{bursts['dash'][1]}`",
                "",
                f"Finishing order, bgcb: `{bgcb_order}`",
                "",
                "Acceptance: " + "; ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in verdict.items()) + ".",
                "",
            ]
        )
    )
    print(f"written to {out}")
    del ballast
    bgcb_manager.close()
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
