"""Reports over the results store: filtered detections and aggregates as pandas DataFrames, plots, annotated images.

Every filter is a SQLAlchemy expression with bound parameters (no SQL is built from strings), and all
filters run on the ``detections`` table's own columns (``captured_at``, ``source_id``,
``model_version_id``, ``class_name``, ``confidence``) so the store's indexes answer them without
joins over millions of rows. Aggregates (per day, per line, histogram) are computed in SQL; only
their small results come back. Per-day, per-class and histogram aggregates read the store's day
counts for the whole days of a window and the detections only for its partial edges. Days are UTC days.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np
import pandas as pd
import sqlalchemy as sa
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sqlalchemy.engine import Engine

from inspect_core.results_store import DAY_COUNT_BINS, DetectionDayCount, DetectionRecord, ImageRecord, ImageScore, ModelVersion, Source

TABLE_FORMATS = ("csv", "parquet", "json", "html")
HISTOGRAM_BINS = DAY_COUNT_BINS
PLOT_NAMES = ("defects_per_day.png", "defect_rate_per_line.png", "confidence_histogram.png")

_D = DetectionRecord.__table__
_I = ImageRecord.__table__
_S = Source.__table__
_M = ModelVersion.__table__
_SC = ImageScore.__table__
_C = DetectionDayCount.__table__
_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class ReportFilter:
    """Which detections a report covers; ``None`` means no restriction. ``until`` is exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    line: str | None = None
    camera: str | None = None
    class_name: str | None = None
    model: str | None = None  # a model_versions.name
    min_confidence: float | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware (the store keeps UTC): got {value.isoformat()}")

    @property
    def detection_level(self) -> bool:
        """Whether the filter picks among an image's detections (so 'defective' depends on it)."""
        return self.class_name is not None or self.min_confidence is not None


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A --since/--until value: ISO date or datetime (naive = UTC) or a span back from now such as 30m, 24h, 7d, 2w."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        return (now or datetime.now(timezone.utc)) - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        hint = "use an ISO date or time (2026-11-01, 2026-11-01T08:00, 2026-11-01T08:00+01:00) or a span back from now (30m, 24h, 7d, 2w)"
        raise ValueError(f"not a time: {text!r}; {hint}") from None
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=timezone.utc)


def _dimension_conditions(flt: ReportFilter, source_id: sa.ColumnElement, model_id: sa.ColumnElement) -> list[sa.ColumnElement[bool]]:
    """The line, camera and model part of a filter against the given columns."""
    conditions: list[sa.ColumnElement[bool]] = []
    if flt.line is not None:
        conditions.append(source_id.in_(sa.select(_S.c.id).where(_S.c.line == flt.line)))
    if flt.camera is not None:
        conditions.append(source_id.in_(sa.select(_S.c.id).where(_S.c.camera == flt.camera)))
    if flt.model is not None:
        conditions.append(model_id.in_(sa.select(_M.c.id).where(_M.c.name == flt.model)))
    return conditions


def _conditions(flt: ReportFilter, captured_at: sa.Column, source_id: sa.Column, model_id: sa.Column) -> list[sa.ColumnElement[bool]]:
    """The image-level part of a filter (time, line, camera, model) against the given columns."""
    conditions: list[sa.ColumnElement[bool]] = []
    if flt.since is not None:
        conditions.append(captured_at >= flt.since)
    if flt.until is not None:
        conditions.append(captured_at < flt.until)
    return conditions + _dimension_conditions(flt, source_id, model_id)


def _detection_conditions(flt: ReportFilter) -> list[sa.ColumnElement[bool]]:
    conditions = _conditions(flt, _D.c.captured_at, _D.c.source_id, _D.c.model_version_id)
    if flt.class_name is not None:
        conditions.append(_D.c.class_name == flt.class_name)
    if flt.min_confidence is not None:
        conditions.append(_D.c.confidence >= flt.min_confidence)
    return conditions


def _confidence_bin(engine: Engine, bins: int) -> sa.ColumnElement:
    """floor(confidence * bins), the top bin holding 1.0: the same float product ``confidence_bin`` floors."""
    scaled = _D.c.confidence * bins
    # floor() is not built into every SQLite; truncation is the floor for confidences >= 0.
    floor = sa.func.floor(scaled) if engine.dialect.name == "postgresql" else sa.cast(scaled, sa.Integer)
    return sa.case((floor >= bins, bins - 1), else_=floor)


