from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from io import StringIO
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from inspect_core.cli import app
from inspect_core.reports import (
    ReportFilter,
    annotate_top,
    class_summary,
    confidence_histogram,
    defect_rate_per_line,
    defects_per_day,
    detections_frame,
    parse_when,
    plot_report,
    write_table,
)
from inspect_core.results_store import (
    DetectionRecord,
    ScoredImage,
    StoredDetection,
    ensure_source,
    finish_run,
    open_store,
    register_model,
    start_run,
    write_scored_batch,
)
from tests.conftest import write_image

runner = CliRunner()
UTC = timezone.utc
LINES = {"cam-1": "line-A", "cam-2": "line-B"}
IMAGES = {  # name: camera, capture time; "gone" is scored but its file is never written
    "a": ("cam-1", datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),
    "b": ("cam-2", datetime(2026, 11, 1, 9, 30, tzinfo=UTC)),
    "c": ("cam-2", datetime(2026, 11, 1, 12, 0, tzinfo=UTC)),
    "d": ("cam-1", datetime(2026, 11, 2, 7, 0, tzinfo=UTC)),
    "e": ("cam-2", datetime(2026, 11, 2, 10, 0, tzinfo=UTC)),
    "gone": ("cam-2", datetime(2026, 11, 2, 11, 0, tzinfo=UTC)),
}
SCORES = {  # (image, model version): detections as (class, confidence, pixel box on a 200x100 image)
    ("a", "fabric-v1"): [("hole", 0.9, (10, 10, 50, 40)), ("stain", 0.4, (100, 20, 150, 60))],
    ("b", "fabric-v1"): [("hole", 0.7, (20, 30, 60, 70))],
    ("c", "fabric-v1"): [],
    ("a", "fabric-v2"): [("hole", 0.8, (12, 10, 52, 40))],
    ("d", "fabric-v2"): [("knot", 0.95, (30, 30, 90, 80)), ("hole", 0.55, (120, 10, 160, 50))],
    ("e", "fabric-v2"): [("stain", 0.85, (60, 20, 140, 90))],
    ("gone", "fabric-v2"): [("hole", 0.99, (5, 5, 40, 40))],
}
INJECTION = "x' OR '1'='1"


@dataclass(frozen=True)
class Row:
    image: str
    model: str
    class_name: str
    confidence: float

    @property
    def camera(self) -> str:
        return IMAGES[self.image][0]

    @property
    def captured_at(self) -> datetime:
        return IMAGES[self.image][1]


ALL_ROWS = [Row(image, model, cls, conf) for (image, model), found in SCORES.items() for cls, conf, _box in found]


def expected(flt: ReportFilter) -> list[Row]:
    """The filter applied in plain Python: what the SQL must return."""
    return [
        r
        for r in ALL_ROWS
        if (flt.since is None or r.captured_at >= flt.since)
        and (flt.until is None or r.captured_at < flt.until)
        and (flt.camera is None or r.camera == flt.camera)
        and (flt.line is None or LINES[r.camera] == flt.line)
        and (flt.class_name is None or r.class_name == flt.class_name)
        and (flt.model is None or r.model == flt.model)
        and (flt.min_confidence is None or r.confidence >= flt.min_confidence)
    ]


@dataclass(frozen=True)
class Store:
    url: str
    engine: Engine
    frames: Path


