"""The HTML report's charts as PNG bytes: defect rate per line and per class over the plant's days or shifts, confidences.

PNG, not SVG: a year of shifts is a thousand points per line, which as SVG paths grows past a
megabyte while the PNG stays near 40 KB; the page embeds the bytes as ``data:`` URIs (no files).
Drawn with matplotlib's object API (``Figure``, no pyplot state), as ``plots`` is. Times are the
plant's local wall-clock times, plotted as such, and every time axis names the zone.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, DateFormatter, DayLocator
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from inspect_core.store.plant_clock import PlantClock

SIZE = (9.0, 3.4)
DPI = 100
MARKERS_UP_TO = 60  # points per series drawn with markers; beyond, a plain line reads better


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _empty(ax: Axes, title: str, why: str = "nothing matches the filter") -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def _time_axis(ax: Axes, clock: PlantClock, days: float) -> None:
    """Day buckets get one tick per day (or per few days) up to four months, never hours; shifts and long spans the automatic ticks."""
    if clock.bucket == "day" and days <= 120:
        ax.xaxis.set_major_locator(DayLocator(interval=max(1, int(np.ceil(days / 12)))))
        ax.xaxis.set_major_formatter(DateFormatter("%b %d"))
    else:
        locator = AutoDateLocator(minticks=3, maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.margins(x=0.03)
    kind = "local day" if clock.bucket == "day" else "shift start, local time"
    ax.set_xlabel(f"{kind} ({clock.name})")


def _wall(starts: pd.Series) -> list:
    """Bucket starts as the plant's naive wall-clock times: what the axis shows, with no conversion on the way."""
    return [start.replace(tzinfo=None) for start in starts]


def _lines_over_time(ax: Axes, wide: pd.DataFrame, clock: PlantClock, title: str) -> None:
    """One line per column of ``wide`` (rows: bucket starts, values: shares 0..1), as percentages."""
    x = _wall(pd.Series(wide.index))
    marker = "o" if len(wide) <= MARKERS_UP_TO else None
    for name in wide.columns:
        values = wide[name].to_numpy(dtype=float)
        ax.plot(x, 100 * values, marker=marker, markersize=4, linewidth=1.4, label=str(name))
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    top = float(np.nanmax(100 * wide.to_numpy(dtype=float))) if wide.size else 0.0
    ax.set_ylim(0, max(5.0, min(104.0, top * 1.15 + 1)))  # a line at 100% stays visible above the frame's edge
    ax.set_ylabel("scored images with a defect")
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(alpha=0.3)
    if len(wide.columns):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    _time_axis(ax, clock, (max(x) - min(x)).total_seconds() / 86400 if x else 0.0)


def rate_per_line_chart(rates: pd.DataFrame, clock: PlantClock) -> bytes:
    """Defect rate per line over the buckets of ``store.report_times.defect_rate_per_bucket``."""
    fig = Figure(figsize=SIZE)
    ax = fig.subplots()
    title = f"defect rate per line, per {clock.bucket}"
    if rates.empty:
        _empty(ax, title)
        return _png(fig)
    named = rates.assign(line=rates["line"].map(lambda v: "(no line)" if v is None else str(v)))
    summed = named.groupby(["start", "line"])[["images_scored", "images_with_defects"]].sum()
    wide = (summed["images_with_defects"] / summed["images_scored"]).unstack("line")  # NaN: the line scored nothing then
    _lines_over_time(ax, wide.sort_index(), clock, title)
    return _png(fig)


def rate_per_class_chart(shares: pd.DataFrame, clock: PlantClock) -> bytes:
    """Share of scored images with each class over the buckets (``store.report_times.class_rate_per_bucket``)."""
    fig = Figure(figsize=SIZE)
    ax = fig.subplots()
    title = f"defect rate per class, per {clock.bucket}"
    if shares.empty or shares.shape[1] == 0:
        _empty(ax, title, "no defects match the filter" if not shares.empty else "nothing matches the filter")
        return _png(fig)
    wide = shares.droplevel("bucket") if isinstance(shares.index, pd.MultiIndex) else shares
    _lines_over_time(ax, wide.sort_index(), clock, title)
    return _png(fig)


def confidence_chart(histogram: pd.DataFrame) -> bytes:
    """Detections per confidence bin, stacked by class (``store.confidence_histogram``)."""
    fig = Figure(figsize=SIZE)
    ax = fig.subplots()
    title = "confidence of the matching detections"
    if histogram.empty or not histogram.to_numpy().any():
        _empty(ax, title)
        return _png(fig)
    width = 1 / len(histogram)
    bottom = np.zeros(len(histogram))
    for name in histogram.columns:
        counts = histogram[name].to_numpy()
        ax.bar(histogram.index + width / 2, counts, width * 0.92, bottom=bottom, label=str(name))
        bottom += counts
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("detections")
    ax.set_title(title, loc="left", fontsize=11)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)
