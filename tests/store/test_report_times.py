"""Report buckets in the plant's time zone (``inspect_core.store.report_times``), against a pandas oracle.

The store is filled here with frames at known UTC times (random ones, and ones a second either side of
local midnights and shift starts); the oracle converts those same times with pandas (its own time zone
code, not zoneinfo's arithmetic in the module) and counts with groupby. Zones: Europe/Istanbul (+03:00),
Asia/Kolkata (+05:30), Asia/Kathmandu (+05:45), America/New_York across both 2026 DST changes, and
Europe/Amsterdam in 1935 (+00:19:32), where no grain of whole minutes fits. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event

from inspect_core.errors import UsageError
from inspect_core.store import (
    ReportFilter,
    ScoredImage,
    StoredDetection,
    defect_rate_per_line,
    ensure_source,
    open_store,
    write_scored_batch,
)
from inspect_core.store.plant_clock import plant_clock
from inspect_core.store.report_times import class_rate_per_bucket, defect_rate_per_bucket, defects_per_bucket
from tests.store.seeded import model_and_run

UTC = timezone.utc
CLASSES = ("hole", "stain", "knot")
OPERATING = 0.25  # stored below this, a detection is kept but not operating (the run's threshold)
SHIFTS = [{"name": "C", "start": "22:00"}, {"name": "A", "start": "06:00"}, {"name": "B", "start": "14:00"}]  # unsorted on purpose
WINDOWS = [(datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC)),  # New York springs forward on 03-08
           (datetime(2026, 10, 30, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC))]  # and falls back on 11-01  # fmt: skip
EDGE_ZONES = ("Europe/Istanbul", "Asia/Kolkata", "America/New_York")


def edge_times() -> list[datetime]:
    """A second before, at, and a second after each local midnight and shift start of the windows' days, in each zone."""
    times = []
    for zone_name in EDGE_ZONES:
        zone = ZoneInfo(zone_name)
        for first, last in WINDOWS:
            day = first.date() + timedelta(days=1)
            while day < last.date():
                for hour in (0, 6, 14, 22):
                    at = datetime.combine(day, time(hour), zone).astimezone(UTC)
                    times += [at - timedelta(seconds=1), at, at + timedelta(seconds=1)]
                day += timedelta(days=1)
    return times


def random_times(rng: np.random.Generator, count: int) -> list[datetime]:
    times = []
    for first, last in WINDOWS:
        span = int((last - first).total_seconds())
        times += [
            first + timedelta(seconds=int(s), microseconds=int(u))
            for s, u in zip(rng.integers(0, span, count), rng.integers(0, 10**6, count))
        ]
    return times


def fill(url: str, tmp_path: Path, times: list[datetime], seed: int = 7) -> pd.DataFrame:
    """Score one frame per time (line L1, L2 or none; model m1, some also m2) with random detections; the rows, as the oracle's input."""
    rng = np.random.default_rng(seed)
    engine = open_store(url)
    sources = {"L1": ensure_source(engine, "cam-1", "L1"), "L2": ensure_source(engine, "cam-2", "L2"), None: None}
    rows, batches = [], {"m1": [], "m2": []}
    for i, captured in enumerate(times):
        line = [None, "L1", "L2", "L1"][i % 4]
        for model in ("m1", "m2") if i % 5 == 0 else ("m1",):
            found = [(str(rng.choice(CLASSES)), round(float(rng.uniform(0.02, 1.0)), 4)) for _ in range(int(rng.choice([0, 0, 1, 2, 3])))]
            sha = hashlib.sha256(f"{i}".encode()).hexdigest()
            detections = [StoredDetection(c, conf, (1.0, 2.0, 30.0, 40.0), operating=conf >= OPERATING) for c, conf in found]
            batches[model].append(ScoredImage(sha, str(tmp_path / f"f{i}.png"), 64, 48, captured, sources[line], detections))
            rows += [
                {
                    "image": i,
                    "model": model,
                    "captured_at": captured,
                    "line": line,
                    "class_name": c,
                    "confidence": conf,
                    "operating": conf >= OPERATING,
                }
                for c, conf in found
            ]
            rows.append({"image": i, "model": model, "captured_at": captured, "line": line, "class_name": None, "confidence": None})
    for model, batch in batches.items():
        version, run = model_and_run(engine, tmp_path, model, len(batch))
        assert write_scored_batch(engine, run, version, batch) == len(batch)
    frame = pd.DataFrame(rows)
    frame["captured_at"] = pd.to_datetime(frame["captured_at"], utc=True)
    return frame


