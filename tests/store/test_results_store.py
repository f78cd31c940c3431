from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from inspect_core.store import (
    MIGRATIONS_DIR,
    DetectionDayCount,
    DetectionRecord,
    ImageRecord,
    ImageScore,
    ModelVersion,
    QuarantineEntry,
    ScoredImage,
    StoredDetection,
    StoreUnavailableError,
    already_scored,
    champion,
    ensure_source,
    finish_run,
    open_store,
    promote_model,
    quarantine,
    register_frames,
    register_model,
    start_run,
    unscored_images,
    with_retries,
    write_scored_batch,
)


def model_dir(root: Path, name: str, content: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"weights": content}))
    return folder


def scored(index: int, source_id: int | None, detections: int = 2) -> ScoredImage:
    found = [StoredDetection("hole", 0.5 + 0.1 * k, (10.0 * k, 5.0, 10.0 * k + 8, 20.0)) for k in range(detections)]
    return ScoredImage(
        f"{index:064x}", f"/frames/{index}.png", 200, 100, datetime(2026, 11, 1, 8, index % 60, tzinfo=timezone.utc), source_id, found
    )


def test_migrations_build_exactly_the_model_schema(store_url: str) -> None:
    engine = open_store(store_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []
    open_store(store_url)  # upgrading an up-to-date store is a no-op


def test_sqlite_store_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'nested' / 'results.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_a_batch_is_written_once_and_rescoring_adds_nothing(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    source = ensure_source(engine, "cam-1", "line-A")
    model = register_model(engine, model_dir(tmp_path, "m1", "a"), base_model="tiny")
    run = start_run(engine, model.id, "cfg", images_total=3)
    batch = [scored(1, source), scored(2, source, detections=0), scored(3, None, detections=3)]
    assert write_scored_batch(engine, run, model.id, batch) == 3
    assert write_scored_batch(engine, run, model.id, batch + [scored(4, source)]) == 1  # only the new image
    record = finish_run(engine, run, "completed")
    assert (record.images_scored, record.detections, record.status) == (4, 7, "completed")
    with Session(engine) as session:
        assert session.exec(select(sa.func.count()).select_from(DetectionRecord)).one() == 7
        assert session.exec(select(sa.func.count()).select_from(ImageRecord)).one() == 4
        first = session.exec(select(DetectionRecord).where(DetectionRecord.class_name == "hole").order_by(DetectionRecord.id)).first()
        assert (first.nx2, first.ny2, first.source_id) == (8 / 200, 20 / 100, source)
        assert first.captured_at == datetime(2026, 11, 1, 8, 1, tzinfo=timezone.utc)
    assert already_scored(engine, model.id, [f"{i:064x}" for i in (1, 4, 9)]) == {f"{1:064x}", f"{4:064x}"}

    # Another model version scores the same images: new rows for it, the images are not duplicated.
    other = register_model(engine, model_dir(tmp_path, "m2", "b"), base_model="tiny")
    run2 = start_run(engine, other.id, "cfg", images_total=1)
    assert write_scored_batch(engine, run2, other.id, [scored(1, source)]) == 1
    with Session(engine) as session:
        assert session.exec(select(sa.func.count()).select_from(ImageRecord)).one() == 4
        assert session.exec(select(sa.func.count()).select_from(ImageScore)).one() == 5


def test_a_failing_batch_leaves_nothing_half_written(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    model = register_model(engine, model_dir(tmp_path, "m", "a"), base_model="tiny")
    run = start_run(engine, model.id, "cfg", images_total=2)
    broken = ScoredImage(
        "f" * 64, "/frames/bad.png", 0, 100, datetime(2026, 11, 1, tzinfo=timezone.utc), None, [StoredDetection("hole", 0.9, (1, 1, 2, 2))]
    )
    with pytest.raises(ZeroDivisionError):  # the normalised box divides by the width
        write_scored_batch(engine, run, model.id, [scored(1, None), broken])
    relative = ScoredImage("e" * 64, "frames/rel.png", 10, 10, datetime(2026, 11, 1, tzinfo=timezone.utc), None)
    with pytest.raises(ValueError, match="image path 'frames/rel.png' is relative: the store keeps absolute paths"):
        write_scored_batch(engine, run, model.id, [scored(2, None), relative])
    with Session(engine) as session:
        assert session.exec(select(sa.func.count()).select_from(ImageRecord)).one() == 0
        assert session.exec(select(sa.func.count()).select_from(DetectionRecord)).one() == 0
        assert session.exec(select(sa.func.count()).select_from(DetectionDayCount)).one() == 0


def day_counts(engine: sa.Engine) -> dict[tuple, tuple[int, float, float]]:
    with Session(engine) as session:
        rows = session.exec(select(DetectionDayCount)).all()
        keys = [(r.day, r.source_key, r.model_version_id, r.class_name, r.confidence_bin) for r in rows]
        return dict(zip(keys, [(r.n, round(r.confidence_sum, 9), r.confidence_max) for r in rows]))


def test_day_counts_follow_batches_and_the_migration_backfills_them(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    source = ensure_source(engine, "cam-1", "line-A")
    model = register_model(engine, model_dir(tmp_path, "m", "a"), base_model="tiny")
    run = start_run(engine, model.id, "cfg", images_total=4)
    late = ScoredImage("e" * 64, "/frames/late.png", 200, 100, datetime(2026, 11, 2, 23, 59, 59, tzinfo=timezone.utc), None,
                       [StoredDetection("knot", 1.0, (1, 1, 2, 2)), StoredDetection("knot", 0.05, (1, 1, 2, 2))])  # fmt: skip
    write_scored_batch(engine, run, model.id, [scored(1, source), scored(2, source, detections=3)])
    write_scored_batch(engine, run, model.id, [scored(3, source), late])
    counts = day_counts(engine)
    nov1, nov2 = datetime(2026, 11, 1).date(), datetime(2026, 11, 2).date()
    assert counts[(nov1, source, model.id, "hole", 10)] == (3, 1.5, 0.5)  # 0.5 from three images in two batches: one row
    assert counts[(nov1, source, model.id, "hole", 12)] == (3, 1.8, 0.6)
    assert counts[(nov1, source, model.id, "hole", 14)] == (1, 0.7, 0.7)
    assert counts[(nov2, 0, model.id, "knot", 19)] == (1, 1.0, 1.0)  # 1.0 is in the top bin; no camera is key 0
    assert sum(n for n, _, _ in counts.values()) == 2 + 3 + 2 + 2

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    open_store(store_url)  # upgrading a store that has detections counts them in
    assert day_counts(engine) == counts


def test_image_scores_copy_their_image_capture_and_camera_and_the_migration_fills_old_rows(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    source = ensure_source(engine, "cam-1", "line-A")
    model = register_model(engine, model_dir(tmp_path, "m", "a"), base_model="tiny")
    run = start_run(engine, model.id, "cfg", images_total=2)
    write_scored_batch(engine, run, model.id, [scored(1, source), scored(2, None)])

    def copies() -> dict[int, tuple[datetime, int | None]]:
        with Session(engine) as session:
            scores = session.exec(select(ImageScore)).all()
            images = {i.id: i for i in session.exec(select(ImageRecord)).all()}
            assert {s.image_id: (s.captured_at, s.source_id) for s in scores} == {
                s.image_id: (images[s.image_id].captured_at, images[s.image_id].source_id) for s in scores
            }
            return {s.image_id: (s.captured_at, s.source_id) for s in scores}

    written = copies()
    assert {source_id for _, source_id in written.values()} == {source, None}
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    open_store(store_url)  # the upgrade fills the copies of rows written before them
    assert copies() == written


def test_registry_sources_quarantine_and_champion(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    assert ensure_source(engine, "cam-1", "line-A") == ensure_source(engine, "cam-1", "line-A")
    assert ensure_source(engine, "cam-1", "line-B") != ensure_source(engine, "cam-1", "line-A")  # moved: a new source
    with pytest.raises(ValueError, match="a source needs a camera and a line"):
        ensure_source(engine, "cam-1", "")
    folder = model_dir(tmp_path, "m", "a")
    first = register_model(engine, folder, base_model="tiny", metrics={"map50": 0.4})
    assert register_model(engine, folder, base_model="tiny").id == first.id  # same weights, same version
    assert champion(engine) is None
    promote_model(engine, first.id, {"promoted_map50": 0.4})
    best = champion(engine)
    assert best.id == first.id and best.metrics == {"map50": 0.4, "promoted_map50": 0.4}
    with pytest.raises(KeyError, match="no model version 999"):
        promote_model(engine, 999)
    quarantine(engine, "/frames/broken.jpg", "truncated JPEG", stage="score")
    with Session(engine) as session:
        entry = session.exec(select(QuarantineEntry)).one()
        assert (entry.path, entry.reason, entry.stage) == ("/frames/broken.jpg", "truncated JPEG", "score")
        assert session.exec(select(ModelVersion)).one().name.startswith("m@")


def test_an_unreachable_database_gets_bounded_retries_then_a_clear_error() -> None:
    calls = []

    def refuse() -> None:
        calls.append(1)
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    with pytest.raises(StoreUnavailableError, match="writing a batch: the results store failed 3 times; last error: connection refused"):
        with_retries(refuse, "writing a batch", attempts=3, base_delay_s=0.001)
    assert len(calls) == 3


def test_open_store_on_a_down_server_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("inspect_core.store.engine.RETRY_BASE_DELAY_S", 0.01)
    with pytest.raises(StoreUnavailableError, match="opening postgresql\\+psycopg://u:\\*\\*\\*@127.0.0.1:1/db"):
        open_store("postgresql+psycopg://u:secret@127.0.0.1:1/db")


def test_ingested_frames_register_once_and_wait_for_scoring(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    source = ensure_source(engine, "cam-1", "line-A")
    frames = [scored(i, source, detections=0) for i in (3, 1, 2)]
    ids = register_frames(engine, frames)
    assert register_frames(engine, frames[:1] + [scored(4, None, detections=0)]).keys() == {f"{3:064x}", f"{4:064x}"}
    assert ids[f"{3:064x}"] == register_frames(engine, frames[:1])[f"{3:064x}"]
    model = register_model(engine, model_dir(tmp_path, "m", "a"), base_model="tiny")
    assert [i.path for i in unscored_images(engine, model.id)] == ["/frames/1.png", "/frames/2.png", "/frames/3.png", "/frames/4.png"]
    write_scored_batch(engine, start_run(engine, model.id, "cfg", 1), model.id, [scored(2, source)])
    assert [i.path for i in unscored_images(engine, model.id, limit=2)] == ["/frames/1.png", "/frames/3.png"]
    quarantine(engine, "/frames/1.png", "cannot read image 1.png: file vanished", stage="score")
    assert [i.path for i in unscored_images(engine, model.id)] == ["/frames/3.png", "/frames/4.png"]


def test_postgresql_sessions_run_report_queries_without_jit(postgres_url: str) -> None:
    engine = open_store(postgres_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SHOW jit")).scalar() == "off"