def model_and_run(engine: Engine, root: Path, name: str, images: int) -> tuple[int, int]:
    """A registered model version called ``name`` and a scoring run of it."""
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model": name}))
    version = register_model(engine, folder, base_model="tiny", name=name).id
    return version, start_run(engine, version, "cfg", images_total=images)


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Store:
    engine = open_store(store_url)
    frames = tmp_path / "frames"
    sources = {camera: ensure_source(engine, camera, line) for camera, line in LINES.items()}
    for name in ("a", "b", "c", "d", "e"):
        write_image(frames / f"{name}.png", width=200, height=100, seed=ord(name))
    for model in ("fabric-v1", "fabric-v2"):
        version, run = model_and_run(engine, tmp_path, model, images=4)
        batch = []
        for (image, scored_by), found in SCORES.items():
            camera, captured_at = IMAGES[image]
            detections = [StoredDetection(cls, conf, tuple(float(v) for v in box)) for cls, conf, box in found]
            sha = hashlib.sha256(image.encode()).hexdigest()
            if scored_by == model:
                batch.append(ScoredImage(sha, str(frames / f"{image}.png"), 200, 100, captured_at, sources[camera], detections))
        assert write_scored_batch(engine, run, version, batch) == len(batch)
        finish_run(engine, run, "completed")
    return Store(store_url, engine, frames)


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


def test_every_table_format_round_trips(store: Store, tmp_path: Path) -> None:
    frame = detections_frame(store.engine, ReportFilter())
    read = {
        "csv": lambda p: pd.read_csv(p, parse_dates=["captured_at"]),
        "parquet": pd.read_parquet,
        "json": lambda p: pd.read_json(p, orient="records"),
        "html": lambda p: pd.read_html(StringIO(p.read_text()))[0],
    }
    for fmt, reader in read.items():
        path = tmp_path / "out" / f"rows.{fmt}"
        write_table(frame, fmt, path)
        back = reader(path)
        assert list(back.columns) == list(frame.columns), fmt
        assert back["class_name"].tolist() == frame["class_name"].tolist(), fmt
        assert np.allclose(back["confidence"], frame["confidence"]) and np.allclose(back["x2"], frame["x2"]), fmt
        if fmt != "html":
            assert (pd.to_datetime(back["captured_at"], utc=True) == frame["captured_at"]).all(), fmt
    with pytest.raises(ValueError, match="unknown table format 'xlsx'"):
        write_table(frame, "xlsx", tmp_path / "rows.xlsx")


def test_plots_are_valid_pngs_even_when_nothing_matches(store: Store, tmp_path: Path) -> None:
    for flt, folder in ((ReportFilter(), "all"), (ReportFilter(class_name="nothing"), "none")):
        paths = plot_report(store.engine, flt, tmp_path / folder)
        assert [p.name for p in paths] == ["defects_per_day.png", "defect_rate_per_line.png", "confidence_histogram.png"]
        for path in paths:
            pixels = cv2.imread(str(path))
            assert pixels is not None and pixels.shape[0] > 100 and pixels.std() > 0


def test_annotate_draws_the_most_confident_images_and_reports_missing_files(store: Store, tmp_path: Path) -> None:
    result = annotate_top(store.engine, ReportFilter(), tmp_path / "top", top_n=3)
    assert result.missing == [str(store.frames / "gone.png")]  # 0.99, but its file is gone
    assert [p.name for p in result.written] == ["002_d_fabric-v2.png", "003_a_fabric-v1.png"]  # 0.95, then 0.9
    original = cv2.imread(str(store.frames / "d.png"))
    drawn = cv2.imread(str(result.written[0]))
    assert (drawn[35:75, 30] != original[35:75, 30]).any(axis=1).all()  # the knot box's left edge
    assert (drawn[15:45, 120] != original[15:45, 120]).any(axis=1).all()  # the hole box's left edge
    assert (drawn[85:, 190:] == original[85:, 190:]).all()  # far from boxes and labels: untouched

    only_stains = annotate_top(store.engine, ReportFilter(class_name="stain"), tmp_path / "stains", top_n=5)
    assert [p.name for p in only_stains.written] == ["001_e_fabric-v2.png", "002_a_fabric-v1.png"] and only_stains.missing == []
    a_original, a_drawn = cv2.imread(str(store.frames / "a.png")), cv2.imread(str(only_stains.written[1]))
    assert (a_drawn[25:55, 100] != a_original[25:55, 100]).any(axis=1).all()  # the stain box is drawn
    assert (a_drawn[15:35, 10] == a_original[15:35, 10]).all()  # the hole on the same image is filtered out
    assert annotate_top(store.engine, ReportFilter(class_name=INJECTION), tmp_path / "none", top_n=5).written == []


