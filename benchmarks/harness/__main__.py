"""``python -m harness [--smoke] [--phases visible] [--dash-python PY]`` from benchmarks/ (``nox -s bench`` does it).

Starts every side (Dash's DiskcacheManager and CeleryManager, bgcb-diskcache
and bgcb-celery with and without ``hold``), runs the phases against all of
them in one run, and writes ``results/<phase>.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .context import Context
from .stack import BENCHMARKS, JOB_WORKERS, WEB_THREADS, WEB_WORKERS, this_python

RESULTS = BENCHMARKS / "results"
#: The phases, in the order a run takes them. Each module has NAME, run(ctx) -> dict,
#: table(result) -> (markdown, figures) and, optionally, chart(figures, path) -> bool.
PHASE_NAMES = ["visible", "turnaround", "costs", "burst", "cpu", "scaling"]


def _phases() -> dict[str, Any]:
    """The phase modules that exist, by name."""
    out: dict[str, Any] = {}
    for name in PHASE_NAMES:
        try:
            out[name] = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
    return out


PHASES = _phases()


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every phase with tiny counts (< 2 minutes): the harness cannot rot")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of: {', '.join(PHASES)}")
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
    chosen = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    started = time.time()
    meta = {
        "machine": _machine(),
        "shape": f"gunicorn {WEB_WORKERS} workers x {WEB_THREADS} threads; {JOB_WORKERS} job workers per side",
        "versions": {"bgcb sides": _versions(this_python()), "dash-celery side": _versions(args.dash_python)},
    }
    ctx = Context(args.dash_python, args.smoke, reps, args.interval, log=lambda line: print(line, flush=True))
    try:
        for name in chosen:
            phase = PHASES[name]
            began = time.time()
            result = phase.run(ctx)
            table, figures = phase.table(result)
            record = {**meta, "phase": name, "seconds": time.time() - began, **result, "figures": figures}
            (out / f"{name}.json").write_text(json.dumps(record, indent=1))
            (out / f"{name}.md").write_text(table)
            if hasattr(phase, "chart"):
                phase.chart(figures, out / f"{name}.png")
            print(table, flush=True)
    finally:
        ctx.stop()
    print(f"done in {time.time() - started:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
