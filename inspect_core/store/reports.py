"""Report queries over the results store: filtered detections and aggregates as pandas DataFrames.

SQL only: rendering them (plots, tables written to files, boxes drawn on images) is
``inspect_core.reporting``. Every filter is a SQLAlchemy expression with bound parameters (no SQL is
built from strings), and all filters run on the ``detections`` table's own columns (``captured_at``,
``source_id``, ``model_version_id``, ``class_name``, ``confidence``) so the store's indexes answer
them without joins over millions of rows. Aggregates (per day, per line, histogram) are computed in
SQL; only their small results come back. Per-day, per-class and histogram aggregates read the store's
day counts for the whole days of a window and the detections only for its partial edges. Days are
UTC days. A line is the line a frame was captured on (its source's line), so a camera that moved keeps
its earlier frames on the old line; a camera filter matches the camera on every line it has been on.
Every query is one read under the store's retry policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inspect_core.errors import UsageError
from inspect_core.store.engine import with_retries
from inspect_core.store.schema import (
    DAY_COUNT_BINS,
    DetectionDayCount,
    DetectionRecord,
    ImageRecord,
    ImageScore,
    ModelVersion,
    Source,
)

HISTOGRAM_BINS = DAY_COUNT_BINS
# The times a filter may name: wide enough for any plant's records, narrow enough that day arithmetic
# (a window's whole days, UTC conversion) cannot leave Python's datetime range (years 1 to 9999).
EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)

_D = DetectionRecord.__table__
_I = ImageRecord.__table__
_S = Source.__table__
_M = ModelVersion.__table__
_SC = ImageScore.__table__
_C = DetectionDayCount.__table__


@dataclass(frozen=True)
class ReportFilter:
    """Which detections a report covers; ``None`` means no restriction. ``until`` is exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    line: str | None = None
    camera: str | None = None
    class_name: str | None = None
    model: str | None = None  # a model_versions.name
    # None: the operating detections (at or above their run's threshold for their class); a number: every stored
    # detection with at least this confidence, whatever the run's thresholds (thresholds after the fact).
    min_confidence: float | None = None

    def __post_init__(self) -> None:
        """Reject, with the field named, what no store can compare: naive or out-of-range times, text
        PostgreSQL cannot hold (NUL) or that is not text at all (lone surrogates), a confidence that is
        not a number. Anything else is a plain value to match, bound as a parameter (never SQL)."""
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.utcoffset() is None:
                raise UsageError(f"{name} must be timezone-aware (the store keeps UTC): got {value.isoformat()}")
            try:
                inside = EARLIEST <= value < LATEST
            except OverflowError:
                inside = False
            if not inside:
                raise UsageError(f"{name} {value.isoformat()} is out of range: report times lie from {EARLIEST:%Y-%m-%d} to before "
                                 f"{LATEST:%Y-%m-%d} (UTC)")  # fmt: skip
        for name in ("line", "camera", "class_name", "model"):
            value = getattr(self, name)
            if value is None:
                continue
            label = "class" if name == "class_name" else name
            if "\x00" in value:
                raise UsageError(f"{label} filter {value!r} holds a NUL byte, which no stored {label} can contain")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(f"{label} filter {value!r} is not valid text (undecodable bytes)") from None
        if self.min_confidence is not None and not math.isfinite(self.min_confidence):
            raise UsageError(f"min confidence {self.min_confidence!r} is not a number between 0 and 1")

    @property
    def detection_level(self) -> bool:
        """Whether the filter picks among an image's detections other than by the operating thresholds (so 'defective'
        is not the image score's own operating count)."""
        return self.class_name is not None or self.min_confidence is not None


