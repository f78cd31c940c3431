from __future__ import annotations

import hashlib
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select
from typer.testing import CliRunner

from inspect_core.store import (
    DetectionRecord,
    ReportFilter,
    ScoredImage,
    StoredDetection,
    class_summary,
    confidence_histogram,
    defect_rate_per_line,
    defects_per_day,
    detections_frame,
    ensure_source,
    open_store,
    register_model,
    start_run,
    write_scored_batch,
)
from tests.store.seeded import ALL_ROWS, IMAGES, INJECTION, LINES, UTC, Store, expected, model_and_run, seed_store

runner = CliRunner()


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Store:
    return seed_store(store_url, tmp_path)


FILTERS = [
    ReportFilter(),
    ReportFilter(since=datetime(2026, 11, 2, tzinfo=UTC)),
    ReportFilter(until=datetime(2026, 11, 1, 9, 30, tzinfo=UTC)),  # exclusive: image b is out
    ReportFilter(since=datetime(2026, 11, 1, 9, tzinfo=UTC), until=datetime(2026, 11, 2, 8, tzinfo=UTC)),
    ReportFilter(line="line-B"),
    ReportFilter(camera="cam-1"),
    ReportFilter(class_name="hole"),
    ReportFilter(min_confidence=0.85),  # inclusive
    ReportFilter(model="fabric-v2"),
    ReportFilter(line="line-A", class_name="hole", model="fabric-v2", min_confidence=0.5),
    ReportFilter(camera="cam-2", since=datetime(2026, 11, 2, tzinfo=UTC), class_name="stain"),
    ReportFilter(line="line-C"),
]


def key(captured_at: datetime, camera: str, class_name: str, confidence: float, model: str) -> tuple:
    return (pd.Timestamp(captured_at), camera, class_name, round(confidence, 6), model)


def test_every_filter_returns_exactly_the_expected_detections_newest_first(store: Store) -> None:
    for flt in FILTERS:
        frame = detections_frame(store.engine, flt)
        got = sorted(key(*r) for r in frame[["captured_at", "camera", "class_name", "confidence", "model"]].itertuples(index=False))
        want = sorted(key(r.captured_at, r.camera, r.class_name, r.confidence, r.model) for r in expected(flt))
        assert got == want, flt
        assert frame["captured_at"].is_monotonic_decreasing
        assert frame["line"].tolist() == [LINES[c] for c in frame["camera"]]
    first = detections_frame(store.engine, ReportFilter(class_name="knot")).iloc[0]
    assert (first.x1, first.y1, first.x2, first.y2, first.image_width, first.image_height) == (30, 30, 90, 80, 200, 100)
    assert first.image_path == str(store.frames / "d.png") and first.model == "fabric-v2"
    with store.engine.connect() as connection:  # the bulk insert path stores times exactly as the ORM does
        same = "SELECT count(*) FROM detections d JOIN images i ON i.id = d.image_id WHERE d.captured_at = i.captured_at"
        assert connection.execute(sa.text(same)).scalar() == len(ALL_ROWS)
    newest = detections_frame(store.engine, ReportFilter(), limit=2)
    assert len(newest) == 2 and set(newest["captured_at"]) == {pd.Timestamp(IMAGES["gone"][1]), pd.Timestamp(IMAGES["e"][1])}


