"""The reliability diagram of a calibration: share of right detections per confidence bin, before and after.

A calibrated model's bars sit on the diagonal (boxes scored 0.8 are right 8 times in 10); the tiny model's
raw scores sit far left of it (right boxes at 0.1-0.3). Each bar is labelled with its detection count, so
a bar of two detections is not read like one of two hundred.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure


def _panel(ax, rows: Sequence[dict], ece: float | None, title: str) -> None:
    width = rows[0]["high"] - rows[0]["low"] if rows else 0.1
    filled = [r for r in rows if r["count"]]
    ax.bar([r["low"] for r in filled], [r["accuracy"] for r in filled], width=width, align="edge", color="#4c72b0",
           edgecolor="black", label="share right")  # fmt: skip
    ax.plot([r["confidence"] for r in filled], [r["accuracy"] for r in filled], "o", color="#dd8452", label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for r in filled:
        ax.text(r["low"] + width / 2, r["accuracy"] + 0.02, str(r["count"]), ha="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.1)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("confidence (bar labels: detections in the bin)")
    ax.set_ylabel("share of detections right")
    ax.set_title(f"{title}: ECE {ece:.3f}" if ece is not None else f"{title}: no detections")


def plot_reliability(
    before: Sequence[dict], after: Sequence[dict], ece_before: float | None, ece_after: float | None, path: Path, title: str
) -> Path:
    """Two panels (raw scores, calibrated scores) from :func:`inspect_core.training.calibration.reliability_bins` rows."""
    fig = Figure(figsize=(11, 5))
    left, right = fig.subplots(1, 2)
    _panel(left, before, ece_before, "raw score")
    _panel(right, after, ece_after, "calibrated")
    fig.suptitle(f"reliability: {title}")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    return path
