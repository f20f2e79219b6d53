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
    """Iterations of :func:`_burn` that take ``seconds`` on one core (median of 5)."""
    n = 200_000
    while True:
        t0 = time.perf_counter()
        _burn(n)
        if time.perf_counter() - t0 > 0.1:
            break
        n *= 2
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        _burn(n)
        rates.append(n / (time.perf_counter() - t0))
    return int(statistics.median(rates) * seconds)


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


def burst(kind: str, jobs: int, iterations: int, poll: float = 0.05) -> tuple[list[float], list[int]]:
    """Submit ``jobs`` CPU-bound jobs at once; completion times and finishing order.

    Every unfinished job is polled each ``poll`` seconds, the same for both
    sides (a browser polls each job once per ``interval``, 1 s by default);
    polling much faster would measure the poller's CPU use, not the queue.
    """
    mgr = dash_manager if kind == "dash" else bgcb_manager
    job_fn = _job_fn(mgr, f"{kind}_cpu")
    keys = [f"{kind}-cpu-{i}-{time.time_ns()}" for i in range(jobs)]
    t0 = time.perf_counter()
    handles = [mgr.call_job_fn(key, job_fn, [iterations], {}) for key in keys]
    done: dict[int, float] = {}
    while len(done) < jobs:
        for i, (key, job) in enumerate(zip(keys, handles, strict=False)):
            if i in done:
                continue
            ready = mgr.result_ready(key) if kind == "dash" else mgr.backend.result(job) is not None
            if ready:
                done[i] = time.perf_counter() - t0
        time.sleep(poll)
    _reap_dash()
    order = sorted(done, key=done.get)
    if kind == "bgcb":  # also the order in which the workers started them
        started = {i: mgr.backend.status(job).started_at for i, job in enumerate(handles)}
        burst.bgcb_starts.append(sorted(started, key=started.get))  # type: ignore[attr-defined]
    return [done[i] for i in range(jobs)], order


burst.bgcb_starts = []  # type: ignore[attr-defined]


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between polls of each unfinished job in (b)")
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

    # Alternate rounds so that load from other processes on the machine hits
    # both sides alike; report the round with the median ratio.
    rounds = []
    for r in range(args.rounds):
        sides = ("dash", "bgcb") if r % 2 == 0 else ("bgcb", "dash")
        got = {kind: burst(kind, args.jobs, iterations, args.poll) for kind in sides}
        means = {k: statistics.mean(v[0]) for k, v in got.items()}
        rounds.append((means["bgcb"] / means["dash"], got))
        print(
            f"(b) round {r + 1}: mean completion dash {means['dash']:.2f} s, bgcb {means['bgcb']:.2f} s, "
            f"ratio {means['bgcb'] / means['dash']:.3f}"
        )
    rounds.sort(key=lambda item: item[0])
    ratio, bursts = rounds[len(rounds) // 2]
    all_ratios = [round(r, 3) for r, _ in rounds]
    mean = {k: statistics.mean(v[0]) for k, v in bursts.items()}
    last = {k: max(v[0]) for k, v in bursts.items()}
    for kind in ("dash", "bgcb"):
        order = bursts[kind][1]
        print(
            f"(b) {args.jobs} CPU jobs {kind:>5} (median round): mean completion {mean[kind]:.2f} s, last {last[kind]:.2f} s, "
            f"finishing order {order} ({_inversions(order)} inversions)"
        )
    print(f"    bgcb / dash mean completion: {ratio:.3f} (rounds: {all_ratios})")

    # FIFO: started in submission order; with 2 workers a job finishes at most
    # one place away from its submission position.
    starts_fifo = all(starts == sorted(starts) for starts in burst.bgcb_starts)  # type: ignore[attr-defined]
    in_order = starts_fifo and all(all(abs(pos - job) < WORKERS for pos, job in enumerate(got["bgcb"][1])) for _, got in rounds)
    for r, (_, got) in enumerate(rounds):
        print(f"    bgcb finishing order, round {r + 1} (rounds sorted by ratio): {got['bgcb'][1]}")
    print(f"    bgcb jobs started in submission order in every round: {starts_fifo}")
    bgcb_order = bursts["bgcb"][1]
    verdict = {
        "turnaround <= 2 ms median": med["bgcb"] <= 2.0,
        "mean completion <= 0.6x Dash": ratio <= 0.6,
        "submission order (started FIFO; finished within one place)": in_order,
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
                f"(b) is the median of {args.rounds} alternating rounds, each unfinished job polled every {args.poll:g} s on "
                f"both sides; bgcb/Dash mean-completion ratios of all rounds: "
                f"{all_ratios}. Under CPU load from other processes (this machine may be shared), Dash's 20 job "
                "processes get a larger share of the CPU than bgcb's 2 workers, which shows in 'last job done' and "
                "widens the spread of the ratios; on an idle machine both should finish the same total work in about "
                "the same time (not measured here).",
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
