"""The report's charts as PNGs: defects per day by class, defect rate per line, confidence histogram.

Drawn with matplotlib's object API (``Figure``, no pyplot state), so flows and CLI runs in threads
or worker processes do not share a global figure; the numbers come from the store's report queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from inspect_core.store import Engine, ReportFilter, confidence_histogram, defect_rate_per_line, defects_per_day

PLOT_NAMES = ("defects_per_day.png", "defect_rate_per_line.png", "confidence_histogram.png")


def _no_data(ax: Axes, title: str) -> None:
    ax.text(0.5, 0.5, "no detections match the filter", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)


def _stacked_bars(ax: Axes, frame: pd.DataFrame, positions: Sequence[float], width: float) -> None:
    bottom = np.zeros(len(frame))
    for name in frame.columns:
        ax.bar(positions, frame[name].to_numpy(), width, bottom=bottom, label=name)
        bottom += frame[name].to_numpy()
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)


def plot_report(engine: Engine, flt: ReportFilter, out_dir: Path) -> list[Path]:
    """Write defects per day by class, defect rate per line and the confidence histogram as PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in PLOT_NAMES]

    per_day = defects_per_day(engine, flt)
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    if per_day.empty:
        _no_data(ax, "defects per day")
    else:
        per_day = per_day.reindex(pd.date_range(per_day.index.min(), per_day.index.max(), freq="D"), fill_value=0)  # gaps show as gaps
        _stacked_bars(ax, per_day, range(len(per_day)), width=0.8)
        step = max(1, len(per_day) // 15)
        ax.set_xticks(range(0, len(per_day), step), [f"{day:%Y-%m-%d}" for day in per_day.index[::step]], rotation=45, ha="right")
        ax.set_title(f"defects per UTC day by class ({int(per_day.to_numpy().sum())} in all)")
        ax.set_ylabel("detections")
    fig.tight_layout()
    fig.savefig(paths[0], dpi=100)

    rates = defect_rate_per_line(engine, flt)
    fig = Figure(figsize=(max(5, 1.2 * len(rates) + 2), 4.5))
    ax = fig.subplots()
    if rates.empty:
        _no_data(ax, "defect rate per line")
    else:
        labels = [str(line) if line is not None else "(no line)" for line in rates["line"]]
        bars = ax.bar(labels, 100 * rates["defect_rate"].to_numpy(), color="tab:red")
        ax.bar_label(bars, [f"{d}/{n}" for d, n in zip(rates["images_with_defects"], rates["images_scored"])], fontsize=8)
        ax.set_ylabel("% of scored images with a defect")
        ax.set_ylim(0, 105)
        ax.set_title("defect rate per line")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=100)

    histogram = confidence_histogram(engine, flt)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    if histogram.empty or not histogram.to_numpy().any():
        _no_data(ax, "confidence histogram")
    else:
        width = 1 / len(histogram)
        _stacked_bars(ax, histogram, [b + width / 2 for b in histogram.index], width=width * 0.95)
        ax.set_xlim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("detections")
        ax.set_title("confidence histogram")
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    return paths