def oracle_buckets(captured: pd.Series, zone: str, shifts: list[dict] | None) -> pd.Series:
    """Each time's bucket label, by pandas: the local date, or the shift whose start the local time of day last passed."""
    local = captured.dt.tz_convert(zone)
    if not shifts:
        return local.dt.strftime("%Y-%m-%d")
    starts = sorted((time.fromisoformat(s["start"]), s["name"]) for s in shifts)
    labels = []
    for moment in local:
        tod, day = moment.time(), moment.date()
        passed = [name for start, name in starts if start <= tod]
        name = passed[-1] if passed else starts[-1][1]
        labels.append(f"{(day if passed else day - timedelta(days=1)).isoformat()} {name}")
    return pd.Series(labels, index=captured.index)


def oracle(rows: pd.DataFrame, zone: str, shifts: list[dict] | None, flt: ReportFilter) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Defect rate per bucket and line, and detections/images per bucket, line and class, counted by pandas from the inserted rows."""
    keep = pd.Series(True, index=rows.index)
    if flt.since is not None:
        keep &= rows["captured_at"] >= flt.since
    if flt.until is not None:
        keep &= rows["captured_at"] < flt.until
    if flt.line is not None:
        keep &= rows["line"] == flt.line
    if flt.model is not None:
        keep &= rows["model"] == flt.model
    rows = rows[keep].assign(bucket=lambda f: oracle_buckets(f["captured_at"], zone, shifts), line=lambda f: f["line"].fillna("-"))
    kept = rows["operating"].fillna(False).astype(bool) if flt.min_confidence is None else rows["confidence"] >= flt.min_confidence
    matching = rows["class_name"].notna() & kept
    if flt.class_name is not None:
        matching &= rows["class_name"] == flt.class_name
    scorings = rows.assign(defective=matching).groupby(["bucket", "line", "image", "model"])["defective"].any().reset_index()
    rates = (
        scorings.groupby(["bucket", "line"]).agg(images_scored=("image", "size"), images_with_defects=("defective", "sum")).reset_index()
    )
    hits = rows[matching]
    defects = hits.groupby(["bucket", "line", "class_name"]).agg(detections=("image", "size")).reset_index()
    images = hits.drop_duplicates(["image", "model", "class_name"]).groupby(["bucket", "line", "class_name"]).size().rename("images")
    defects = defects.merge(images.reset_index(), on=["bucket", "line", "class_name"])
    return rates.astype({"images_with_defects": "int64"}), defects


def comparable(frame: pd.DataFrame, keys: list[str], counts: list[str]) -> list[tuple]:
    frame = frame.assign(line=frame["line"].fillna("-"))
    return sorted(tuple(row) for row in frame[keys + counts].itertuples(index=False, name=None))


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pd.DataFrame]:
    """One SQLite store shared by the oracle comparisons (filling it is the slow part)."""
    root = tmp_path_factory.mktemp("report_times")
    url = f"sqlite:///{root / 'results.db'}"
    return url, fill(url, root, edge_times() + random_times(np.random.default_rng(3), 150))


FILTERS = [
    ReportFilter(),  # operating detections only
    ReportFilter(min_confidence=0.0),  # every stored one
    ReportFilter(min_confidence=0.5),
    ReportFilter(class_name="stain", line="L1"),
    ReportFilter(since=datetime(2026, 3, 8, 5, 17, 33, tzinfo=UTC), until=datetime(2026, 11, 1, 6, 0, 1, tzinfo=UTC), model="m2"),
]


@pytest.mark.parametrize("zone", ["Europe/Istanbul", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York"])
@pytest.mark.parametrize("shifts", [None, SHIFTS], ids=["day", "shift"])
@pytest.mark.parametrize("flt", FILTERS, ids=["operating", "all-stored", "min-conf", "class-line", "window-model"])
def test_buckets_count_what_pandas_counts_in_the_plant_zone(zone: str, shifts: list | None, flt: ReportFilter, filled) -> None:
    url, rows = filled
    engine = open_store(url, create=False)
    clock = plant_clock(zone, shifts or [], "shift" if shifts else "day")
    rates, defects = defect_rate_per_bucket(engine, flt, clock), defects_per_bucket(engine, flt, clock)
    want_rates, want_defects = oracle(rows, zone, shifts, flt)
    assert len(want_rates) > 3 and comparable(rates, ["bucket", "line"], ["images_scored", "images_with_defects"]) == comparable(
        want_rates, ["bucket", "line"], ["images_scored", "images_with_defects"]
    )
    assert comparable(defects, ["bucket", "line", "class_name"], ["detections", "images"]) == comparable(
        want_defects, ["bucket", "line", "class_name"], ["detections", "images"]
    )
    detections_only = defects_per_bucket(engine, flt, clock, images=False)  # the dashboard's chart: the same detections
    assert comparable(detections_only, ["bucket", "line", "class_name"], ["detections"]) == comparable(
        want_defects, ["bucket", "line", "class_name"], ["detections"]
    )
    assert (rates["defect_rate"] == rates["images_with_defects"] / rates["images_scored"]).all()
    # each bucket's start is where the plant's clock says it starts: local midnight, or the shift's start
    for label, start in zip(rates["bucket"], rates["start"]):
        assert str(start.tzinfo) == zone and start.strftime("%Y-%m-%d") == label[:10]
        assert start.strftime("%H:%M") == ("00:00" if not shifts else {"A": "06:00", "B": "14:00", "C": "22:00"}[label[-1]])
    # totals agree with the UTC report of the same filter
    per_line = defect_rate_per_line(engine, flt)
    assert (
        rates[["images_scored", "images_with_defects"]].sum().tolist() == per_line[["images_scored", "images_with_defects"]].sum().tolist()
    )


def test_each_bucket_is_found_without_comparing_every_row_with_every_bucket(store_url: str, tmp_path: Path) -> None:
    """SQLite counts a bucket by searching the time index between its edges (with the operating flag as a plain column it
    built an automatic index on that flag instead: 5 s per chart on 1M detections); PostgreSQL binary-searches each row's
    bucket with width_bucket (a join on the spans compared every row with every span: 1.75 s for a 30-day chart)."""
    fill(store_url, tmp_path, random_times(np.random.default_rng(8), 60), seed=8)
    engine = open_store(store_url, create=False)
    clock = plant_clock("America/New_York", SHIFTS, "shift")
    statements: list[tuple[str, object]] = []

    def record(_connection, _cursor, sql: str, parameters: object, *_rest) -> None:
        statements.append((sql, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        defects_per_bucket(engine, ReportFilter(line="L2"), clock, images=False)
        defect_rate_per_bucket(engine, ReportFilter(line="L2"), clock)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    bucketed = [(sql, params) for sql, params in statements if "buckets" in sql or "width_bucket" in sql]
    assert len(bucketed) == 2
    with engine.connect() as connection:
        for sql, params in bucketed:
            explain = "EXPLAIN " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
            plan = " ".join(str(row) for row in connection.exec_driver_sql(explain + sql, params).fetchall())
            if engine.dialect.name == "postgresql":
                assert "width_bucket" in sql and "Join Filter" not in plan, plan
            else:
                assert "captured_at>? AND captured_at<?" in plan, plan
                assert "AUTOMATIC" not in plan, plan


def test_on_postgresql_and_sqlite_alike_with_frames_before_1970_and_an_offset_of_seconds(store_url: str, tmp_path: Path) -> None:
    """Amsterdam kept +00:19:32 until 1937: its midnights fall on no whole minute of UTC, and the grain must shrink to fit."""
    rng = np.random.default_rng(11)
    amsterdam = [datetime(1935, 6, 1, tzinfo=UTC) + timedelta(seconds=int(s)) for s in rng.integers(0, 5 * 86400, 60)]
    around = [datetime.combine(date(1935, 6, d), time(0), ZoneInfo("Europe/Amsterdam")).astimezone(UTC) + timedelta(seconds=s)
              for d in (2, 3) for s in (-1, 0, 1)]  # fmt: skip
    old = [datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)]
    times = amsterdam + around + old + random_times(rng, 20)
    rows = fill(store_url, tmp_path, times, seed=5)
    engine = open_store(store_url, create=False)
    for zone, shifts in (("Europe/Amsterdam", None), ("America/New_York", SHIFTS), ("Asia/Kolkata", None)):
        clock = plant_clock(zone, shifts or [], "shift" if shifts else "day")
        for flt in (ReportFilter(), ReportFilter(min_confidence=0.4, line="L2")):
            rates, defects = defect_rate_per_bucket(engine, flt, clock), defects_per_bucket(engine, flt, clock)
            want_rates, want_defects = oracle(rows, zone, shifts, flt)
            keys = ["bucket", "line"]
            assert comparable(rates, keys, ["images_scored", "images_with_defects"]) == comparable(
                want_rates, keys, ["images_scored", "images_with_defects"]
            )
            assert comparable(defects, [*keys, "class_name"], ["detections", "images"]) == comparable(
                want_defects, [*keys, "class_name"], ["detections", "images"]
            )


def test_a_shift_or_day_the_clock_jumps_over_starts_at_the_jump(tmp_path: Path) -> None:
    """New York skips 02:00-03:00 on 2026-03-08 (07:00 UTC); Santiago skips its midnight on 2026-09-06 (04:00 UTC): worked out by hand."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    times = [datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC), datetime(2026, 3, 8, 7, 0, 0, tzinfo=UTC),
             datetime(2026, 9, 6, 3, 59, 59, tzinfo=UTC), datetime(2026, 9, 6, 4, 0, 0, tzinfo=UTC)]  # fmt: skip
    fill(url, tmp_path, times)
    engine = open_store(url, create=False)
    early = plant_clock("America/New_York", [{"name": "day", "start": "08:00"}, {"name": "small-hours", "start": "02:30"}], "shift")
    rates = defect_rate_per_bucket(engine, ReportFilter(until=datetime(2026, 4, 1, tzinfo=UTC), model="m1"), early)
    assert rates.groupby("bucket")["images_scored"].sum().to_dict() == {"2026-03-07 day": 1, "2026-03-08 small-hours": 1}
    assert rates.set_index("bucket")["start"].astype(str).to_dict() == {"2026-03-07 day": "2026-03-07 08:00:00-05:00",
                                                                        "2026-03-08 small-hours": "2026-03-08 03:00:00-04:00"}  # fmt: skip
    days = defect_rate_per_bucket(engine, ReportFilter(since=datetime(2026, 9, 1, tzinfo=UTC), model="m1"), plant_clock("America/Santiago"))
    assert days.set_index("bucket")["start"].astype(str).to_dict() == {"2026-09-05": "2026-09-05 00:00:00-04:00",
                                                                       "2026-09-06": "2026-09-06 01:00:00-03:00"}  # fmt: skip