def _counted(engine: Engine, flt: ReportFilter) -> sa.Subquery:
    """The filter's detections as (day, class_name, bin, n, confidence_sum, confidence_max) rows to aggregate.

    Whole UTC days and whole confidence bins inside the filter come from ``detection_day_counts``;
    only the rest (a partial first or last day, detections in the bin that ``min_confidence`` cuts)
    is read from the detections, one row each. The two parts do not overlap, so sums are exact.
    """
    since, until = (None if t is None else t.astimezone(timezone.utc) for t in (flt.since, flt.until))
    first = None if since is None else since.date() + timedelta(days=int(since.time() != datetime.min.time()))
    end = None if until is None else until.date()
    lowest = 0 if flt.min_confidence is None else max(0, math.ceil(flt.min_confidence * DAY_COUNT_BINS))
    bin_expr = _confidence_bin(engine, DAY_COUNT_BINS)
    detail = sa.select(
        _utc_day(engine, _D.c.captured_at).label("day"), _D.c.class_name.label("class_name"), bin_expr.label("bin"),
        sa.literal(1).label("n"), _D.c.confidence.label("confidence_sum"), _D.c.confidence.label("confidence_max"),
    ).where(*_detection_conditions(flt))  # fmt: skip
    if first is not None and end is not None and first >= end:
        return detail.subquery()  # no whole day inside the window
    outside = []  # where a detection is not in a whole day and bin that the day counts hold
    counts = sa.select(
        _C.c.day.label("day"), _C.c.class_name.label("class_name"), _C.c.confidence_bin.label("bin"), _C.c.n.label("n"),
        _C.c.confidence_sum.label("confidence_sum"), _C.c.confidence_max.label("confidence_max"),
    ).where(*_dimension_conditions(flt, _C.c.source_key, _C.c.model_version_id))  # fmt: skip
    if first is not None:
        counts = counts.where(_C.c.day >= first)
        outside.append(_D.c.captured_at < datetime.combine(first, datetime.min.time(), timezone.utc))
    if end is not None:
        counts = counts.where(_C.c.day < end)
        outside.append(_D.c.captured_at >= datetime.combine(end, datetime.min.time(), timezone.utc))
    if lowest:
        counts = counts.where(_C.c.confidence_bin >= lowest)
        outside.append(bin_expr < lowest)
    if flt.class_name is not None:
        counts = counts.where(_C.c.class_name == flt.class_name)
    if not outside:
        return counts.subquery()
    return sa.union_all(counts, detail.where(sa.or_(*outside))).subquery()


def _frame(engine: Engine, statement: sa.Select) -> pd.DataFrame:
    with engine.connect() as connection:
        result = connection.execute(statement)
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def detections_frame(engine: Engine, flt: ReportFilter, limit: int | None = None) -> pd.DataFrame:
    """One row per matching detection, newest first, with its camera, line, image file and model name."""
    statement = (
        sa.select(
            _D.c.captured_at, _S.c.camera, _S.c.line, _D.c.class_name, _D.c.confidence, _D.c.x1, _D.c.y1, _D.c.x2, _D.c.y2,
            _I.c.path.label("image_path"), _I.c.width.label("image_width"), _I.c.height.label("image_height"), _M.c.name.label("model"),
        )
        .select_from(
            _D.join(_I, _I.c.id == _D.c.image_id).join(_M, _M.c.id == _D.c.model_version_id).outerjoin(_S, _S.c.id == _D.c.source_id)
        )
        .where(*_detection_conditions(flt))
        .order_by(_D.c.captured_at.desc(), _D.c.id.desc())
        .limit(limit)
    )  # fmt: skip
    frame = _frame(engine, statement)
    frame["captured_at"] = pd.to_datetime(frame["captured_at"], utc=True)
    return frame


def class_summary(engine: Engine, flt: ReportFilter) -> pd.DataFrame:
    """Per class: detections, mean and highest confidence (most frequent class first)."""
    counted = _counted(engine, flt)
    count = sa.func.sum(counted.c.n).label("detections")
    mean = (sa.func.sum(counted.c.confidence_sum) / count).label("mean_confidence")
    statement = (
        sa.select(counted.c.class_name, count, mean, sa.func.max(counted.c.confidence_max).label("max_confidence"))
        .group_by(counted.c.class_name)
        .order_by(count.desc(), counted.c.class_name)
    )
    frame = _frame(engine, statement)
    frame["detections"] = frame["detections"].astype("int64")
    return frame