def test_bulk_insert_stores_polygons_and_times_as_the_orm_reads_them(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    version = register_model(engine, tmp_path / "m", base_model="tiny").id
    run = start_run(engine, version, "cfg", images_total=1)
    polygon = ((10.5, 5.0), (30.0, 5.0), (20.0, 25.25))
    found = [StoredDetection("tear", 0.75, (10.5, 5.0, 30.0, 25.25), polygon), StoredDetection("hole", 0.5, (1, 2, 3, 4))]
    local = datetime(2026, 11, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    write_scored_batch(engine, run, version, [ScoredImage("f" * 64, "/frames/f.png", 200, 100, local, None, found)])
    with Session(engine) as session:
        tear, hole = session.exec(select(DetectionRecord).order_by(DetectionRecord.id)).all()
    assert tear.polygon == [list(p) for p in polygon] and hole.polygon is None
    assert tear.captured_at == datetime(2026, 11, 1, 8, 0, tzinfo=UTC) and (hole.x2, hole.ny2) == (3.0, 0.04)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM detections WHERE polygon IS NULL")).scalar() == 1


def test_filter_values_are_bound_parameters_not_sql(store: Store) -> None:
    for field in ("line", "camera", "class_name", "model"):
        flt = ReportFilter(**{field: INJECTION})
        assert detections_frame(store.engine, flt).empty
        assert class_summary(store.engine, flt).empty
        assert defects_per_day(store.engine, flt).empty
        assert confidence_histogram(store.engine, flt).to_numpy().sum() == 0
    assert defect_rate_per_line(store.engine, ReportFilter(class_name=INJECTION))["images_with_defects"].sum() == 0
    assert defect_rate_per_line(store.engine, ReportFilter(line=INJECTION)).empty
    assert len(detections_frame(store.engine, ReportFilter())) == len(ALL_ROWS)  # nothing was dropped or altered


def test_aggregates_per_day_per_line_class_and_confidence_are_exact(store: Store) -> None:
    for flt in FILTERS:
        rows = expected(flt)
        per_day = defects_per_day(store.engine, flt)
        got = {(day, cls): int(n) for day, counts in per_day.iterrows() for cls, n in counts.items() if n}
        assert got == Counter((pd.Timestamp(r.captured_at.date()), r.class_name) for r in rows), flt
        summary = class_summary(store.engine, flt)
        assert dict(zip(summary["class_name"], summary["detections"])) == Counter(r.class_name for r in rows), flt
        histogram = confidence_histogram(store.engine, flt)
        assert len(histogram) == 20 and int(histogram.to_numpy().sum()) == len(rows)
    assert defects_per_day(store.engine, ReportFilter()).to_dict("index") == {
        pd.Timestamp(date(2026, 11, 1)): {"hole": 3, "knot": 0, "stain": 1},
        pd.Timestamp(date(2026, 11, 2)): {"hole": 2, "knot": 1, "stain": 1},
    }
    histogram = confidence_histogram(store.engine, ReportFilter())
    assert histogram.loc[0.95, "hole"] == 1 and histogram.loc[0.4, "stain"] == 1 and histogram.loc[0.95, "knot"] == 1  # 0.99, 0.4, 0.95

    def rates(flt: ReportFilter) -> dict[str, tuple[int, int, float]]:
        frame = defect_rate_per_line(store.engine, flt)
        return {r.line: (r.images_scored, r.images_with_defects, round(r.defect_rate, 4)) for r in frame.itertuples()}

    # Scorings per line: A = (a, v1), (a, v2), (d, v2); B = (b, v1), (c, v1), (e, v2), (gone, v2).
    assert rates(ReportFilter()) == {"line-A": (3, 3, 1.0), "line-B": (4, 3, 0.75)}
    assert rates(ReportFilter(class_name="stain")) == {"line-A": (3, 1, 0.3333), "line-B": (4, 1, 0.25)}
    assert rates(ReportFilter(min_confidence=0.9)) == {"line-A": (3, 2, 0.6667), "line-B": (4, 1, 0.25)}
    assert rates(ReportFilter(model="fabric-v1")) == {"line-A": (1, 1, 1.0), "line-B": (2, 1, 0.5)}
    assert rates(ReportFilter(since=datetime(2026, 11, 2, tzinfo=UTC), camera="cam-2")) == {"line-B": (2, 2, 1.0)}


def test_aggregates_from_day_counts_equal_the_detections_for_any_window(store_url: str, tmp_path: Path) -> None:
    """Whole days come from the day counts, edges from the detections: the totals must match exactly."""
    engine = open_store(store_url)
    rng = np.random.default_rng(7)
    sources = [ensure_source(engine, "cam-1", "line-A"), ensure_source(engine, "cam-2", "line-B"), None]
    edges = [0.0, 0.05, 0.5, 0.85, 0.95, 1.0]  # bin edges and the top of the scale
    for model in ("v1", "v2"):
        version, run = model_and_run(engine, tmp_path, model, images=120)
        batch = []
        for index in range(120):
            captured_at = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=int(rng.integers(0, 5 * 24 * 60)))
            confidences = [float(rng.choice(edges) if rng.random() < 0.3 else rng.random()) for _ in range(int(rng.integers(0, 5)))]
            found = [StoredDetection(str(rng.choice(["hole", "stain", "knot"])), c, (1.0, 2.0, 30.0, 40.0)) for c in confidences]
            sha = hashlib.sha256(f"{model}-{index}".encode()).hexdigest()
            batch.append(ScoredImage(sha, f"/frames/{index}.png", 200, 100, captured_at, sources[index % 3], found))
        write_scored_batch(engine, run, version, batch[:50])
        write_scored_batch(engine, run, version, batch[50:])  # counts of a day add up across batches
    everything = detections_frame(engine, ReportFilter())
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT sum(n) FROM detection_day_counts")).scalar() == len(everything) > 400
    windows = [
        ReportFilter(),
        ReportFilter(since=datetime(2026, 11, 2, 13, 17, tzinfo=UTC)),
        ReportFilter(until=datetime(2026, 11, 4, 6, 1, tzinfo=UTC)),
        ReportFilter(since=datetime(2026, 11, 2, tzinfo=UTC), until=datetime(2026, 11, 4, tzinfo=UTC)),
        ReportFilter(since=datetime(2026, 11, 2, 5, tzinfo=UTC), until=datetime(2026, 11, 2, 20, tzinfo=UTC)),  # inside one day
        ReportFilter(since=datetime(2026, 11, 3, 1, 0, tzinfo=timezone(timedelta(hours=5)))),  # not UTC
        ReportFilter(min_confidence=0.5),
        ReportFilter(min_confidence=0.52),
        ReportFilter(min_confidence=0.0),
        ReportFilter(min_confidence=1.0),
        ReportFilter(since=datetime(2026, 11, 1, 22, 30, tzinfo=UTC), min_confidence=0.33, line="line-B", model="v2"),
        ReportFilter(until=datetime(2026, 11, 5, 12, tzinfo=UTC), class_name="knot", camera="cam-1", min_confidence=0.85),
    ]
    for flt in windows:
        rows = detections_frame(engine, flt)
        summary = class_summary(engine, flt).set_index("class_name")
        want = rows.groupby("class_name")["confidence"].agg(["count", "mean", "max"])
        assert summary["detections"].to_dict() == want["count"].to_dict(), flt
        assert np.allclose(summary.loc[want.index, "mean_confidence"], want["mean"]), flt
        assert np.allclose(summary.loc[want.index, "max_confidence"], want["max"]), flt
        per_day = defects_per_day(engine, flt)
        got = {(day, cls): int(n) for day, counts in per_day.iterrows() for cls, n in counts.items() if n}
        days = rows["captured_at"].dt.tz_convert(UTC).dt.tz_localize(None).dt.normalize()
        assert got == Counter(zip(days, rows["class_name"])), flt
        histogram = confidence_histogram(engine, flt)
        bins = np.minimum((rows["confidence"].to_numpy() * 20).astype(int), 19)
        for cls in histogram.columns:
            want_bins = np.bincount(bins[(rows["class_name"] == cls).to_numpy()], minlength=20)
            assert histogram[cls].to_numpy().tolist() == want_bins.tolist(), (flt, cls)
        assert int(histogram.to_numpy().sum()) == len(rows), flt
        assert confidence_histogram(engine, flt, bins=7).to_numpy().sum() == len(rows), flt  # other bins: detections only
