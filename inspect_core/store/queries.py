"""Reads of the results store that drive work (which model, what to score, what is known); reports are in ``reports``.

Each function is one read under the store's retry policy: a database restart while the scorer or the
folder watcher asks is waited out just as a write is.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from inspect_core.store.engine import with_retries
from inspect_core.store.schema import ImageRecord, ImageScore, ModelVersion, QuarantineEntry


def champion(engine: Engine) -> ModelVersion | None:
    """The promoted model version (the latest promoted one), or None before any promotion."""

    def run() -> ModelVersion | None:
        with Session(engine) as session:
            statement = select(ModelVersion).where(ModelVersion.promoted_at.is_not(None)).order_by(ModelVersion.promoted_at.desc())
            return session.exec(statement).first()

    return with_retries(run, "looking up the champion model")


def model_version(engine: Engine, model_version_id: int) -> ModelVersion:
    """The registry entry ``model_version_id``; ``KeyError`` when there is none."""

    def run() -> ModelVersion | None:
        with Session(engine) as session:
            return session.get(ModelVersion, model_version_id)

    version = with_retries(run, f"looking up model version {model_version_id}")
    if version is None:
        raise KeyError(f"no model version {model_version_id} in the store")
    return version


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


def known_hashes(engine: Engine, hashes: Iterable[str]) -> set[str]:
    """Which of these content hashes are registered images (a file copied in again is not new)."""
    hashes = list(hashes)
    if not hashes:
        return set()

    def run() -> set[str]:
        with Session(engine) as session:
            return set(session.exec(select(ImageRecord.sha256).where(ImageRecord.sha256.in_(hashes))).all())

    return with_retries(run, "looking up known images")


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