def _utc_day(engine: Engine, column: sa.ColumnElement) -> sa.ColumnElement:
    """The UTC calendar day of a stored time (SQLite keeps UTC text, PostgreSQL a timestamptz)."""
    if engine.dialect.name == "postgresql":
        return sa.func.date(sa.func.timezone("UTC", column))
    return sa.func.substr(column, 1, 10)


def defects_per_day(engine: Engine, flt: ReportFilter) -> pd.DataFrame:
    """Detections per UTC day (rows, oldest first) and class (columns); days without detections are absent."""
    counted = _counted(engine, flt)
    statement = sa.select(counted.c.day, counted.c.class_name, sa.func.sum(counted.c.n).label("n")).group_by(
        counted.c.day, counted.c.class_name
    )
    long = _frame(engine, statement)
    long["day"] = pd.to_datetime(long["day"].astype(str))
    wide = long.pivot_table(index="day", columns="class_name", values="n", aggfunc="sum", fill_value=0).sort_index()
    wide.columns.name = None
    return wide.astype("int64")


def defect_rate_per_line(engine: Engine, flt: ReportFilter) -> pd.DataFrame:
    """Per line: scored images, images with at least one matching defect, and their ratio.

    Counts are (image, model version) scorings: an image scored by two models counts twice unless
    ``flt.model`` picks one. Without a class or confidence filter an image is defective when its
    score row recorded detections; otherwise a matching detection must exist.
    """
    if flt.detection_level:
        matching = sa.select(_D.c.id).where(_D.c.image_id == _SC.c.image_id, _D.c.model_version_id == _SC.c.model_version_id)
        if flt.class_name is not None:
            matching = matching.where(_D.c.class_name == flt.class_name)
        if flt.min_confidence is not None:
            matching = matching.where(_D.c.confidence >= flt.min_confidence)
        defective = matching.exists()
    else:
        defective = _SC.c.detections > 0
    with_defects = sa.func.coalesce(sa.func.sum(sa.case((defective, 1), else_=0)), 0)
    statement = (
        sa.select(_S.c.line, sa.func.count().label("images_scored"), with_defects.label("images_with_defects"))
        .select_from(_SC.outerjoin(_S, _S.c.id == _SC.c.source_id))
        .where(*_conditions(flt, _SC.c.captured_at, _SC.c.source_id, _SC.c.model_version_id))
        .group_by(_S.c.line)
        .order_by(_S.c.line)
    )
    frame = _frame(engine, statement)
    frame[["images_scored", "images_with_defects"]] = frame[["images_scored", "images_with_defects"]].astype("int64")
    frame["defect_rate"] = frame["images_with_defects"] / frame["images_scored"]
    return frame


def confidence_histogram(engine: Engine, flt: ReportFilter, bins: int = HISTOGRAM_BINS) -> pd.DataFrame:
    """Detections per confidence bin (rows: bin start, all ``bins`` of them) and class (columns)."""
    if bins == DAY_COUNT_BINS:  # the day counts' bins
        counted = _counted(engine, flt)
        bucket, class_name, count = counted.c.bin.label("bucket"), counted.c.class_name, sa.func.sum(counted.c.n)
        statement = sa.select(bucket, class_name, count.label("n")).group_by(bucket, class_name)
    else:
        bucket = _confidence_bin(engine, bins).label("bucket")
        statement = sa.select(bucket, _D.c.class_name, sa.func.count().label("n")).where(*_detection_conditions(flt))
        statement = statement.group_by(bucket, _D.c.class_name)
    long = _frame(engine, statement)
    wide = long.pivot_table(index="bucket", columns="class_name", values="n", aggfunc="sum", fill_value=0)
    wide = wide.reindex(range(bins), fill_value=0).astype("int64")
    wide.index = pd.Index([round(b / bins, 6) for b in range(bins)], name="confidence_from")
    wide.columns.name = None
    return wide


# ---------------------------------------------------------------------------------------------
# Output