def test_class_rate_per_bucket_is_the_share_of_scored_images_with_the_class(filled) -> None:
    url, rows = filled
    engine = open_store(url, create=False)
    clock = plant_clock("Asia/Kolkata")
    flt = ReportFilter(min_confidence=0.3)
    shares = class_rate_per_bucket(defect_rate_per_bucket(engine, flt, clock), defects_per_bucket(engine, flt, clock))
    rows = rows.assign(bucket=oracle_buckets(rows["captured_at"], "Asia/Kolkata", None))
    scored = rows.drop_duplicates(["image", "model"]).groupby("bucket").size()
    hits = rows[rows["confidence"] >= 0.3].drop_duplicates(["image", "model", "class_name"]).groupby(["bucket", "class_name"]).size()
    for (_start, bucket), row in shares.iterrows():
        for name in CLASSES:
            assert row.get(name, 0.0) == pytest.approx(hits.get((bucket, name), 0) / scored[bucket])


def test_nothing_matching_is_an_empty_frame_with_the_columns(filled) -> None:
    url, _rows = filled
    engine = open_store(url, create=False)
    flt = ReportFilter(class_name="no-such-class", since=datetime(2030, 1, 1, tzinfo=UTC))
    clock = plant_clock("Europe/Istanbul")
    assert defect_rate_per_bucket(engine, flt, clock).empty and list(defect_rate_per_bucket(engine, flt, clock).columns)[:3] == [
        "bucket", "start", "line"]  # fmt: skip
    assert defects_per_bucket(engine, flt, clock).empty and "class_name" in defects_per_bucket(engine, flt, clock).columns
    assert class_rate_per_bucket(defect_rate_per_bucket(engine, flt, clock), defects_per_bucket(engine, flt, clock)).empty


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"timezone_name": "Europe/Istambul"},
            r"report.timezone 'Europe/Istambul' is not an IANA time zone name \(did you mean Europe/Istanbul",
        ),
        ({"timezone_name": "europe/berlin"}, r"report.timezone 'europe/berlin' .*did you mean Europe/Berlin"),
        ({"timezone_name": "../../etc/passwd"}, r"report.timezone '../../etc/passwd' is not an IANA time zone name"),
        ({"timezone_name": "Europe"}, r"report.timezone 'Europe' is not an IANA"),
        ({"timezone_name": ""}, r"report.timezone '' is not a time zone name"),
        ({"timezone_name": "UTC\x00"}, r"report.timezone 'UTC\\x00' is not an IANA"),
        ({"shifts": [{"name": "A", "start": "25:00"}]}, r"report.shifts\[0\].start '25:00' \(shift 'A'\) is not a local time of day HH:MM"),
        ({"shifts": [{"name": "A", "start": "06:00"}, {"name": "B", "start": "6.30"}]}, r"report.shifts\[1\].start '6.30'"),
        ({"shifts": [{"name": "A", "start": 600}]}, r"report.shifts\[0\].start 600"),
        ({"shifts": [{"name": " ", "start": "06:00"}]}, r"report.shifts\[0\].name ' ': every shift needs a name"),
        ({"shifts": [{"name": "A", "start": "06:00"}, {"name": "A", "start": "18:00"}]}, r"report.shifts: 'A' and 'A' have the same name"),
        ({"shifts": [{"name": "A", "start": "06:00"}, {"name": "B", "start": "6:00"}]}, r"'A' and 'B' have the same start time \(06:00\)"),
        ({"shifts": "A 06:00"}, r"report.shifts must be a list"),
        ({"bucket": "shift"}, r"report.bucket is shift but report.shifts is empty"),
        ({"bucket": "week"}, r"report.bucket 'week': use day or shift"),
    ],
)
def test_bad_zones_and_shifts_are_usage_errors_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plant_clock(**kwargs)


