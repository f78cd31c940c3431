"""Report counts per local day or shift, in the plant's time zone: defects per bucket and class, defect rate per line.

SQLite has no time zones, and a local day is not a fixed span of UTC (half-hour offsets, DST, a zone
that kept +00:19:32 until 1937), so Python works out where every bucket starts and ends in UTC
(``inspect_core.store.plant_clock``, zoneinfo) and SQL counts inside those spans, one row back per
bucket, line and class (``_Bucketing``): SQLite joins the rows to the spans (one JSON parameter read as
a table) by ``captured_at`` ranges, one range search of a time index per bucket; PostgreSQL finds each
row's span with ``width_bucket`` over the array of span starts. The counts are exact by construction:
a bucket's span is its start and the next bucket's start, the same edges the labels come from.

Only the days that may hold scored frames get edges: every UTC day from the window's first frame to
its last (or, over more than three years, only the days with frames), widened by two days either
side (a frame's local day is its UTC day +-1, its bucket may have started the day before - a night
shift - and ends by the day after).

Measured against the UTC-cell design this replaces (hourly cells counted in SQL, each given its
bucket in Python), on 1M detections (10% operating) over 180 days, all-time shift charts on SQLite,
2-core machine: defects per bucket 0.45 -> 0.10 s, and 0.05 s through the operating detections'
partial index (``_operating``); defect rate per bucket 0.18 -> 0.04 s. Most of the old time was
48 000 cells crossing into pandas. SQLite's statements carry no window bounds (the spans are clipped
to it): with them SQLite searched the whole window once per bucket. On PostgreSQL the span join
compared every row with every span: whole dashboard updates on the same 1M detections took 0.77 s
(all time, per shift) and 2.9 s (a line's 30 days), with ``width_bucket`` 0.26 s and 0.10 s (both
with a background process on the second core).

Filters are those of ``inspect_core.store.reports`` (its helpers build the conditions), so a bucket
report counts exactly what the other reports count: the same time window, line, camera, model, class
and confidence rules (operating detections by default). An image is defective when it has at least
one matching detection. A line is the line a frame was captured on; ``line`` is None for frames
without a source.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from itertools import pairwise

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine

from inspect_core.store.plant_clock import Edge, PlantClock
from inspect_core.store.reports import ReportFilter, _conditions, _frame, _utc_day, defective
from inspect_core.store.schema import DetectionRecord, ImageScore, Source

_D = DetectionRecord.__table__
_SC = ImageScore.__table__
_S = Source.__table__

DENSE_DAYS = 1100  # about three years of days: edges for every day cost ~10 ms per 180 days of three shifts
RATE_COLUMNS = ["bucket", "start", "line", "images_scored", "images_with_defects", "defect_rate"]
DEFECT_COLUMNS = ["bucket", "start", "line", "class_name", "detections", "images"]


def _data_days(engine: Engine, flt: ReportFilter) -> list[date]:
    """The UTC days that may hold scored frames inside the filter's time window (other filters only narrow what is counted).

    Every day from the first frame to the last (the ends are two index lookups) when that is at most
    ``DENSE_DAYS`` days, else only the days with frames (a scan of the window's frames: 0.025 s per 100 000).
    """
    window = _conditions(ReportFilter(since=flt.since, until=flt.until), _SC.c.captured_at, _SC.c.source_id, _SC.c.model_version_id)
    ends = _frame(engine, sa.select(sa.func.min(_SC.c.captured_at).label("first"), sa.func.max(_SC.c.captured_at).label("last"))
                  .where(*window), "reading the first and last scored frames")  # fmt: skip
    first, last = (_day(ends[name].iloc[0]) for name in ("first", "last"))
    if first is None or last is None:
        return []
    if (last - first).days <= DENSE_DAYS:
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]
    day = _utc_day(engine, _SC.c.captured_at).label("day")
    frame = _frame(engine, sa.select(day).where(*window).group_by(day), "reading the days with scored frames")
    return [d for d in (_day(value) for value in frame["day"]) if d is not None]


def _day(value: object) -> date | None:
    """The UTC day of a stored time or day as the drivers return it (a datetime, a date, SQLite's text), None for none."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return (value.astimezone(timezone.utc) if value.tzinfo is not None else value).date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def bucket_spans(engine: Engine, flt: ReportFilter, clock: PlantClock) -> list[tuple[Edge, datetime, datetime]]:
    """Each bucket that may hold a frame of the window, with its UTC span [start, end) clipped to the window.

    The bucket reports work them out themselves; a caller running several for one filter and clock (the
    dashboard) may work them out once and pass them on (``spans=``).
    """
    days: set[date] = set()
    for day in _data_days(engine, flt):
        for step in range(-2, 3):
            try:
                days.add(day + timedelta(days=step))
            except OverflowError:
                pass
    edges = clock.edges(days)
    low = None if flt.since is None else flt.since.timestamp()
    high = None if flt.until is None else flt.until.timestamp()
    spans = []
    for edge, after in pairwise(edges):  # between runs of days no frame lies (a frame's own bucket and the next are edged)
        start, end = max(edge.at, low) if low is not None else edge.at, min(after.at, high) if high is not None else after.at
        if start < end:
            spans.append((edge, _utc(start), _utc(end)))
    return spans


def _utc(epoch: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=epoch)


def _operating(engine: Engine) -> sa.ColumnElement[bool]:
    """The operating detections as the partial index ``ix_detections_operating`` names them (``operating = 1``), so SQLite
    searches that index by time; written ``operating IS 1`` SQLite built an automatic index on the flag per query (5 s on
    1M detections), and through the time index it read every stored detection of a bucket (0.108 s against 0.051 s)."""
    return _D.c.operating == sa.literal_column("true" if engine.dialect.name == "postgresql" else "1")


def spans_table() -> sa.CTE:
    """SQLite's ``buckets`` (idx, lo, hi): the bucket spans, from one JSON parameter ``spans`` (a list of [start, end] texts
    as SQLite keeps UTC times, compared as text).

    One parameter keeps the statement's text the same from call to call, so SQLAlchemy compiles it once:
    a ``VALUES`` list of 540 spans (180 days of shifts) bound 1 620 parameters and took 21 ms per call
    to compile.
    """
    rows = sa.func.json_each(sa.bindparam("spans", type_=sa.String)).table_valued("key", "value")
    at = [sa.func.json_extract(rows.c.value, f"$[{i}]") for i in (0, 1)]
    return sa.select(sa.cast(rows.c.key, sa.Integer).label("idx"), at[0].label("lo"), at[1].label("hi")).cte("buckets")


Spans = list[tuple[Edge, datetime, datetime]]


@dataclass(frozen=True)
class _Bucketing:
    """How one statement gives each row the index of its bucket (its span in ``spans``, which are contiguous: each ends
    where the next starts). The two stores plan range joins differently, so each gets the form it runs fast:

    - SQLite joins the rows to a table of spans by ``captured_at`` ranges (``spans_table``): one range search of
      a time index per bucket.
    - PostgreSQL does not search an index per span there: it compared every row with every span (a 30-day chart
      per shift on one line: 4.5M comparisons, 1.75 s on 1M detections). ``width_bucket`` over the array of span
      starts binary-searches each row's bucket instead, in one scan of the window.
    """

    engine: Engine
    spans: Spans

    @property
    def postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def rows(self, table: sa.Table, time: sa.Column, columns: list[sa.ColumnElement], where: list[sa.ColumnElement[bool]]) -> sa.Subquery:
        """``table``'s rows matching ``where`` inside the spans, as (idx, *columns)."""
        if self.postgresql:
            at = sa.DateTime(timezone=True)
            index = (sa.func.width_bucket(time, sa.bindparam("starts", type_=ARRAY(at))) - 1).label("idx")
            bounds = [time >= sa.bindparam("first", type_=at), time < sa.bindparam("last", type_=at)]
            return sa.select(index, *columns).select_from(table).where(*where, *bounds).subquery()
        buckets = spans_table()
        joined = buckets.join(table, sa.and_(time >= buckets.c.lo, time < buckets.c.hi))
        return sa.select(buckets.c.idx, *columns).select_from(joined).where(*where).subquery()

    def params(self) -> dict[str, object]:
        if self.postgresql:
            return {"starts": [lo for _edge, lo, _hi in self.spans], "first": self.spans[0][1], "last": self.spans[-1][2]}
        return {"spans": json.dumps([[_sqlite_text(lo), _sqlite_text(hi)] for _edge, lo, hi in self.spans])}


def _sqlite_text(at: datetime) -> str:
    """A UTC time as SQLite's store keeps it (compared as text)."""
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


def _bucketed(engine: Engine, flt: ReportFilter, clock: PlantClock, build: Callable[[_Bucketing], sa.Select], what: str,
              spans: Spans | None) -> pd.DataFrame:  # fmt: skip
    """Run ``build(bucketing)`` (rows grouped by ``idx``, the bucket's index) over every span, and label the rows.

    Adds ``bucket`` (label: the local day, or the day and shift name), ``start`` (the bucket's start, in
    the plant's zone) and ``order`` (the bucket's UTC start, for sorting).
    """
    spans = bucket_spans(engine, flt, clock) if spans is None else spans
    if spans:
        bucketing = _Bucketing(engine, spans)
        cells = _frame(engine, build(bucketing).params(**bucketing.params()), what)
    else:
        cells = pd.DataFrame({"idx": pd.Series(dtype="int64")})
    if cells.empty:
        return cells.assign(bucket=pd.Series(dtype=object), start=pd.Series(dtype=object), order=pd.Series(dtype="int64"))
    picked: list[Edge] = [spans[int(i)][0] for i in cells["idx"]]
    cells["bucket"] = [edge.label for edge in picked]
    cells["start"] = [datetime.fromtimestamp(edge.at, timezone.utc).astimezone(clock.zone) for edge in picked]
    cells["order"] = [edge.at for edge in picked]
    return cells


def _bucket_detection_conditions(engine: Engine, flt: ReportFilter) -> list[sa.ColumnElement[bool]]:
    """``reports``' detection conditions (without the window), the operating flag written as its index says."""
    conditions = _conditions(_timeless(flt), _D.c.captured_at, _D.c.source_id, _D.c.model_version_id)
    if flt.class_name is not None:
        conditions.append(_D.c.class_name == flt.class_name)
    return [*conditions, _operating(engine) if flt.min_confidence is None else _D.c.confidence >= flt.min_confidence]


def _timeless(flt: ReportFilter) -> ReportFilter:
    """The filter without its window: the spans are clipped to it already, and with the window's bounds in the statement
    SQLite searched the whole window once per bucket (measured: a 30-day chart per shift 0.1 -> 1.0 s)."""
    return replace(flt, since=None, until=None)


def defect_rate_per_bucket(engine: Engine, flt: ReportFilter, clock: PlantClock, spans: Spans | None = None) -> pd.DataFrame:
    """Per bucket (local day or shift) and line: scored images, images with at least one matching defect, and their ratio.

    Rows are (bucket, line) pairs with at least one scored image, oldest bucket first; ``start`` is the
    bucket's start in the plant's zone. Counts are (image, model version) scorings, as in
    ``reports.defect_rate_per_line``, whose totals these add up to.
    """

    def build(bucketing: _Bucketing) -> sa.Select:
        flagged = sa.case((defective(flt), 1), else_=0).label("defective")
        where = _conditions(_timeless(flt), _SC.c.captured_at, _SC.c.source_id, _SC.c.model_version_id)
        rows = bucketing.rows(_SC, _SC.c.captured_at, [_SC.c.source_id, flagged], where)
        return (
            sa.select(rows.c.idx, _S.c.line, sa.func.count().label("images_scored"),
                      sa.func.sum(rows.c.defective).label("images_with_defects"))
            .select_from(rows.outerjoin(_S, _S.c.id == rows.c.source_id))
            .group_by(rows.c.idx, _S.c.line)
        )  # fmt: skip

    cells = _bucketed(engine, flt, clock, build, "reading the defect rate per bucket", spans)
    summed = _sum(cells, ["line"], ["images_scored", "images_with_defects"])
    summed["defect_rate"] = summed["images_with_defects"] / summed["images_scored"]
    return summed[RATE_COLUMNS]


def defects_per_bucket(engine: Engine, flt: ReportFilter, clock: PlantClock, images: bool = True, spans: Spans | None = None
                       ) -> pd.DataFrame:  # fmt: skip
    """Per bucket, line and class: matching detections, and the scorings (image, model version) with at least one of them.

    Long form, oldest bucket first; buckets without a matching detection are absent. ``images`` over the
    bucket's ``images_scored`` (``defect_rate_per_bucket``) is the class's defect rate. ``images=False``
    leaves that column out (0) and counts detections per cell directly, for a chart of detections only:
    grouping by image first is most of the query's time (measured, 1M detections on SQLite, all
    operating, per shift: all time 3.1 s -> see benchmarks/results/app_latency.json for the dashboard's).
    """

    def build(bucketing: _Bucketing) -> sa.Select:
        columns = [_D.c.source_id, _D.c.class_name, _D.c.image_id, _D.c.model_version_id]
        rows = bucketing.rows(_D, _D.c.captured_at, columns, _bucket_detection_conditions(engine, flt))
        if not images:
            return (
                sa.select(rows.c.idx, _S.c.line, rows.c.class_name, sa.func.count().label("detections"), sa.literal(0).label("images"))
                .select_from(rows.outerjoin(_S, _S.c.id == rows.c.source_id))
                .group_by(rows.c.idx, _S.c.line, rows.c.class_name)
            )  # fmt: skip
        keys = (rows.c.idx, rows.c.source_id, rows.c.class_name, rows.c.image_id, rows.c.model_version_id)
        per_image = sa.select(*keys, sa.func.count().label("n")).group_by(*keys).subquery()
        return (
            sa.select(per_image.c.idx, _S.c.line, per_image.c.class_name, sa.func.sum(per_image.c.n).label("detections"),
                      sa.func.count().label("images"))
            .select_from(per_image.outerjoin(_S, _S.c.id == per_image.c.source_id))
            .group_by(per_image.c.idx, _S.c.line, per_image.c.class_name)
        )  # fmt: skip

    cells = _bucketed(engine, flt, clock, build, "reading the defects per bucket", spans)
    return _sum(cells, ["line", "class_name"], ["detections", "images"])[DEFECT_COLUMNS]


def _sum(cells: pd.DataFrame, keys: list[str], counts: list[str]) -> pd.DataFrame:
    """Cells added up per bucket and ``keys`` (a missing line kept as None), oldest bucket first."""
    if cells.empty:
        empty = pd.DataFrame({c: pd.Series(dtype="int64") for c in counts})
        for column in ["bucket", "start", *keys]:
            empty[column] = pd.Series(dtype=object)
        return empty.assign(defect_rate=pd.Series(dtype=float)) if "images_scored" in counts else empty
    cells[counts] = cells[counts].fillna(0).astype("int64")
    grouped = cells.groupby(["order", "bucket", *keys], dropna=False, sort=True)[counts].sum().reset_index()
    starts = cells.drop_duplicates("order").set_index("order")["start"]
    grouped["start"] = grouped["order"].map(starts)
    grouped = grouped.drop(columns="order").astype({c: "int64" for c in counts})
    for key in keys:  # a frame without a source has no line: None, as the other reports say it
        grouped[key] = grouped[key].astype(object).where(grouped[key].notna(), None)
    return grouped.reset_index(drop=True)


def class_rate_per_bucket(rates: pd.DataFrame, defects: pd.DataFrame) -> pd.DataFrame:
    """Per bucket (rows, oldest first) and class (columns): the share of the bucket's scored images with that class.

    Combines ``defect_rate_per_bucket`` and ``defects_per_bucket`` of one filter (over all lines); a
    bucket where nothing matched has 0 for every class.
    """
    scored = rates.groupby(["start", "bucket"], sort=True)["images_scored"].sum()
    if scored.empty:
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["start", "bucket"]))
    with_class = defects.groupby(["start", "bucket", "class_name"])["images"].sum().unstack("class_name", fill_value=0)
    with_class = with_class.reindex(scored.index, fill_value=0)
    with_class.columns.name = None
    return with_class.div(scored, axis=0)
