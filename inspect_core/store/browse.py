"""Reads a person browsing the store needs (the inspection app): the model registry, filter choices, the frames
behind a chart, a registered image's file.

Kept beside ``reports`` and built on its filter (``ReportFilter``, the same conditions), so a chart and the
frames listed behind it can never disagree: the frames of a per-line bar are the images that bar counted
as defective, by the same detections. An image's file is looked up by its id only: the app never lets a
path from a browser reach the file system, it asks the store which file a registered image is.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from inspect_core.store.engine import with_retries
from inspect_core.store.reports import _C, _D, _I, _M, _S, ReportFilter, _detection_conditions, _frame
from inspect_core.store.schema import ModelVersion

FRAME_COLUMNS = ("image_id", "model_version_id", "captured_at", "camera", "line", "model", "image_path", "image_width", "image_height")


@dataclass(frozen=True)
class FilterChoices:
    """The values a dashboard filter can take: what the store holds, sorted."""

    lines: list[str]
    cameras: list[str]
    classes: list[str]
    models: list[str]


def _scalars(engine: Engine, statement: sa.Select, what: str) -> list:
    def run() -> list:
        with engine.connect() as connection:
            return list(connection.execute(statement).scalars().all())

    return with_retries(run, what)


def model_versions(engine: Engine) -> list[ModelVersion]:
    """Every registered model version, the newest first (the registry the app's model picker offers)."""

    def run() -> list[ModelVersion]:
        with Session(engine) as session:
            return list(session.exec(select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())).all())

    return with_retries(run, "listing model versions")


def filter_choices(engine: Engine) -> FilterChoices:
    """Lines, cameras, classes and model names present in the store.

    Classes come from the day counts (one row per day, camera, model, class and bin), not from the
    detections: the same answer from a table orders of magnitude smaller.
    """
    lines = _scalars(engine, sa.select(_S.c.line).distinct().order_by(_S.c.line), "listing lines")
    cameras = _scalars(engine, sa.select(_S.c.camera).distinct().order_by(_S.c.camera), "listing cameras")
    classes = _scalars(engine, sa.select(_C.c.class_name).distinct().order_by(_C.c.class_name), "listing classes")
    models = _scalars(engine, sa.select(_M.c.name).order_by(_M.c.name), "listing models")
    return FilterChoices(lines, cameras, classes, models)


def image_file(engine: Engine, image_id: int) -> str | None:
    """The file of registered image ``image_id``, or None when there is no such image."""
    found = _scalars(engine, sa.select(_I.c.path).where(_I.c.id == image_id), f"looking up image {image_id}")
    return found[0] if found else None


def recent_images(engine: Engine, limit: int = 50) -> pd.DataFrame:
    """The newest registered images (id, path, capture time, camera, line), newest first."""
    statement = (
        sa.select(_I.c.id.label("image_id"), _I.c.path.label("image_path"), _I.c.captured_at, _S.c.camera, _S.c.line)
        .select_from(_I.outerjoin(_S, _S.c.id == _I.c.source_id))
        .order_by(_I.c.captured_at.desc(), _I.c.id.desc())
        .limit(limit)
    )
    frame = _frame(engine, statement, "listing recent images")
    frame["captured_at"] = pd.to_datetime(frame["captured_at"], utc=True)
    return frame


def frames(engine: Engine, flt: ReportFilter, limit: int = 24, confidence: tuple[float, float] | None = None) -> pd.DataFrame:
    """The newest ``limit`` frames (image, model version) with a detection matching ``flt``, and those detections.

    One row per matching detection of those frames (the ``FRAME_COLUMNS``, then class, confidence and the
    normalised box), newest frame first. These are the frames a report counts as defective under the same
    filter: a per-line bar's, a day's or (with ``confidence`` = [low, high)) a histogram bin's.
    """
    conditions = _detection_conditions(flt)
    if confidence is not None:
        conditions += [_D.c.confidence >= confidence[0], _D.c.confidence < confidence[1]]
    newest = sa.func.max(_D.c.captured_at).label("newest")
    picked = (
        sa.select(_D.c.image_id, _D.c.model_version_id, newest)
        .where(*conditions)
        .group_by(_D.c.image_id, _D.c.model_version_id)
        .order_by(newest.desc(), _D.c.image_id.desc(), _D.c.model_version_id)
        .limit(limit)
        .subquery()
    )
    statement = (
        sa.select(
            picked.c.image_id, picked.c.model_version_id, _I.c.captured_at, _S.c.camera, _S.c.line, _M.c.name.label("model"),
            _I.c.path.label("image_path"), _I.c.width.label("image_width"), _I.c.height.label("image_height"),
            _D.c.class_name, _D.c.confidence, _D.c.nx1, _D.c.ny1, _D.c.nx2, _D.c.ny2,
        )
        .select_from(
            picked.join(_D, sa.and_(_D.c.image_id == picked.c.image_id, _D.c.model_version_id == picked.c.model_version_id))
            .join(_I, _I.c.id == _D.c.image_id).join(_M, _M.c.id == _D.c.model_version_id).outerjoin(_S, _S.c.id == _D.c.source_id)
        )
        .where(*conditions)
        .order_by(picked.c.newest.desc(), picked.c.image_id.desc(), picked.c.model_version_id, _D.c.confidence.desc())
    )  # fmt: skip
    frame = _frame(engine, statement, "listing the frames behind a chart")
    frame["captured_at"] = pd.to_datetime(frame["captured_at"], utc=True)
    return frame
