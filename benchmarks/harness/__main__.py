"""``python -m harness [--smoke] [--phases visible] [--dash-python PY]`` from benchmarks/ (``nox -s bench`` does it).

Starts every side (Dash's DiskcacheManager and CeleryManager, bgcb-diskcache
and bgcb-celery with and without ``hold``), runs the phases against all of
them in one run, and writes ``results/<phase>.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from . import report, visible
from .stack import BENCHMARKS, JOB_WORKERS, WEB_THREADS, WEB_WORKERS, Side, this_python

RESULTS = BENCHMARKS / "results"
#: bgcb's ``hold`` on the sides that use it: longer than the longest measured job.
HOLD = 10.0


def _versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for d in ('dash', 'bgcb', 'bgcb-diskcache', 'bgcb-celery', 'celery', 'kombu', 'redis', 'diskcache', 'gunicorn'):\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)


def _machine() -> dict[str, object]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": load,
    }


def sides(dash_python: str, smoke: bool) -> list[Side]:
    me = this_python()
    out = [Side("dash-diskcache", me), Side("bgcb-diskcache", me), Side("bgcb-diskcache", me, hold=HOLD)]
    out += [Side("dash-celery", dash_python), Side("bgcb-celery", me), Side("bgcb-celery", me, hold=HOLD)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every phase with tiny counts (< 2 minutes): the harness cannot rot")
    parser.add_argument("--phases", default="visible", help="comma-separated: visible")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per cell (default 10; 1 with --smoke)")
    parser.add_argument("--interval", type=float, default=1.0, help="the renderer's poll interval in seconds (Dash's default: 1)")
    parser.add_argument(
        "--dash-python",
        default=os.environ.get("BENCH_DASH_PYTHON", sys.executable),
        help="interpreter with dash[celery] for Dash's CeleryManager (it pins celery<5.4)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.smoke else 10)
    out = args.out / "smoke" if args.smoke else args.out
    out.mkdir(parents=True, exist_ok=True)
    running = sides(args.dash_python, args.smoke)
    started = time.time()
    meta = {
        "machine": _machine(),
        "shape": f"gunicorn {WEB_WORKERS} workers x {WEB_THREADS} threads; {JOB_WORKERS} job workers per side",
        "versions": {"bgcb sides": _versions(this_python()), "dash-celery side": _versions(args.dash_python)},
    }
    try:
        for side in running:
            print(f"starting {side.label}", flush=True)
            side.start()
        for phase in args.phases.split(","):
            if phase != "visible":
                parser.error(f"unknown phase {phase!r}")
            result = visible.run(running, reps, args.interval)
            table, figures = report.visible_table(result)
            (out / "visible.json").write_text(json.dumps({**meta, **result, "figures": figures}, indent=1))
            (out / "visible.md").write_text(table)
            report.visible_chart(figures, out / "visible.png")
            print(table)
    finally:
        for side in running:
            side.stop()
    print(f"done in {time.time() - started:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
