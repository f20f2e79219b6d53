"""Figures from raw samples: medians, p90s, ratios, a markdown table and a chart."""

from __future__ import annotations

import statistics
from collections.abc import Callable
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


def plot(path: Path, draw: Callable[[Any], bool | None], size: tuple[float, float] = (10, 4.5), panels: int = 1) -> bool:
    """Draw a chart with matplotlib (Agg) into ``path``; False when matplotlib is missing or ``draw`` returns False."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, panels, figsize=size)
    try:
        if draw(axes) is False:
            return False
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        return True
    finally:
        plt.close(fig)


def grouped_bars(
    ax: Any, groups: list[str], series: dict[str, list[float | None]], tick_size: float | None = None
) -> list[list[float]]:
    """Each series' bars side by side within each group (None: no bar), with a legend; returns each series' x positions."""
    width = 0.8 / max(1, len(series))
    positions = []
    for i, (name, values) in enumerate(series.items()):
        xs = [x + i * width for x in range(len(groups))]
        kept = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        ax.bar([x for x, _ in kept], [v for _, v in kept], width, label=name)
        positions.append(xs)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(groups))], groups, fontsize=tick_size)
    ax.legend(fontsize=8)
    return positions


def visible_chart(figures: dict[str, Any], path: Path) -> bool:
    cases = list(figures["cases"])
    labels = sorted({label for stats in figures["cases"].values() for label in stats})

    def draw(ax: Any) -> None:
        grouped_bars(
            ax, cases, {label: [figures["cases"][c].get(label, {}).get("median_ms", 0) for c in cases] for label in labels}
        )
        ax.set_ylabel("click to visible, median (ms)")
        ax.set_title("Results on screen at the renderer's default interval (1000 ms)")

    return plot(path, draw)