def test_parse_when_accepts_dates_times_and_spans() -> None:
    now = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    assert parse_when("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_when("2026-11-01T08:30", now) == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    assert parse_when("2026-11-01T09:30+01:00", now) == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    assert parse_when("7d", now) == datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    assert parse_when("24h", now) == parse_when("1d", now)
    with pytest.raises(ValueError, match="not a time: 'yesterday'"):
        parse_when("yesterday", now)
    with pytest.raises(ValueError, match="timezone-aware"):
        ReportFilter(since=datetime(2026, 11, 1))


def test_report_cli_table_json_files_and_errors(store: Store, tmp_path: Path) -> None:
    help_text = runner.invoke(app, ["report", "--help"]).output
    options = "--since --until --line --camera --class --min-confidence --model --format --out --plots --annotate --top --limit --json"
    for option in [*options.split(), "Example: inspect-core report"]:
        assert option in help_text, option

    summary = runner.invoke(app, ["report", "--db", store.url, "--json"])
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout) == {
        "filter": {}, "detections": 8, "per_class": {"hole": 5, "stain": 2, "knot": 1}, "rows": 8, "files": [], "missing_images": [],
    }  # fmt: skip

    out, plots, top = tmp_path / "rows.csv", tmp_path / "plots", tmp_path / "top"
    args = ["report", "--db", store.url, "--since", "2026-11-02", "--line", "line-B", "--format", "csv", "--out", str(out)]
    result = runner.invoke(app, [*args, "--plots", str(plots), "--annotate", str(top), "--top", "2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rows"] == 2 and payload["per_class"] == {"hole": 1, "stain": 1}
    assert payload["filter"] == {"since": "2026-11-02T00:00:00+00:00", "line": "line-B"}
    assert payload["missing_images"] == [str(store.frames / "gone.png")]
    charts = [str(plots / n) for n in ("defects_per_day.png", "defect_rate_per_line.png", "confidence_histogram.png")]
    assert payload["files"] == [str(out), *charts, str(top / "002_e_fabric-v2.png")]
    assert pd.read_csv(out)["class_name"].tolist() == ["hole", "stain"]

    to_stdout = runner.invoke(app, ["report", "--db", store.url, "--class", "knot", "--format", "json"])
    assert to_stdout.exit_code == 0 and [r["class_name"] for r in json.loads(to_stdout.stdout)] == ["knot"]

    table = runner.invoke(app, ["report", "--db", store.url, "--camera", "cam-1", "--limit", "3"])
    assert table.exit_code == 0 and "defects per class" in table.output and "newest 3" in table.output and "knot" in table.output

    injected = runner.invoke(app, ["report", "--db", store.url, "--class", INJECTION, "--json"])
    assert injected.exit_code == 0 and json.loads(injected.stdout)["rows"] == 0

    for bad, message in (
        (["--since", "last tuesday"], "--since: not a time: 'last tuesday'"),
        (["--until", "2026-13-01"], "--until: not a time"),
        (["--format", "xlsx"], "--format 'xlsx'"),
        (["--format", "parquet"], "needs --out"),
        (["--out", str(tmp_path / "x.csv")], "add --format"),
    ):
        failed = runner.invoke(app, ["report", "--db", store.url, *bad])
        assert failed.exit_code == 2 and message in " ".join(failed.stderr.split()), (bad, failed.stderr)
    missing = runner.invoke(app, ["report", "--db", f"sqlite:///{tmp_path / 'nope.db'}"])
    assert missing.exit_code == 2 and "no results store at" in missing.stderr and not (tmp_path / "nope.db").exists()


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