def test_the_recipe_report_section_becomes_a_clock() -> None:
    from inspect_core.config import ReportSection
    from inspect_core.store.plant_clock import clock_from_settings

    clock = clock_from_settings(ReportSection(timezone="Asia/Kolkata", shifts=SHIFTS, bucket="shift"))
    assert clock.name == "Asia/Kolkata" and [s.name for s in clock.shifts] == ["A", "B", "C"] and clock.bucket == "shift"
    assert clock_from_settings(ReportSection(timezone="Asia/Kolkata", shifts=SHIFTS), bucket="day").starts == [(time(0), None)]
    with pytest.raises(UsageError, match="report.shifts\\[0\\].start '6h'"):
        clock_from_settings(ReportSection(shifts=[{"name": "A", "start": "6h"}]))


@pytest.mark.parametrize("flt", [ReportFilter(class_name="hole", since=datetime(2026, 3, 1, tzinfo=UTC), line="L1"),
                                 ReportFilter(min_confidence=0.4, until=datetime(2026, 11, 1, tzinfo=UTC), camera="cam-1")])  # fmt: skip
def test_a_frame_is_defective_by_a_lookup_on_its_own_detections(filled: tuple[str, pd.DataFrame], flt: ReportFilter) -> None:
    """A per-shift rate chart filtered by class once took 107-142 s over 1M detections: its EXISTS repeated the window's
    conditions and SQLite scanned a class's detections per frame by the class-and-time index. The lookup is by frame."""
    import sqlalchemy as sa

    from inspect_core.store.reports import defective
    from inspect_core.store.schema import ImageScore

    scores = ImageScore.__table__
    statement = sa.select(sa.func.count()).select_from(scores).where(defective(flt))
    engine = open_store(filled[0], create=False)
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        plan = " ".join(str(row[-1]) for row in connection.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")))
    assert "ix_detections_image" in plan and "ix_detections_class_captured" not in plan, plan
