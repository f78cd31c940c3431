"""Reviews of the model's detections: record what a reviewer says, show a frame with its verdicts, and (re-exported
from ``review_queries``) the review queue, reviewed precision and the frames an export writes.

A frame is one (image, model version) pair that the model scored. Reviewers' actions are appended to
``reviews`` (``inspect_core.store.review_schema``); detections are never changed, so "model said" and
"reviewer said" both stay queryable. How actions add up to verdicts: ``inspect_core.store.review_state``.

Concurrent reviewers: each write carries the frame version its reviewer saw (``review_version`` in the queue,
``FrameReview.version``; 0 for a frame never reviewed) and raises it by one, compare-and-set in the write's
own transaction. A write made on an older version is refused with ``StaleReviewError`` naming who changed
the frame and when: the first write stays, the second reviewer reloads and decides again.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inspect_core.data.annotations import EDGE_TOLERANCE_PX, Box, text_problem
from inspect_core.errors import UsageError
from inspect_core.store.engine import with_retries
from inspect_core.store.review_queries import (
    LEGACY_THRESHOLD,
    PRECISION_COLUMNS,
    QUEUE_COLUMNS,
    frame_rows,
    prelabelled_frames,
    review_queue,
    reviewed_frames,
    reviewed_precision,
    run_thresholds,
)
from inspect_core.store.review_schema import ACTIONS, Review, ReviewFrame
from inspect_core.store.review_state import fold
from inspect_core.store.schema import (
    DetectionRecord,
    ImageRecord,
    ImageScore,
    ModelVersion,
    ScoringRun,
    Source,
    SupersededDetection,
    utc_now,
)

MAX_NAME = 200  # characters of a reviewer's name or a class name
DETECTION_COLUMNS = ["detection_id", "class_name", "confidence", "operating", "threshold", "x1", "y1", "x2", "y2", "nx1", "ny1", "nx2",
                     "ny2", "verdict", "reviewed_class", "reviewer", "reviewed_at"]  # fmt: skip
DRAWN_COLUMNS = ["review_id", "class_name", "x1", "y1", "x2", "y2", "nx1", "ny1", "nx2", "ny2", "reviewer", "reviewed_at"]
HISTORY_COLUMNS = ["review_id", "frame_version", "reviewer", "reviewed_at", "action", "detection_id", "added_review_id", "model_class",
                   "model_confidence", "class_name", "x1", "y1", "x2", "y2"]  # fmt: skip

_D, _H, _I, _M = DetectionRecord.__table__, SupersededDetection.__table__, ImageRecord.__table__, ModelVersion.__table__
_S, _SC, _SR, _R, _RF = Source.__table__, ImageScore.__table__, ScoringRun.__table__, Review.__table__, ReviewFrame.__table__
_BOX = ("x1", "y1", "x2", "y2", "nx1", "ny1", "nx2", "ny2")


class StaleReviewError(UsageError):
    """The frame changed since the reviewer loaded it (another reviewer wrote, or a rescoring replaced a box)."""

    def __init__(self, message: str, changed_by: str | None = None, changed_at: datetime | None = None, version: int | None = None):
        super().__init__(message)
        self.changed_by, self.changed_at, self.version = changed_by, changed_at, version


@dataclass(frozen=True)
class ReviewAction:
    """One thing a reviewer says about a frame.

    accept / reject / relabel a detection (``detection_id``) or reject / relabel a drawn box (``added_review_id``,
    the id of its ``add``); relabel and add name the ``class_name``; add draws ``box`` (pixels of the original
    image, x1 < x2, y1 < y2); clean (the frame has no defect) takes nothing else.
    """

    action: str
    detection_id: int | None = None
    added_review_id: int | None = None
    class_name: str | None = None
    box: Box | None = None


@dataclass(frozen=True)
class RecordedReview:
    version: int  # the frame's version after this write: the next write of this reviewer carries it
    review_ids: tuple[int, ...]  # one per action, in order (an ``add``'s id is what rejects or relabels that box later)


@dataclass(frozen=True)
class FrameReview:
    """A frame for the review page: the image, its detections with their verdicts, the drawn boxes, the log."""

    image_id: int
    model_version_id: int
    model: str
    image_path: str
    width: int
    height: int
    captured_at: datetime
    camera: str | None
    line: str | None
    version: int  # pass as ``seen_version`` with the next write
    status: str  # unreviewed | partial | complete
    clean: bool
    undecided: int  # operating detections without a verdict
    detections: pd.DataFrame  # DETECTION_COLUMNS: every stored detection, most confident first; verdict None = undecided
    drawn: pd.DataFrame  # DRAWN_COLUMNS: boxes reviewers drew that still stand
    history: pd.DataFrame  # HISTORY_COLUMNS: every action on the frame, oldest first


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{what} must be text: got {value!r}")
    name = value.strip()
    if not name or len(name) > MAX_NAME or any(unicodedata.category(c)[0] == "C" for c in name):
        raise UsageError(f"{what} {value!r} must be 1 to {MAX_NAME} printable characters")
    return name


def _check_id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise UsageError(f"{what} must be a whole number >= 0: got {value!r}")
    return value


def _check_class(value: object, action: str) -> str:
    name = _check_name(value, f"{action}: class")
    problem = text_problem(name)
    if problem is not None:
        raise UsageError(f"{action}: class {value!r} {problem}")
    return name


def _check_box(box: object, width: int, height: int) -> Box:
    """A drawn box inside the image (rounding noise of up to EDGE_TOLERANCE_PX clipped, as the importers do), with area."""
    if not isinstance(box, (tuple, list)) or len(box) != 4:
        raise UsageError(f"add: box must be (x1, y1, x2, y2) in pixels: got {box!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise UsageError(f"add: box {box!r} holds something that is not a number") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise UsageError(f"add: box {box!r} holds a value that is not a finite number")
    tol = EDGE_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise UsageError(f"add: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {width}x{height} image")
    x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)
    if x2 <= x1 or y2 <= y1:
        raise UsageError(f"add: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has zero or negative area (x1 < x2 and y1 < y2 are needed)")
    return (x1, y1, x2, y2)


def _check_action(action: ReviewAction) -> None:
    """The shape of an action (what it names); whether its targets exist is checked against the store."""
    if action.action not in ACTIONS:
        raise UsageError(f"review action {action.action!r}: use one of {', '.join(ACTIONS)}")
    targets = [name for name in ("detection_id", "added_review_id") if getattr(action, name) is not None]
    for name in targets:
        _check_id(getattr(action, name), f"{action.action}: {name}")
    if action.action in ("add", "clean"):
        if targets:
            raise UsageError(f"{action.action} takes no {targets[0]}: it is about the frame, not one of its boxes")
    elif len(targets) != 1:
        raise UsageError(f"{action.action} needs exactly one of detection_id (a model box) or added_review_id (a drawn box)")
    elif action.action == "accept" and targets == ["added_review_id"]:
        raise UsageError("accept: a drawn box is the reviewer's own; reject or relabel it instead")
    if action.action in ("relabel", "add"):
        _check_class(action.class_name, action.action)
    elif action.class_name is not None:
        raise UsageError(f"{action.action} takes no class_name (only relabel and add name a class)")
    if (action.box is not None) != (action.action == "add"):
        raise UsageError("add needs a box" if action.action == "add" else f"{action.action} takes no box (only add draws one)")


def _frame_head(connection: sa.Connection, image_id: int, model_version_id: int) -> dict[str, Any]:
    joined = _SC.join(_I, _I.c.id == _SC.c.image_id).join(_M, _M.c.id == _SC.c.model_version_id).outerjoin(_S, _S.c.id == _SC.c.source_id)
    statement = sa.select(
        _SC.c.image_id, _SC.c.model_version_id, _M.c.name.label("model"), _I.c.path.label("image_path"), _I.c.width, _I.c.height,
        _SC.c.captured_at, _S.c.camera, _S.c.line,
    ).select_from(joined).where(_SC.c.image_id == image_id, _SC.c.model_version_id == model_version_id)  # fmt: skip
    row = connection.execute(statement).mappings().first()
    if row is None:
        raise UsageError(f"image {image_id} has not been scored by model version {model_version_id}: there is no such frame to review")
    return dict(row)


def _stale(connection: sa.Connection, image_id: int, model_version_id: int, seen: int) -> UsageError:
    """Why a write made on version ``seen`` cannot be stored: the frame moved on (StaleReviewError, who and when), or
    ``seen`` is a version the frame never had (a plain UsageError: the caller's bookkeeping is wrong)."""
    mine = (_RF.c.image_id == image_id, _RF.c.model_version_id == model_version_id)
    row = connection.execute(sa.select(_RF).where(*mine)).mappings().first()
    current = 0 if row is None else row["version"]
    if seen > current:
        return UsageError(f"frame (image {image_id}, model version {model_version_id}) is at version {current}; the write carried version "
                          f"{seen}, which it never had: pass the version the frame was read at")  # fmt: skip
    when = row["updated_at"]
    return StaleReviewError(
        f"frame (image {image_id}, model version {model_version_id}) was changed by {row['updated_by']} at {when:%Y-%m-%d %H:%M:%S} UTC "
        f"(now version {row['version']}; this review was made on version {seen}): nothing was saved; reload the frame and review it again",
        row["updated_by"], when, row["version"],
    )  # fmt: skip


def _claim(connection: sa.Connection, image_id: int, model_version_id: int, seen: int, reviewer: str, now: datetime) -> int:
    """Raise the frame's version from ``seen`` to ``seen + 1`` (compare-and-set), or raise StaleReviewError."""
    if seen == 0:
        exists = connection.execute(sa.select(_RF.c.version).where(_RF.c.image_id == image_id, _RF.c.model_version_id == model_version_id))
        if exists.first() is not None:
            raise _stale(connection, image_id, model_version_id, seen)
        row = {"image_id": image_id, "model_version_id": model_version_id, "version": 1, "updated_by": reviewer, "updated_at": now}
        connection.execute(_RF.insert(), row)  # a concurrent first write fails here on the primary key: see record_reviews
        return 1
    changed = connection.execute(
        _RF.update()
        .where(_RF.c.image_id == image_id, _RF.c.model_version_id == model_version_id, _RF.c.version == seen)
        .values(version=seen + 1, updated_by=reviewer, updated_at=now)
    )
    if changed.rowcount != 1:
        raise _stale(connection, image_id, model_version_id, seen)
    return seen + 1


def _target(connection: sa.Connection, action: ReviewAction, image_id: int, model_version_id: int) -> dict[str, Any]:
    """The model detection or drawn box an action is about, as the columns its review row copies."""
    if action.detection_id is not None:
        columns = [_D.c.class_name, _D.c.confidence, *(_D.c[n] for n in _BOX)]
        mine = (_D.c.id == action.detection_id, _D.c.image_id == image_id, _D.c.model_version_id == model_version_id)
        row = connection.execute(sa.select(*columns).where(*mine)).mappings().first()
        if row is None:
            replaced = connection.execute(
                sa.select(_H.c.superseded_by_run, _H.c.superseded_at).where(
                    _H.c.id == action.detection_id, _H.c.image_id == image_id, _H.c.model_version_id == model_version_id
                )
            ).first()
            if replaced is not None:
                raise StaleReviewError(f"{action.action}: detection {action.detection_id} was replaced when run {replaced[0]} rescored "
                                       f"this frame at {replaced[1]:%Y-%m-%d %H:%M:%S} UTC; reload the frame")  # fmt: skip
            raise UsageError(f"{action.action}: detection {action.detection_id} is not a detection of image {image_id} by model version "
                             f"{model_version_id}")  # fmt: skip
        if action.action == "relabel" and action.class_name.strip() == row["class_name"]:
            raise UsageError(f"relabel: detection {action.detection_id} is already {row['class_name']!r}; accept it instead")
        return {"model_class": row["class_name"], "model_confidence": row["confidence"], **{n: row[n] for n in _BOX}}
    added = connection.execute(
        sa.select(_R).where(_R.c.id == action.added_review_id, _R.c.image_id == image_id, _R.c.model_version_id == model_version_id)
    ).mappings().first()  # fmt: skip
    if added is None or added["action"] != "add":
        raise UsageError(f"{action.action}: review {action.added_review_id} is not a box drawn on image {image_id} for model version "
                         f"{model_version_id}")  # fmt: skip
    return {n: added[n] for n in _BOX}


def record_reviews(
    engine: Engine, image_id: int, model_version_id: int, reviewer: str, actions: Sequence[ReviewAction], seen_version: int
) -> RecordedReview:
    """Store ``actions`` on one frame as one write of ``reviewer`` (one transaction, one version step).

    ``seen_version`` is the frame version the reviewer's page showed; if the frame has moved on since,
    ``StaleReviewError`` names who changed it and when, and nothing is stored. Bad actions (unknown
    action, a detection of another frame, a class with markup, a box outside the image) are a ``UsageError``
    naming the action and field; nothing of the write is stored then either.
    """
    reviewer = _check_name(reviewer, "reviewer")
    for value, what in ((image_id, "image_id"), (model_version_id, "model_version_id"), (seen_version, "seen_version")):
        _check_id(value, what)
    actions = list(actions)
    if not actions:
        raise UsageError("a review needs at least one action")
    for action in actions:
        if not isinstance(action, ReviewAction):
            raise UsageError(f"review actions must be ReviewAction values: got {action!r}")
        _check_action(action)

    def run() -> RecordedReview:
        now = utc_now()
        with engine.begin() as connection:
            head = _frame_head(connection, image_id, model_version_id)
            version = _claim(connection, image_id, model_version_id, seen_version, reviewer, now)
            ids = []
            for action in actions:
                row = {"image_id": image_id, "model_version_id": model_version_id, "frame_version": version, "reviewer": reviewer,
                       "reviewed_at": now, "action": action.action, "detection_id": action.detection_id,
                       "added_review_id": action.added_review_id}  # fmt: skip
                if action.action == "add":
                    x1, y1, x2, y2 = _check_box(action.box, head["width"], head["height"])
                    w, h = head["width"], head["height"]
                    row |= {"class_name": action.class_name.strip(), "x1": x1, "y1": y1, "x2": x2, "y2": y2, "nx1": x1 / w, "ny1": y1 / h,
                            "nx2": x2 / w, "ny2": y2 / h}  # fmt: skip
                elif action.action != "clean":
                    target = _target(connection, action, image_id, model_version_id)
                    said = {"accept": target.get("model_class"), "relabel": (action.class_name or "").strip(), "reject": None}
                    row |= target | {"class_name": said[action.action]}
                ids.append(int(connection.execute(_R.insert().values(**row).returning(_R.c.id)).scalar_one()))
            return RecordedReview(version, tuple(ids))

    try:
        return with_retries(run, f"recording a review of image {image_id}")
    except sa.exc.IntegrityError as error:  # two first writes at once: the other one inserted the frame's row first
        if seen_version != 0:
            raise

        def explain() -> UsageError:
            with engine.connect() as connection:
                return _stale(connection, image_id, model_version_id, seen_version)

        stale = with_retries(explain, f"reading the review state of image {image_id}")
        if not isinstance(stale, StaleReviewError):  # no frame row after all: the integrity error was something else
            raise
        raise stale from error


def record_review(
    engine: Engine, image_id: int, model_version_id: int, reviewer: str, action: str, *, seen_version: int,
    detection_id: int | None = None, added_review_id: int | None = None, class_name: str | None = None, box: Box | None = None,
) -> RecordedReview:  # fmt: skip
    """One action on one frame (``record_reviews`` with a single ``ReviewAction``)."""
    return record_reviews(engine, image_id, model_version_id, reviewer, [ReviewAction(action, detection_id, added_review_id, class_name,
                                                                                      box)], seen_version)  # fmt: skip


def frame_detections(engine: Engine, image_id: int, model_version_id: int) -> FrameReview:
    """One frame for review: its image, every stored detection with its threshold and current verdict, the boxes
    reviewers drew, and the review log. A frame the model version did not score is a ``UsageError``."""

    key = (image_id, model_version_id)

    def run() -> tuple[dict, dict, list, dict, int]:
        with engine.connect() as connection:
            head = _frame_head(connection, image_id, model_version_id)
            logs, detections = frame_rows(connection, [key])
            runs = {row["run_id"] for row in detections.get(key, {}).values()}
            thresholds = dict(connection.execute(sa.select(_SR.c.id, _SR.c.thresholds).where(_SR.c.id.in_(runs))).all()) if runs else {}
            mine = (_RF.c.image_id == image_id, _RF.c.model_version_id == model_version_id)
            version = connection.execute(sa.select(_RF.c.version).where(*mine)).scalar()
            return head, detections.get(key, {}), logs.get(key, []), thresholds, version or 0

    head, found, log, thresholds, version = with_retries(run, f"reading frame (image {image_id}, model version {model_version_id})")
    state = fold(log, found)
    rows = []
    for detection_id, row in found.items():
        default, classes = run_thresholds(thresholds.get(row["run_id"]))
        verdict = state.verdicts.get(detection_id)
        said = (verdict.action, verdict.class_name, verdict.reviewer, verdict.reviewed_at) if verdict else (None,) * 4
        rows.append({"detection_id": detection_id, **{k: row[k] for k in ("class_name", "confidence", "operating")},
                     "threshold": classes.get(row["class_name"], default), **{k: row[k] for k in _BOX},
                     **dict(zip(("verdict", "reviewed_class", "reviewer", "reviewed_at"), said))})  # fmt: skip
    detections = pd.DataFrame(rows, columns=DETECTION_COLUMNS).sort_values(["confidence", "detection_id"], ascending=[False, True])
    drawn = pd.DataFrame([{"review_id": b.review_id, "class_name": b.class_name, **dict(zip(_BOX, (*b.box, *b.normalised))),
                           "reviewer": b.reviewer, "reviewed_at": b.reviewed_at} for b in state.drawn], columns=DRAWN_COLUMNS)  # fmt: skip
    history = pd.DataFrame([{"review_id": r["id"], **{k: r[k] for k in HISTORY_COLUMNS[1:]}} for r in log], columns=HISTORY_COLUMNS)
    history[["detection_id", "added_review_id"]] = history[["detection_id", "added_review_id"]].astype("Int64")
    for column in ("verdict", "reviewed_class", "reviewer"):  # None (not NaN) where undecided
        detections[column] = detections[column].astype(object).where(detections[column].notna(), None)
    for table in (detections, drawn, history):
        table["reviewed_at"] = pd.to_datetime(table["reviewed_at"], utc=True)
    return FrameReview(**head, version=version, status=state.status, clean=state.clean, undecided=state.undecided,
                       detections=detections.reset_index(drop=True), drawn=drawn, history=history)  # fmt: skip


__all__ = ["DETECTION_COLUMNS", "DRAWN_COLUMNS", "HISTORY_COLUMNS", "LEGACY_THRESHOLD", "PRECISION_COLUMNS", "QUEUE_COLUMNS",
           "FrameReview", "RecordedReview", "ReviewAction", "StaleReviewError", "frame_detections", "prelabelled_frames", "record_review",
           "record_reviews", "review_queue", "reviewed_frames", "reviewed_precision"]  # fmt: skip
