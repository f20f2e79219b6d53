"""Figures from raw samples: medians, p90s, ratios, a markdown table and a chart."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.9 * len(ordered)) - 1)]


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [s["seconds"] for s in samples]
    return {
        "median_ms": statistics.median(seconds) * 1000,
        "p90_ms": p90(seconds) * 1000,
        "requests": statistics.median(s["requests"] for s in samples),
        "max_requests": max(s["requests"] for s in samples),
        "wrong": sum(not s["ok"] for s in samples),
        "n": len(samples),
    }


def dash_side_of(label: str) -> str:
    """The Dash manager a bgcb side is compared with (same kind of store)."""
    return "dash-celery" if "celery" in label else "dash-diskcache"


def visible_table(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    floor = summary(result["floor"])
    lines = [
        f"Click to visible at interval {result['interval_ms']:g} ms ({result['reps']} runs per cell; floor: a plain callback, "
        f"median {floor['median_ms']:.0f} ms). Times in ms, median / p90; requests per job (max).",
        "",
        "| case | side | median | p90 | requests | vs Dash (median) | wrong |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    figures: dict[str, Any] = {"floor": floor, "cases": {}}
    for case, sides in result["cases"].items():
        stats = {label: summary(samples) for label, samples in sides.items()}
        figures["cases"][case] = stats
        for label, s in stats.items():
            base = stats.get(dash_side_of(label))
            ratio = "" if label.startswith("dash") or base is None else f"{s['median_ms'] / base['median_ms']:.2f}"
            cells = [case, label, f"{s['median_ms']:.0f}", f"{s['p90_ms']:.0f}", f"{s['requests']:g} ({s['max_requests']})"]
            lines.append("| " + " | ".join([*cells, ratio, str(s["wrong"])]) + " |")
    return "\n".join(lines) + "\n", figures


def visible_chart(figures: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cases = list(figures["cases"])
    labels = sorted({label for stats in figures["cases"].values() for label in stats})
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, label in enumerate(labels):
        values = [figures["cases"][c].get(label, {}).get("median_ms", 0) for c in cases]
        ax.bar([x + i * width for x in range(len(cases))], values, width, label=label)
    ax.set_xticks([x + width * (len(labels) - 1) / 2 for x in range(len(cases))], cases)
    ax.set_ylabel("click to visible, median (ms)")
    ax.set_title("Results on screen at the renderer's default interval (1000 ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
