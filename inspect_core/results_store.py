"""The SQL results store: what was scored, by which model, and which defects it found.

SQLModel tables on SQLite (a file, WAL mode: readers never block the scorer) or PostgreSQL (by URL).
The schema is created and upgraded only by Alembic migrations (``inspect_core/store_migrations``),
so a plant's database follows the code from the first version on.

Exactly-once scoring: an image's detections and its ``image_scores`` row (unique per image and model
version) are written in one transaction. A scorer killed mid-batch loses only that uncommitted batch;
started again it skips what is already scored, so every image ends up scored exactly once.

Detections carry copies of their image's ``captured_at`` and ``source_id``: report filters (time,
line, camera, class, model) then run on one table and its indexes, with no join, over millions of rows.
Times are timezone-aware (stored and returned as UTC); a naive datetime is refused.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import JSON, Column, Field, Session, SQLModel, select

from inspect_core.annotations import Box, Polygon

MIGRATIONS_DIR = Path(__file__).with_name("store_migrations")
DAY_COUNT_BINS = 20  # confidence bins of the day counts, 0.05 wide
NO_SOURCE = 0  # the day counts' source key of detections without a camera
RETRY_ATTEMPTS = 5
RETRY_BASE_DELAY_S = 0.2
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Source(SQLModel, table=True):
    """A camera over a line (or a folder a line-scan system writes into)."""

    __tablename__ = "sources"
    id: int | None = Field(default=None, primary_key=True)
    camera: str = Field(index=True, unique=True)
    line: str = Field(index=True)


class ImageRecord(SQLModel, table=True):
    __tablename__ = "images"
    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(unique=True, max_length=64)
    path: str
    width: int
    height: int
    captured_at: datetime = Field(index=True)
    source_id: int | None = Field(default=None, foreign_key="sources.id", index=True)
    registered_at: datetime = Field(default_factory=utc_now)


class ModelVersion(SQLModel, table=True):
    """The model registry: every model that scored anything, and which one is the promoted champion."""

    __tablename__ = "model_versions"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    path: str
    base_model: str
    adapter: str | None = None
    weights_sha256: str = Field(index=True, max_length=64)
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now)
    promoted_at: datetime | None = Field(default=None, index=True)


class ScoringRun(SQLModel, table=True):
    __tablename__ = "scoring_runs"
    id: int | None = Field(default=None, primary_key=True)
    model_version_id: int = Field(foreign_key="model_versions.id", index=True)
    config_hash: str = Field(max_length=64)
    started_at: datetime = Field(default_factory=utc_now)
    finished_at: datetime | None = None
    status: str = "running"  # running | completed | failed
    images_total: int = 0
    images_scored: int = 0
    images_skipped: int = 0  # already scored by this model version
    images_quarantined: int = 0
    detections: int = 0
    error: str | None = None


class ImageScore(SQLModel, table=True):
    """One row per (image, model version): the marker that makes scoring exactly-once.

    Carries copies of its image's capture time and camera, as detections do, so the defect rate per
    line counts scorings without joining every image (PostgreSQL, 100k images: p95 103 -> 37 ms;
    benchmarks/store_throughput.py).
    """

    __tablename__ = "image_scores"
    __table_args__ = (
        sa.UniqueConstraint("image_id", "model_version_id", name="uq_image_scores_image_model"),
        sa.Index("ix_image_scores_captured", "captured_at", "source_id", "model_version_id", "detections"),
    )
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id")
    model_version_id: int = Field(foreign_key="model_versions.id")
    run_id: int = Field(foreign_key="scoring_runs.id", index=True)
    scored_at: datetime = Field(default_factory=utc_now)
    detections: int = 0
    captured_at: datetime
    source_id: int | None = None


class DetectionRecord(SQLModel, table=True):
    """One defect found on one image by one model version.

    Three indexes, each carrying every report filter column so reports read the index alone, never
    the table (``inspect_core.reports``; benchmarks/store_throughput.py): captured_at first for time
    windows and newest-first lists, class_name first for one class, image_id first for an image's
    defects. More indexes cost insert rate; a camera, line or model filter is checked inside these.
    """

    __tablename__ = "detections"
    __table_args__ = (
        sa.Index("ix_detections_captured", "captured_at", "source_id", "model_version_id", "class_name", "confidence"),
        sa.Index("ix_detections_class_captured", "class_name", "captured_at", "source_id", "model_version_id", "confidence"),
        sa.Index("ix_detections_image", "image_id", "model_version_id", "class_name", "confidence"),
    )
    id: int | None = Field(default=None, primary_key=True)
    # run, model version and source are copies checked where they are written (image_scores, images):
    # foreign keys on them cost half the PostgreSQL insert rate and guard nothing more.
    run_id: int
    image_id: int = Field(foreign_key="images.id")
    model_version_id: int
    source_id: int | None = None
    captured_at: datetime
    class_name: str
    confidence: float
    x1: float
    y1: float
    x2: float
    y2: float
    nx1: float
    ny1: float
    nx2: float
    ny2: float
    polygon: list[list[float]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class DetectionDayCount(SQLModel, table=True):
    """Detections per UTC day, camera, model version, class and confidence bin.

    Written in the same transaction as the detections they count (``insert_detections``), so they
    never drift. Report aggregates over months (per day, per class, confidence histogram) read these
    instead of millions of detections; ``inspect_core.reports`` takes only a filter's partial edge
    days and confidence bins from the detections themselves, so its answers stay exact.
    """

    __tablename__ = "detection_day_counts"
    day: date = Field(primary_key=True)
    source_key: int = Field(primary_key=True)  # the source id, NO_SOURCE for detections without one
    model_version_id: int = Field(primary_key=True)
    class_name: str = Field(primary_key=True)
    confidence_bin: int = Field(primary_key=True)  # floor(confidence * DAY_COUNT_BINS), the top bin holding 1.0
    n: int
    confidence_sum: float
    confidence_max: float


def confidence_bin(confidence: float) -> int:
    """The day-count bin of a confidence; SQL computes the same floor of the same float product."""
    return min(int(confidence * DAY_COUNT_BINS), DAY_COUNT_BINS - 1)


class QuarantineEntry(SQLModel, table=True):
    """A file that could not be used, and why; the batch it came with went on without it."""

    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    path: str
    reason: str
    stage: str  # ingest | score
    sha256: str | None = Field(default=None, max_length=64)
    run_id: int | None = Field(default=None, foreign_key="scoring_runs.id")
    created_at: datetime = Field(default_factory=utc_now, index=True)


class StoreUnavailableError(RuntimeError):
    """The database could not be reached or stayed locked through every retry."""


def with_retries(operation: Callable[[], T], what: str, attempts: int | None = None, base_delay_s: float | None = None) -> T:
    """Run ``operation`` (one whole transaction), retrying a down or locked database with backoff.

    Only ``OperationalError`` (connection refused, database locked, server gone) is retried: the
    transaction was rolled back, so running it again is safe. Anything else is a bug and raises at once.
    """
    attempts = attempts or RETRY_ATTEMPTS
    base_delay_s = RETRY_BASE_DELAY_S if base_delay_s is None else base_delay_s
    for attempt in range(attempts):
        try:
            return operation()
        except sa.exc.OperationalError as error:
            if attempt == attempts - 1:
                raise StoreUnavailableError(f"{what}: the results store failed {attempts} times; last error: {error.orig}") from error
            time.sleep(base_delay_s * 2**attempt)
    raise AssertionError("unreachable")


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created, and WAL with a busy timeout is set; PostgreSQL runs without JIT."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Report queries are short: PostgreSQL's JIT compiled the ones over 1M detections for longer than
    # they ran (defect rate per line for one class over 30 days: p50 75 -> 49 ms without it).
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10, "options": "-c jit=off"})


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (creates it on an empty database)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def open_store(url: str) -> Engine:
    """Connect to the store at ``url`` and upgrade its schema; retried while the database is down."""
    engine = create_store_engine(url)
    with_retries(lambda: migrate(engine), f"opening {sa.engine.make_url(url).render_as_string(hide_password=True)}")
    return engine


def _insert_ignoring_duplicates(engine: Engine, table: sa.Table) -> Any:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


# ---------------------------------------------------------------------------------------------
# Sources and models


def ensure_source(engine: Engine, camera: str, line: str) -> int:
    """The id of camera ``camera`` (created on first use); its line is updated if it moved."""

    def run() -> int:
        with Session(engine) as session:
            source = session.exec(select(Source).where(Source.camera == camera)).first()
            if source is None:
                source = Source(camera=camera, line=line)
            source.line = line
            session.add(source)
            session.commit()
            return int(source.id)

    return with_retries(run, f"registering camera {camera!r}")


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over a model folder's weight and config files: same files, same model version."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.suffix in {".safetensors", ".bin", ".json", ".onnx"}:
            digest.update(path.relative_to(model_dir).as_posix().encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def register_model(
    engine: Engine, model_dir: Path, base_model: str, adapter: str | None = None, metrics: dict[str, Any] | None = None,
    name: str | None = None,
) -> ModelVersion:  # fmt: skip
    """The registry entry for the model in ``model_dir``, created the first time its weights are seen."""
    fingerprint = weights_fingerprint(model_dir)

    def run() -> ModelVersion:
        with Session(engine) as session:
            existing = session.exec(select(ModelVersion).where(ModelVersion.weights_sha256 == fingerprint)).first()
            if existing is not None:
                return existing
            version = ModelVersion(
                name=name or f"{model_dir.name}@{fingerprint[:12]}", path=str(model_dir), base_model=base_model, adapter=adapter,
                weights_sha256=fingerprint, metrics=metrics or {},
            )  # fmt: skip
            session.add(version)
            session.commit()
            session.refresh(version)
            return version

    return with_retries(run, f"registering model {model_dir}")


def promote_model(engine: Engine, model_version_id: int, metrics: dict[str, Any] | None = None) -> None:
    """Make a model version the champion (the latest promoted one is the champion)."""

    def run() -> None:
        with Session(engine) as session:
            version = session.get(ModelVersion, model_version_id)
            if version is None:
                raise KeyError(f"no model version {model_version_id} in the store")
            version.promoted_at = utc_now()
            if metrics is not None:
                version.metrics = {**version.metrics, **metrics}
            session.add(version)
            session.commit()

    with_retries(run, f"promoting model version {model_version_id}")


def champion(engine: Engine) -> ModelVersion | None:
    with Session(engine) as session:
        statement = select(ModelVersion).where(ModelVersion.promoted_at.is_not(None)).order_by(ModelVersion.promoted_at.desc())
        return session.exec(statement).first()


# ---------------------------------------------------------------------------------------------
# Scoring runs


@dataclass(frozen=True, slots=True)
class StoredDetection:
    class_name: str
    confidence: float
    box: Box  # pixels of the original image
    polygon: Polygon | None = None


@dataclass(frozen=True, slots=True)
class ScoredImage:
    sha256: str
    path: str
    width: int
    height: int
    captured_at: datetime
    source_id: int | None
    detections: Sequence[StoredDetection] = field(default_factory=tuple)


def start_run(engine: Engine, model_version_id: int, config_hash: str, images_total: int) -> int:
    def run() -> int:
        with Session(engine) as session:
            record = ScoringRun(model_version_id=model_version_id, config_hash=config_hash, images_total=images_total)
            session.add(record)
            session.commit()
            return int(record.id)

    return with_retries(run, "starting a scoring run")


def finish_run(engine: Engine, run_id: int, status: str, error: str | None = None) -> ScoringRun:
    """Close a run; its counts are recomputed from the rows it wrote, so they cannot drift."""

    def run() -> ScoringRun:
        with Session(engine) as session:
            record = session.get(ScoringRun, run_id)
            scored = session.exec(
                select(sa.func.count(), sa.func.coalesce(sa.func.sum(ImageScore.detections), 0)).where(ImageScore.run_id == run_id)
            ).one()
            record.images_scored, record.detections = int(scored[0]), int(scored[1])
            record.images_quarantined = session.exec(select(sa.func.count()).where(QuarantineEntry.run_id == run_id)).one()
            record.status, record.error, record.finished_at = status, error, utc_now()
            session.add(record)
            session.commit()
            session.refresh(record)
            return record

    return with_retries(run, f"finishing scoring run {run_id}")


def add_skipped(engine: Engine, run_id: int, count: int) -> None:
    def run() -> None:
        with engine.begin() as connection:
            table = ScoringRun.__table__
            connection.execute(sa.update(table).where(table.c.id == run_id).values(images_skipped=table.c.images_skipped + count))

    with_retries(run, f"counting skipped images of run {run_id}")


def already_scored(engine: Engine, model_version_id: int, hashes: Iterable[str]) -> set[str]:
    """Which of these image hashes this model version has scored before."""
    hashes = list(hashes)
    if not hashes:
        return set()

    def run() -> set[str]:
        with Session(engine) as session:
            statement = (
                select(ImageRecord.sha256)
                .join(ImageScore, ImageScore.image_id == ImageRecord.id)
                .where(ImageScore.model_version_id == model_version_id, ImageRecord.sha256.in_(hashes))
            )
            return set(session.exec(statement).all())

    return with_retries(run, "looking up scored images")


def register_images(connection: sa.Connection, engine: Engine, images: Sequence[ScoredImage]) -> dict[str, int]:
    """Insert the images not yet known (by content hash); sha256 -> image id for all of them."""
    table = ImageRecord.__table__
    now = utc_now()
    rows = [
        {"sha256": i.sha256, "path": i.path, "width": i.width, "height": i.height, "captured_at": i.captured_at,
         "source_id": i.source_id, "registered_at": now}
        for i in images
    ]  # fmt: skip
    if rows:
        connection.execute(_insert_ignoring_duplicates(engine, table), rows)
    found = connection.execute(sa.select(table.c.sha256, table.c.id).where(table.c.sha256.in_([i.sha256 for i in images])))
    return dict(found.all())


def register_frames(engine: Engine, frames: Sequence[ScoredImage]) -> dict[str, int]:
    """Register ingested frames (not yet scored) in one transaction; a frame already known keeps its row.

    Returns sha256 -> image id. Re-copied files (same content) are not registered twice.
    """

    def run() -> dict[str, int]:
        with engine.begin() as connection:
            return register_images(connection, engine, frames)

    return with_retries(run, "registering frames")


def unscored_images(engine: Engine, model_version_id: int, limit: int | None = None) -> list[ImageRecord]:
    """Registered images this model version has not scored yet, oldest capture first.

    Images whose file scoring already quarantined (gone, unreadable) are left out: retried every
    few minutes they would fill the batch and starve the new frames.
    """

    def run() -> list[ImageRecord]:
        with Session(engine) as session:
            scored = select(ImageScore.image_id).where(ImageScore.model_version_id == model_version_id)
            broken = select(QuarantineEntry.path).where(QuarantineEntry.stage == "score")
            statement = (
                select(ImageRecord)
                .where(ImageRecord.id.not_in(scored), ImageRecord.path.not_in(broken))
                .order_by(ImageRecord.captured_at)
                .limit(limit)
            )
            return list(session.exec(statement).all())

    return with_retries(run, "listing unscored images")


def write_scored_batch(engine: Engine, run_id: int, model_version_id: int, images: Sequence[ScoredImage]) -> int:
    """Store one batch in one transaction; images this model already scored are left as they were.

    Returns the number of images newly scored. Retried as a whole if the database is down or locked.
    """

    def run() -> int:
        with engine.begin() as connection:
            ids = register_images(connection, engine, images)
            scores = ImageScore.__table__
            done = set(
                connection.execute(
                    sa.select(scores.c.image_id).where(scores.c.model_version_id == model_version_id, scores.c.image_id.in_(ids.values()))
                ).scalars()
            )
            fresh = [i for i in {i.sha256: i for i in images}.values() if ids[i.sha256] not in done]
            if not fresh:
                return 0
            now = utc_now()
            connection.execute(
                scores.insert(),
                [{"image_id": ids[i.sha256], "model_version_id": model_version_id, "run_id": run_id, "scored_at": now,
                  "detections": len(i.detections), "captured_at": i.captured_at, "source_id": i.source_id} for i in fresh],
            )  # fmt: skip
            rows = [detection_row(run_id, model_version_id, ids[i.sha256], i, d) for i in fresh for d in i.detections]
            if rows:
                insert_detections(connection, rows)
            return len(fresh)

    return with_retries(run, f"writing a batch of run {run_id}")


def insert_detections(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Bulk-insert detection rows: a binary COPY on PostgreSQL, one driver executemany of plain tuples on SQLite.

    SQLAlchemy's executemany re-processes every parameter of every row in Python, and on PostgreSQL
    sends one INSERT per row; with 10k detections per batch that held the store below its insert
    targets (benchmarks/store_throughput.py). The day counts are added first, in the same transaction.
    ``rows`` (from ``detection_row``) are converted in place,
    times as the column type would (an image's detections share one); a missing polygon is SQL NULL.
    """
    add_day_counts(connection, rows)
    table = DetectionRecord.__table__
    names = [column.name for column in table.c if column.name != "id"]
    stamp = lru_cache(maxsize=None)(table.c.captured_at.type.dialect_impl(connection.dialect).bind_processor(connection.dialect))
    postgres = connection.dialect.name == "postgresql"
    for row in rows:
        row["captured_at"] = stamp(row["captured_at"])
        if not postgres and row["polygon"] is not None:  # psycopg's binary JSON dumper serialises the list itself
            row["polygon"] = json.dumps(row["polygon"])
    values = map(itemgetter(*names), rows)
    if not postgres:
        connection.exec_driver_sql(str(table.insert().compile(dialect=connection.dialect, column_keys=names)), list(values))
        return
    types = dict(connection.execute(sa.text("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = 'detections'::regclass")).all())
    with (
        connection.connection.driver_connection.cursor() as cursor,
        cursor.copy(f"COPY detections ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types([types[name] for name in names])
        for value in values:
            copy.write_row(value)


def add_day_counts(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Add detection rows (from ``detection_row``, not yet converted) to ``detection_day_counts``.

    One upsert row per (day, camera, model, class, bin), in key order so concurrent scorers on
    PostgreSQL lock shared keys in the same order and cannot deadlock.
    """
    counts: dict[tuple[date, int, int, str, int], list[float]] = {}
    for row in rows:
        confidence = float(row["confidence"])
        key = (
            row["captured_at"].astimezone(timezone.utc).date(), row["source_id"] or NO_SOURCE, row["model_version_id"],
            row["class_name"], confidence_bin(confidence),
        )  # fmt: skip
        total = counts.setdefault(key, [0, 0.0, confidence])
        total[0] += 1
        total[1] += confidence
        total[2] = max(total[2], confidence)
    if not counts:
        return
    table = DetectionDayCount.__table__
    postgres = connection.dialect.name == "postgresql"
    statement = (postgresql if postgres else sqlite).insert(table)
    highest = sa.func.greatest if postgres else sa.func.max  # SQLite's two-argument max() is scalar
    statement = statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key],
        set_={
            "n": table.c.n + statement.excluded.n,
            "confidence_sum": table.c.confidence_sum + statement.excluded.confidence_sum,
            "confidence_max": highest(table.c.confidence_max, statement.excluded.confidence_max),
        },
    )
    names = ("day", "source_key", "model_version_id", "class_name", "confidence_bin")
    connection.execute(
        statement,
        [{**dict(zip(names, key)), "n": int(n), "confidence_sum": total, "confidence_max": top}
         for key, (n, total, top) in sorted(counts.items())],
    )  # fmt: skip


def detection_row(run_id: int, model_version_id: int, image_id: int, image: ScoredImage, detection: StoredDetection) -> dict[str, Any]:
    x1, y1, x2, y2 = detection.box
    return {
        "run_id": run_id, "image_id": image_id, "model_version_id": model_version_id, "source_id": image.source_id,
        "captured_at": image.captured_at, "class_name": detection.class_name, "confidence": float(detection.confidence),
        "x1": x1, "y1": y1, "x2": x2, "y2": y2,
        "nx1": x1 / image.width, "ny1": y1 / image.height, "nx2": x2 / image.width, "ny2": y2 / image.height,
        "polygon": [list(p) for p in detection.polygon] if detection.polygon else None,
    }  # fmt: skip


def quarantine(engine: Engine, path: str, reason: str, stage: str, run_id: int | None = None, sha256: str | None = None) -> None:
    """Record a file that could not be used; nothing else in its batch is affected."""

    def run() -> None:
        with Session(engine) as session:
            session.add(QuarantineEntry(path=path, reason=reason, stage=stage, run_id=run_id, sha256=sha256))
            session.commit()

    with_retries(run, f"quarantining {path}")