def _kept(flt: ReportFilter, confidence: sa.ColumnElement, operating: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """The confidence part of a filter: the operating flag by default, or a threshold after the fact."""
    return operating.is_(True) if flt.min_confidence is None else confidence >= flt.min_confidence


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
    conditions.append(_kept(flt, _D.c.confidence, _D.c.operating))
    return conditions


def _confidence_bin(engine: Engine, bins: int) -> sa.ColumnElement:
    """floor(confidence * bins), the top bin holding 1.0: the same float product ``confidence_bin`` floors."""
    scaled = _D.c.confidence * bins
    # floor() is not built into every SQLite; truncation is the floor for confidences >= 0.
    floor = sa.func.floor(scaled) if engine.dialect.name == "postgresql" else sa.cast(scaled, sa.Integer)
    return sa.case((floor >= bins, bins - 1), else_=floor)


def _counted(engine: Engine, flt: ReportFilter) -> sa.Subquery:
    """The filter's detections as (day, class_name, bin, n, confidence_sum, confidence_max) rows to aggregate.

    Whole UTC days and whole confidence bins inside the filter come from ``detection_day_counts`` (its
    operating rows only, by default); only the rest (a partial first or last day, detections in the bin
    that ``min_confidence`` cuts) is read from the detections, one row each. The two parts do not overlap,
    so sums are exact.
    """
    since, until = (None if t is None else t.astimezone(timezone.utc) for t in (flt.since, flt.until))
    first = None if since is None else since.date() + timedelta(days=int(since.time() != datetime.min.time()))
    end = None if until is None else until.date()
    # clamped first: a huge min_confidence (1e306) would overflow the product; above 1.0 no bin is whole either way
    lowest = 0 if flt.min_confidence is None else math.ceil(min(1.0, max(0.0, flt.min_confidence)) * DAY_COUNT_BINS)
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
    if flt.min_confidence is None:
        counts = counts.where(_C.c.operating.is_(True))
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


def _frame(engine: Engine, statement: sa.Select, what: str = "reading a report") -> pd.DataFrame:
    """Run one report query (retried while the database is down) into a DataFrame.

    Rows go in as plain tuples: pandas probes each SQLAlchemy Row for attributes (``hasattr`` missing on
    every row), which took 0.38 of 0.94 s for 40 000 hourly cells (1M detections, all-time shift chart).
    """

    def run() -> pd.DataFrame:
        with engine.connect() as connection:
            result = connection.execute(statement)
            columns = list(result.keys())
            return pd.DataFrame.from_records([tuple(row) for row in result], columns=columns)

    return with_retries(run, what)


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


def defective(flt: ReportFilter) -> sa.ColumnElement[bool]:
    """Whether the scored image (an ``image_scores`` row of the enclosing query) has a detection the filter counts.

    Without a class or confidence filter: the score row's count of operating detections. Otherwise a
    matching detection of that image and model version, looked up by image only (``ix_detections_image``
    covers it): repeating the window's time and source conditions here let SQLite pick the class-and-time
    index instead and scan a class's detections once per image (measured, 1M detections: 107-142 s for one
    per-shift rate chart filtered by class; 0.1 s looked up by image).
    """
    if not flt.detection_level:
        return _SC.c.defects > 0
    matching = sa.select(_D.c.id).where(_D.c.image_id == _SC.c.image_id, _D.c.model_version_id == _SC.c.model_version_id)
    if flt.class_name is not None:
        matching = matching.where(_D.c.class_name == flt.class_name)
    return matching.where(_kept(flt, _D.c.confidence, _D.c.operating)).exists()


def defect_rate_per_line(engine: Engine, flt: ReportFilter) -> pd.DataFrame:
    """Per line: scored images, images with at least one matching defect, and their ratio.

    Counts are (image, model version) scorings: an image scored by two models counts twice unless
    ``flt.model`` picks one. Without a class or confidence filter an image is defective when its
    score row counted operating detections; otherwise a matching detection must exist.
    """
    with_defects = sa.func.coalesce(sa.func.sum(sa.case((defective(flt), 1), else_=0)), 0)
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


def top_image_boxes(engine: Engine, flt: ReportFilter, top_n: int) -> pd.DataFrame:
    """The matching detections of the ``top_n`` (image, model version) pairs whose best matching detection is most confident.

    One row per detection (best, image_id, model_version_id, class_name, confidence, normalised box,
    image path, model name), the most confident pair first: what ``inspect_core.reporting`` draws.
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
    return _frame(engine, statement, "reading the most confident images")
