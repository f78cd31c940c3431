"""History stays true: a frame keeps the line it was captured on, whoever scores it and wherever its camera moves later."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from inspect_core.ingest.folder import FolderWatcher
from inspect_core.store import (
    Engine,
    ImageRecord,
    ImageScore,
    ReportFilter,
    ScoredImage,
    StoredDetection,
    class_summary,
    defect_rate_per_line,
    detections_frame,
    downgrade,
    ensure_source,
    open_store,
    register_model,
    start_run,
    write_scored_batch,
)
from tests.conftest import write_image

HOLE = StoredDetection("hole", 0.9, (2.0, 2.0, 20.0, 20.0))


def ingest(engine: Engine, folder: Path, line: str, seeds: range) -> None:
    for seed in seeds:
        write_image(folder / f"f{seed}.png", seed=seed)
    assert len(FolderWatcher(folder, engine, "ls-1", line, settle_seconds=0).poll_once().registered) == len(seeds)


def score_everything(engine: Engine, tmp_path: Path, defective: set[str], source_id: int | None = None) -> None:
    """Score every registered image as a flow shard does: with no line of its own (or a wrong one)."""
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "config.json").write_text(json.dumps({"m": 1}))
    version = register_model(engine, tmp_path / "model", base_model="tiny").id
    with Session(engine) as session:
        images = session.exec(select(ImageRecord)).all()
    now = datetime(2027, 1, 1, tzinfo=timezone.utc)  # a scorer's own idea of capture time (file mtime): not used for known images
    batch = [ScoredImage(i.sha256, i.path, i.width, i.height, now, source_id, [HOLE] if Path(i.path).name in defective else [])
             for i in images]  # fmt: skip
    assert write_scored_batch(engine, start_run(engine, version, "cfg", len(batch)), version, batch) == len(batch)


def rates(engine: Engine, flt: ReportFilter) -> dict[str | None, tuple[int, int]]:
    frame = defect_rate_per_line(engine, flt)
    return {r.line: (r.images_scored, r.images_with_defects) for r in frame.itertuples()}


def test_a_camera_moved_to_another_line_keeps_its_earlier_frames_on_the_old_line(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    ingest(engine, tmp_path / "on-L2", "L2", range(0, 3))  # frames of ls-1 while it was on L2
    ingest(engine, tmp_path / "on-L3", "L3", range(3, 5))  # then it moved to L3 (--camera ls-1 --line L3)
    on_l3 = ensure_source(engine, "ls-1", "L3")
    score_everything(engine, tmp_path, defective={"f0.png", "f1.png", "f3.png"}, source_id=on_l3)  # the shard says L3: ignored

    assert rates(engine, ReportFilter()) == {"L2": (3, 2), "L3": (2, 1)}
    assert rates(engine, ReportFilter(camera="ls-1")) == {"L2": (3, 2), "L3": (2, 1)}  # the camera on every line it was on
    assert rates(engine, ReportFilter(line="L2")) == {"L2": (3, 2)}
    found = detections_frame(engine, ReportFilter(camera="ls-1"))
    assert sorted(zip(found["line"], [Path(p).name for p in found["image_path"]])) == [("L2", "f0.png"), ("L2", "f1.png"), ("L3", "f3.png")]
    assert class_summary(engine, ReportFilter(line="L2"))["detections"].tolist() == [2]  # the day counts keep the line too
    assert class_summary(engine, ReportFilter(line="L3"))["detections"].tolist() == [1]
    with Session(engine) as session:  # every score carries its image's own capture time and source
        images = {i.id: i for i in session.exec(select(ImageRecord))}
        scores = session.exec(select(ImageScore)).all()
        copied = [(s.captured_at, s.source_id) for s in scores]
        assert copied == [(images[s.image_id].captured_at, images[s.image_id].source_id) for s in scores]


def test_stores_from_before_sources_per_line_upgrade_and_downgrade(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    on_l2 = ensure_source(engine, "ls-1", "L2")
    ingest(engine, tmp_path / "on-L2", "L2", range(0, 2))
    downgrade(engine, "0003")  # one line per camera, as before
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO sources (camera, line) VALUES ('ls-1', 'L3')"))
    engine = open_store(store_url)  # upgraded with its data
    assert ensure_source(engine, "ls-1", "L2") == on_l2
    on_l3 = ensure_source(engine, "ls-1", "L3")
    assert on_l3 != on_l2
    score_everything(engine, tmp_path, defective={"f0.png"})
    assert rates(engine, ReportFilter()) == {"L2": (2, 1)}

    with pytest.raises(RuntimeError, match="cannot downgrade the results store below 0004: camera\\(s\\) ls-1 captured frames on more"):
        downgrade(engine, "0003")
    assert ensure_source(open_store(store_url), "ls-1", "L3") == on_l3  # refused whole: the store is as it was


def test_stores_from_before_thresholds_after_the_fact_upgrade_and_downgrade(store_url: str, tmp_path: Path) -> None:
    """0006: old detections were all above their run's threshold, so they come back operating; a downgrade keeps
    only operating detections (the old schema would count the rest as defects) and merges their day counts."""
    engine = open_store(store_url)
    source = ensure_source(engine, "cam-1", "L1")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    version = register_model(engine, tmp_path / "model", base_model="tiny").id
    when = datetime(2027, 1, 1, 8, tzinfo=timezone.utc)
    knot = StoredDetection("knot", 0.05, (1.0, 1.0, 5.0, 5.0), operating=False)
    batch = [ScoredImage("a" * 64, "/f/a.png", 64, 48, when, source, [HOLE, knot]), ScoredImage("b" * 64, "/f/b.png", 64, 48, when, source)]
    write_scored_batch(engine, start_run(engine, version, "cfg", 2), version, batch)
    assert rates(engine, ReportFilter()) == {"L1": (2, 1)} and rates(engine, ReportFilter(min_confidence=0.01)) == {"L1": (2, 1)}

    downgrade(engine, "0005")
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT class_name FROM detections")).scalars().all() == ["hole"]
        assert connection.execute(sa.text("SELECT sum(n) FROM detection_day_counts")).scalar() == 1
        assert sorted(connection.execute(sa.text("SELECT detections FROM image_scores")).scalars()) == [0, 1]
    engine = open_store(store_url)
    with Session(engine) as session:
        assert sorted((s.detections, s.defects) for s in session.exec(select(ImageScore))) == [(0, 0), (1, 1)]
    for flt in (ReportFilter(), ReportFilter(min_confidence=0.0)):
        assert rates(engine, flt) == {"L1": (2, 1)}
        assert class_summary(engine, flt)["class_name"].tolist() == ["hole"]
        assert detections_frame(engine, flt)["class_name"].tolist() == ["hole"]
