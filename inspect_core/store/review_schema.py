"""The review tables: what reviewers said about the model's detections, next to (never over) what the model said.

A frame under review is one (image, model version) pair, the unit the results store scores. Every reviewer
action is a row of ``reviews`` (accept, reject or relabel a detection, add a box the model missed, mark the
frame clean), so "model said" (``detections``) and "reviewer said" (``reviews``) both stay queryable and a
review never rewrites a detection. What a frame's reviews add up to is derived from the log
(``inspect_core.store.reviews``): the latest verdict per box, a ``clean`` rejecting everything before it.

Concurrent reviewers: ``review_frames`` holds one row per reviewed frame with a version that every write
raises by one, compare-and-set (``UPDATE ... WHERE version = <the version the reviewer saw>``), so a
reviewer whose page is stale is told who changed the frame and when instead of silently overwriting them.

``reviews.detection_id`` names a row of ``detections`` without a foreign key: a rescoring moves replaced
detections to ``superseded_detections`` (keeping their ids), and the review of such a detection stays in
the log. The box a review judged is copied into the row, so the log is readable on its own after that.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from inspect_core.store.schema import utc_now

ACTIONS = ("accept", "reject", "relabel", "add", "clean")


class ReviewFrame(SQLModel, table=True):
    """A reviewed frame's version: raised by every write, checked against the version the writer saw."""

    __tablename__ = "review_frames"
    image_id: int = Field(primary_key=True, foreign_key="images.id")
    model_version_id: int = Field(primary_key=True, foreign_key="model_versions.id")
    version: int  # how many writes the frame has had (0: never reviewed, so no row)
    updated_by: str  # the reviewer of the latest write
    updated_at: datetime = Field(default_factory=utc_now, index=True)


class Review(SQLModel, table=True):
    """One reviewer action on one frame. ``frame_version`` is the frame's version this write made."""

    __tablename__ = "reviews"
    __table_args__ = (
        sa.Index("ix_reviews_frame", "image_id", "model_version_id", "id"),
        sa.CheckConstraint("action IN ('accept', 'reject', 'relabel', 'add', 'clean')", name="ck_reviews_action"),
    )
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id")
    model_version_id: int = Field(foreign_key="model_versions.id")
    frame_version: int
    reviewer: str
    reviewed_at: datetime = Field(default_factory=utc_now, index=True)
    action: str  # one of ACTIONS
    # The detection judged (accept, reject, relabel); NULL for an added box, an action on one, and clean.
    detection_id: int | None = Field(default=None, index=True)
    # The ``add`` row an action on a drawn box is about (reject or relabel it); NULL otherwise.
    added_review_id: int | None = Field(default=None, foreign_key="reviews.id")
    model_class: str | None = None  # the model's class for the detection judged
    model_confidence: float | None = None  # and its (calibrated) confidence
    class_name: str | None = None  # what the reviewer says it is: accept/relabel/add; NULL for reject and clean
    # The box judged or drawn, in pixels of the original image and normalised to [0, 1]; NULL for clean.
    x1: float | None = None
    y1: float | None = None
    x2: float | None = None
    y2: float | None = None
    nx1: float | None = None
    ny1: float | None = None
    nx2: float | None = None
    ny2: float | None = None
