"""The results store's tables: what was scored, by which model, and which defects it found.

The schema is created and upgraded only by Alembic migrations (``inspect_core/store/migrations``),
so a plant's database follows the code from the first version on; these models are what the
migrations must build (a test compares them).

Exactly-once scoring: an image's detections and its ``image_scores`` row (unique per image and model
version) are written in one transaction (``inspect_core.store.writes``).

Detections and image scores carry copies of their image's ``captured_at`` and ``source_id``, taken
from the image's registered row: report filters (time, line, camera, class, model) then run on one
table and its indexes, with no join, over millions of rows. A source is one (camera, line) pair, so a
camera moved to another line gets a new source and its earlier frames stay on the line they were
captured on. Times are timezone-aware (stored and returned as UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from inspect_core.data.annotations import Box, Polygon

DAY_COUNT_BINS = 20  # confidence bins of the day counts, 0.05 wide
NO_SOURCE = 0  # the day counts' source key of detections without a camera


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Source(SQLModel, table=True):
    """A camera over a line (or a folder a line-scan system writes into): one row per (camera, line).

    A camera moved to another line gets a new row, so the frames it captured before keep their line.
    Filtering by camera matches all of that camera's rows.
    """

    __tablename__ = "sources"
    __table_args__ = (sa.Index("ix_sources_camera_line", "camera", "line", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    camera: str
    line: str = Field(index=True)


class ImageRecord(SQLModel, table=True):
    """A registered image: its content hash, absolute path, capture time and the source it was captured by."""

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
    """One scoring run. ``host``, ``pid`` and ``heartbeat_at`` (touched by every batch) tell a run whose
    process is gone (kill -9, a lost machine) from one still working: the next run to start marks the
    gone ones ``abandoned`` (``inspect_core.store.runs``) instead of leaving them ``running`` for ever.
    """

    __tablename__ = "scoring_runs"
    id: int | None = Field(default=None, primary_key=True)
    model_version_id: int = Field(foreign_key="model_versions.id", index=True)
    config_hash: str = Field(max_length=64)
    started_at: datetime = Field(default_factory=utc_now)
    finished_at: datetime | None = None
    status: str = "running"  # running | completed | failed | abandoned
    host: str | None = None  # the machine the scoring process ran on
    pid: int | None = None  # its process id there
    heartbeat_at: datetime | None = None  # the last batch it wrote (or its start)
    images_total: int = 0
    images_scored: int = 0
    images_skipped: int = 0  # already scored by this model version
    images_quarantined: int = 0
    detections: int = 0  # stored (down to the run's storage floor)
    defects: int = 0  # stored at or above the run's operating thresholds
    error: str | None = None
    # The operating thresholds the run applied (``inspect_core.inference.thresholds``), its storage floor and
    # the labels it dropped as outside the model's vocabulary; NULL for runs from before thresholds were recorded.
    thresholds: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class ImageScore(SQLModel, table=True):
    """One row per (image, model version): the marker that makes scoring exactly-once.

    Carries copies of its image's capture time and camera, as detections do, so the defect rate per
    line counts scorings without joining every image (PostgreSQL, 100k images: p95 103 -> 37 ms;
    benchmarks/store_throughput.py).
    """

    __tablename__ = "image_scores"
    __table_args__ = (
        sa.UniqueConstraint("image_id", "model_version_id", name="uq_image_scores_image_model"),
        sa.Index("ix_image_scores_captured", "captured_at", "source_id", "model_version_id", "defects"),
    )
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id")
    model_version_id: int = Field(foreign_key="model_versions.id")
    run_id: int = Field(foreign_key="scoring_runs.id", index=True)
    scored_at: datetime = Field(default_factory=utc_now)
    detections: int = 0  # stored
    defects: int = 0  # operating: the image counts as defective when this is above 0
    captured_at: datetime
    source_id: int | None = None


class DetectionRecord(SQLModel, table=True):
    """One defect found on one image by one model version.

    Four indexes, each carrying every report filter column so reports read the index alone, never
    the table (``inspect_core.store.reports``; benchmarks/store_throughput.py): captured_at first for time
    windows and newest-first lists, class_name first for one class, image_id first for an image's
    defects, and the operating detections alone (partial) for the time charts. More indexes cost insert rate; a camera,
    line or model filter is checked inside these.
    """

    __tablename__ = "detections"
    __table_args__ = (
        sa.Index("ix_detections_captured", "captured_at", "source_id", "model_version_id", "class_name", "confidence", "operating"),
        sa.Index("ix_detections_class_captured", "class_name", "captured_at", "source_id", "model_version_id", "confidence", "operating"),
        sa.Index("ix_detections_image", "image_id", "model_version_id", "class_name", "confidence", "operating"),
        # the operating detections only (a partial index), for the dashboard's time charts: migration 0008
        sa.Index(
            "ix_detections_operating",
            "operating",
            "captured_at",
            "source_id",
            "model_version_id",
            "class_name",
            "confidence",
            sqlite_where=sa.text("operating = 1"),
            postgresql_where=sa.text("operating = true"),
        ),
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
    # At or above the operating threshold of its class when scored: what reports count as a defect by default.
    operating: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    x1: float
    y1: float
    x2: float
    y2: float
    nx1: float
    ny1: float
    nx2: float
    ny2: float
    polygon: list[list[float]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class SupersededDetection(SQLModel, table=True):
    """A detection replaced by a rescoring (``score --rescore``): what an earlier run of the same model
    version said about the image, kept for history. Reports read ``detections``, the latest run per
    image and model; ``superseded_by_run`` is the run that replaced it."""

    __tablename__ = "superseded_detections"
    id: int = Field(primary_key=True)  # the id it had in ``detections``
    run_id: int = Field(index=True)
    image_id: int = Field(index=True)
    model_version_id: int
    source_id: int | None = None
    captured_at: datetime
    class_name: str
    confidence: float
    operating: bool
    x1: float
    y1: float
    x2: float
    y2: float
    nx1: float
    ny1: float
    nx2: float
    ny2: float
    polygon: list[list[float]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    superseded_by_run: int = Field(index=True)
    superseded_at: datetime = Field(default_factory=utc_now)


class DetectionDayCount(SQLModel, table=True):
    """Detections per UTC day, camera, model version, class, confidence bin and operating flag.

    Written in the same transaction as the detections they count (``insert_detections``), so they
    never drift. Report aggregates over months (per day, per class, confidence histogram) read these
    instead of millions of detections; ``inspect_core.store.reports`` takes only a filter's partial edge
    days and confidence bins from the detections themselves, so its answers stay exact.
    """

    __tablename__ = "detection_day_counts"
    day: date = Field(primary_key=True)
    source_key: int = Field(primary_key=True)  # the source id, NO_SOURCE for detections without one
    model_version_id: int = Field(primary_key=True)
    class_name: str = Field(primary_key=True)
    confidence_bin: int = Field(primary_key=True)  # floor(confidence * DAY_COUNT_BINS), the top bin holding 1.0
    operating: bool = Field(primary_key=True)  # counts of operating detections and of those stored below the threshold apart
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


# ---------------------------------------------------------------------------------------------
# What callers hand the store to write (plain values: they travel to Dask workers)


@dataclass(frozen=True, slots=True)
class StoredDetection:
    class_name: str
    confidence: float
    box: Box  # pixels of the original image
    polygon: Polygon | None = None
    operating: bool = True  # at or above the run's operating threshold for its class


@dataclass(frozen=True, slots=True)
class ScoredImage:
    """An image to register (and, with detections, to store as scored).

    ``path`` must be absolute, so reports find the file from any working directory. ``captured_at``
    and ``source_id`` are used only when the image is new to the store: an image registered before
    (by folder ingest, say) keeps its own capture time and line.
    """

    sha256: str
    path: str
    width: int
    height: int
    captured_at: datetime
    source_id: int | None
    detections: Sequence[StoredDetection] = field(default_factory=tuple)