def write_table(frame: pd.DataFrame, fmt: str, out: Path | TextIO) -> None:
    """Write detection rows as csv, parquet (a file path only), json (records, ISO times) or html."""
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; use one of {', '.join(TABLE_FORMATS)}")
    if isinstance(out, Path):
        out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "parquet":
        if not isinstance(out, Path):
            raise ValueError("parquet is binary: give a file to write it to")
        frame.to_parquet(out, index=False, engine="pyarrow")
    elif fmt == "json":
        frame.to_json(out, orient="records", date_format="iso", date_unit="us", indent=1)
    else:
        frame.to_html(out, index=False)


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


# ---------------------------------------------------------------------------------------------
# Annotated images


@dataclass
class AnnotationResult:
    written: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # image files that are gone or unreadable


_PALETTE = [(40, 40, 230), (40, 200, 40), (230, 120, 30), (200, 40, 200), (30, 200, 230), (0, 140, 255), (180, 180, 40), (120, 60, 200)]


def _safe(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "model"


def _draw(pixels: np.ndarray, boxes: pd.DataFrame, colours: dict[str, tuple[int, int, int]]) -> np.ndarray:
    """Boxes from normalised coordinates (right for any resizing of the file), each labelled 'class 0.93'."""
    height, width = pixels.shape[:2]
    thickness = max(1, round(min(width, height) / 300))
    scale = max(0.4, min(width, height) / 900)
    for row in boxes.itertuples():
        colour = colours[row.class_name]
        x1, y1 = int(round(row.nx1 * width)), int(round(row.ny1 * height))
        x2, y2 = int(round(row.nx2 * width)), int(round(row.ny2 * height))
        cv2.rectangle(pixels, (x1, y1), (x2, y2), colour, thickness)
        label = f"{row.class_name} {row.confidence:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = y1 - text_h - baseline - 2 if y1 - text_h - baseline - 2 >= 0 else y2 + 1
        cv2.rectangle(pixels, (x1, top), (x1 + text_w + 2, top + text_h + baseline + 2), colour, cv2.FILLED)
        cv2.putText(pixels, label, (x1 + 1, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return pixels


def annotate_top(engine: Engine, flt: ReportFilter, out_dir: Path, top_n: int) -> AnnotationResult:
    """Draw the matching detections on the ``top_n`` images whose best matching detection is most confident.

    One PNG per (image, model version), named by rank; images missing on disk are listed, not fatal.
    """
    best = sa.func.max(_D.c.confidence).label("best")
    ranked = (
        sa.select(_D.c.image_id, _D.c.model_version_id, best)
        .where(*_detection_conditions(flt))
        .group_by(_D.c.image_id, _D.c.model_version_id)
        .order_by(best.desc(), _D.c.image_id, _D.c.model_version_id)
        .limit(top_n)
        .subquery()
    )
    statement = (
        sa.select(ranked.c.best, _D.c.image_id, _D.c.model_version_id, _D.c.class_name, _D.c.confidence,
                  _D.c.nx1, _D.c.ny1, _D.c.nx2, _D.c.ny2, _I.c.path, _M.c.name.label("model"))
        .select_from(
            ranked.join(_D, sa.and_(_D.c.image_id == ranked.c.image_id, _D.c.model_version_id == ranked.c.model_version_id))
            .join(_I, _I.c.id == _D.c.image_id).join(_M, _M.c.id == _D.c.model_version_id)
        )
        .where(*_detection_conditions(flt))
        .order_by(ranked.c.best.desc(), _D.c.image_id, _D.c.model_version_id, _D.c.confidence)
    )  # fmt: skip
    boxes = _frame(engine, statement)
    result = AnnotationResult()
    if boxes.empty:
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(sorted(boxes["class_name"].unique()))}
    for rank, (_key, group) in enumerate(boxes.groupby(["best", "image_id", "model_version_id"], sort=False), start=1):
        source = group["path"].iloc[0]
        pixels = cv2.imread(source, cv2.IMREAD_COLOR) if Path(source).is_file() else None
        if pixels is None:
            result.missing.append(source)
            continue
        target = out_dir / f"{rank:03d}_{_safe(Path(source).stem)}_{_safe(group['model'].iloc[0])}.png"
        cv2.imwrite(str(target), _draw(pixels, group, colours), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        result.written.append(target)
    return result
