"""The review reads: the queue of frames most worth a look, reviewed precision, and the frames an export writes.

Filters are the report's (``ReportFilter`` and its helpers in ``inspect_core.store.reports``), so the review
page and the dashboard agree on what "line L2 last night" means. Each function is one read under the
store's retry policy. The public names are re-exported by ``inspect_core.store.reviews``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inspect_core.data.exporters.frames import ExportFrame, LabelledBox, ScoredBox
from inspect_core.errors import UsageError
from inspect_core.store.engine import with_retries
from inspect_core.store.reports import ReportFilter, _conditions, _kept
from inspect_core.store.review_schema import Review, ReviewFrame
from inspect_core.store.review_state import FrameState, fold
from inspect_core.store.schema import DetectionRecord, ImageRecord, ImageScore, ModelVersion, ScoringRun, Source

# The operating threshold of runs from before thresholds were recorded (scoring_runs.thresholds NULL): the
# recipe default then, equal to ``inspect_core.model.calibration.UNCALIBRATED_THRESHOLD`` (a test checks).
LEGACY_THRESHOLD = 0.3
CHUNK = 500  # ids per IN (...) list: far below SQLite's bound-parameter limit
QUEUE_COLUMNS = ["image_id", "model_version_id", "model", "image_path", "width", "height", "captured_at", "camera", "line",
                 "detections", "defects", "margin", "review_version", "reviewed_by", "reviewed_at"]  # fmt: skip
PRECISION_COLUMNS = ["class_name", "reviewed", "accepted", "relabelled", "rejected", "precision"]

_D, _I, _M, _S = DetectionRecord.__table__, ImageRecord.__table__, ModelVersion.__table__, Source.__table__
_SC, _SR, _R, _RF = ImageScore.__table__, ScoringRun.__table__, Review.__table__, ReviewFrame.__table__
_BOX = ("x1", "y1", "x2", "y2", "nx1", "ny1", "nx2", "ny2")


def run_thresholds(recorded: Mapping[str, Any] | None) -> tuple[float, dict[str, float]]:
    """(default, per class) of a run's recorded thresholds; a run without them used ``LEGACY_THRESHOLD``."""
    if not isinstance(recorded, Mapping):
        return LEGACY_THRESHOLD, {}
    default = recorded.get("default")
    default = float(default) if isinstance(default, (int, float)) and math.isfinite(default) else LEGACY_THRESHOLD
    classes = recorded.get("classes") if isinstance(recorded.get("classes"), Mapping) else {}
    return default, {str(k): float(v) for k, v in classes.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _threshold_case(connection: sa.Connection, model_ids: sa.Select | None) -> sa.ColumnElement:
    """The operating threshold of each detection's run and class, as nested CASEs over the recorded thresholds.

    Runs are grouped per model version: the thresholds most of its runs used are the model's ELSE, the others
    key on their ranges of run ids (thresholds change rarely: a new recipe, a recalibration), so a detection
    goes through one model match, a few range checks and one class match however many 5-minute runs the store
    holds. Over 300k detections on SQLite the aggregate took 260 ms with one constant threshold, 935 ms with a
    flat CASE of (model, run range, class) conditions and 604 ms with this nesting (a loaded 2-core machine).
    """
    statement = sa.select(_SR.c.id, _SR.c.model_version_id, _SR.c.thresholds).order_by(_SR.c.model_version_id, _SR.c.id)
    if model_ids is not None:
        statement = statement.where(_SR.c.model_version_id.in_(model_ids))
    per_model: dict[int, list[tuple[int, tuple]]] = defaultdict(list)
    for run_id, model_id, recorded in connection.execute(statement):
        default, classes = run_thresholds(recorded)
        per_model[model_id].append((run_id, (default, tuple(sorted(classes.items())))))

    def per_class(key: tuple) -> sa.ColumnElement:
        default, classes = key
        if not classes:
            return sa.literal(default, sa.Float)
        return sa.case(dict(classes), value=_D.c.class_name, else_=sa.literal(default, sa.Float))

    models = {}
    for model_id, runs in per_model.items():
        usual = Counter(key for _run, key in runs).most_common(1)[0][0]
        ranges, start = [], 0
        for index in range(1, len(runs) + 1):  # consecutive runs with the same unusual thresholds form one range
            if index == len(runs) or runs[index][1] != runs[start][1]:
                if runs[start][1] != usual:
                    ranges.append((_D.c.run_id.between(runs[start][0], runs[index - 1][0]), per_class(runs[start][1])))
                start = index
        models[model_id] = sa.case(*ranges, else_=per_class(usual)) if ranges else per_class(usual)
    if not models:
        return sa.literal(LEGACY_THRESHOLD, sa.Float)
    return sa.case(models, value=_D.c.model_version_id, else_=sa.literal(LEGACY_THRESHOLD, sa.Float))


def _model_ids(flt: ReportFilter) -> sa.Select | None:
    return None if flt.model is None else sa.select(_M.c.id).where(_M.c.name == flt.model)


def _check_page(limit: int | None, offset: int) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit < 2**31):
        raise UsageError(f"queue limit {limit!r} must be a whole number from 1 to {2**31 - 1}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**31:
        raise UsageError(f"queue offset {offset!r} must be a whole number from 0 to {2**31 - 1}")


def review_queue(engine: Engine, flt: ReportFilter, limit: int | None = 50, offset: int = 0, reviewed: bool | None = None) -> pd.DataFrame:
    """Scored frames, the ones most worth a look first: unreviewed before reviewed, then the frame whose detection
    lies closest to its operating threshold (smallest ``margin`` = min |confidence - threshold|; frames without
    detections last), then newest capture.

    ``margin`` reads every stored detection of the frame (down to the storage floor: a box just under the
    threshold is as doubtful as one just over it), or those at or above ``flt.min_confidence`` when given;
    ``flt.class_name`` keeps frames with a detection of that class and measures only those. ``reviewed``
    False/True keeps only unreviewed/reviewed frames. One row per frame: ``QUEUE_COLUMNS`` (``review_version``
    0 = never reviewed: pass it as ``seen_version`` to ``record_review``).
    """
    _check_page(limit, offset)

    def run() -> pd.DataFrame:
        with engine.connect() as connection:
            threshold = _threshold_case(connection, _model_ids(flt))
            considered = _conditions(flt, _D.c.captured_at, _D.c.source_id, _D.c.model_version_id)
            if flt.class_name is not None:
                considered.append(_D.c.class_name == flt.class_name)
            if flt.min_confidence is not None:
                considered.append(_D.c.confidence >= flt.min_confidence)
            margins = (
                sa.select(_D.c.image_id, _D.c.model_version_id, sa.func.min(sa.func.abs(_D.c.confidence - threshold)).label("margin"))
                .where(*considered)
                .group_by(_D.c.image_id, _D.c.model_version_id)
                .subquery()
            )
            mine = sa.and_(margins.c.image_id == _SC.c.image_id, margins.c.model_version_id == _SC.c.model_version_id)
            frames = _SC.join(_I, _I.c.id == _SC.c.image_id).join(_M, _M.c.id == _SC.c.model_version_id)
            frames = frames.outerjoin(_S, _S.c.id == _SC.c.source_id)
            frames = frames.join(margins, mine) if flt.class_name is not None else frames.outerjoin(margins, mine)
            frames = frames.outerjoin(_RF, sa.and_(_RF.c.image_id == _SC.c.image_id, _RF.c.model_version_id == _SC.c.model_version_id))
            statement = sa.select(
                _SC.c.image_id, _SC.c.model_version_id, _M.c.name.label("model"), _I.c.path.label("image_path"), _I.c.width, _I.c.height,
                _SC.c.captured_at, _S.c.camera, _S.c.line, _SC.c.detections, _SC.c.defects, margins.c.margin,
                sa.func.coalesce(_RF.c.version, 0).label("review_version"), _RF.c.updated_by.label("reviewed_by"),
                _RF.c.updated_at.label("reviewed_at"),
            ).select_from(frames).where(*_conditions(flt, _SC.c.captured_at, _SC.c.source_id, _SC.c.model_version_id))  # fmt: skip
            if reviewed is not None:
                statement = statement.where(_RF.c.version.is_not(None) if reviewed else _RF.c.version.is_(None))
            statement = statement.order_by(
                sa.case((_RF.c.version.is_(None), 0), else_=1), sa.case((margins.c.margin.is_(None), 1), else_=0), margins.c.margin,
                _SC.c.captured_at.desc(), _SC.c.image_id.desc(), _SC.c.model_version_id,
            ).limit(limit).offset(offset)  # fmt: skip
            result = connection.execute(statement)
            return pd.DataFrame(result.all(), columns=list(result.keys()))

    frame = with_retries(run, "reading the review queue")
    for column in ("captured_at", "reviewed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["margin"] = frame["margin"].astype("float64")
    return frame


def _chunks(values: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(values), CHUNK):
        yield list(values[start : start + CHUNK])


def frame_rows(connection: sa.Connection, keys: Sequence[tuple[int, int]]) -> tuple[dict, dict]:
    """The review logs and current detections of the frames ``keys`` ((image id, model version id) pairs):
    ``{key: [review row, ...]}``, ``{key: {detection id: detection row}}``; read by image id, CHUNK at a time."""
    wanted = set(keys)
    logs: dict[tuple[int, int], list[dict]] = defaultdict(list)
    detections: dict[tuple[int, int], dict[int, dict]] = defaultdict(dict)
    columns = [_D.c.id, _D.c.image_id, _D.c.model_version_id, _D.c.run_id, _D.c.class_name, _D.c.confidence, _D.c.operating]
    for ids in _chunks(sorted({image for image, _model in wanted})):
        for row in connection.execute(sa.select(_R).where(_R.c.image_id.in_(ids)).order_by(_R.c.id)).mappings():
            if (row["image_id"], row["model_version_id"]) in wanted:
                logs[row["image_id"], row["model_version_id"]].append(dict(row))
        statement = sa.select(*columns, *(_D.c[name] for name in _BOX)).where(_D.c.image_id.in_(ids)).order_by(_D.c.id)
        for row in connection.execute(statement).mappings():
            if (row["image_id"], row["model_version_id"]) in wanted:
                detections[row["image_id"], row["model_version_id"]][row["id"]] = dict(row)
    return logs, detections


def reviewed_precision(engine: Engine, flt: ReportFilter) -> pd.DataFrame:
    """Per model class, of the reviewed detections matching ``flt`` (operating ones unless ``flt.min_confidence``):
    how many reviewers accepted, relabelled (a defect, another class) and rejected, and ``precision`` =
    accepted / reviewed. A detection counts once, by its current verdict. Columns: ``PRECISION_COLUMNS``,
    the most reviewed class first."""

    def run() -> Counter:
        with engine.connect() as connection:
            frames = _RF.join(_SC, sa.and_(_SC.c.image_id == _RF.c.image_id, _SC.c.model_version_id == _RF.c.model_version_id))
            statement = sa.select(_RF.c.image_id, _RF.c.model_version_id).select_from(frames)
            keys = connection.execute(statement.where(*_conditions(flt, _SC.c.captured_at, _SC.c.source_id, _SC.c.model_version_id))).all()
            logs, detections = frame_rows(connection, [tuple(k) for k in keys])
        counts: Counter = Counter()
        for key, found in detections.items():
            state = fold(logs.get(key, []), found)
            for detection_id, verdict in state.verdicts.items():
                row = found[detection_id]
                if flt.class_name is not None and row["class_name"] != flt.class_name:
                    continue
                if not (row["operating"] if flt.min_confidence is None else row["confidence"] >= flt.min_confidence):
                    continue
                counts[row["class_name"], verdict.action] += 1
        return counts

    counts = with_retries(run, "reading reviewed precision")
    rows = []
    for name in sorted({name for name, _action in counts}):
        accepted, relabelled, rejected = (counts[name, a] for a in ("accept", "relabel", "reject"))
        reviewed = accepted + relabelled + rejected
        rows.append({"class_name": name, "reviewed": reviewed, "accepted": accepted, "relabelled": relabelled, "rejected": rejected,
                     "precision": accepted / reviewed})  # fmt: skip
    frame = pd.DataFrame(rows, columns=PRECISION_COLUMNS)
    return frame.sort_values(["reviewed", "class_name"], ascending=[False, True], ignore_index=True)


def _export_frames(connection: sa.Connection, statement: sa.Select, min_confidence: float | None) -> list[ExportFrame]:
    """ExportFrames of the frames ``statement`` selects (image, model and source columns), in its order."""
    heads = [dict(row) for row in connection.execute(statement).mappings()]
    logs, detections = frame_rows(connection, [(h["image_id"], h["model_version_id"]) for h in heads])
    frames = []
    for head in heads:
        key = (head["image_id"], head["model_version_id"])
        found = detections.get(key, {})
        state: FrameState = fold(logs.get(key, []), found)
        predictions = tuple(
            ScoredBox(row["class_name"], float(row["confidence"]), (row["x1"], row["y1"], row["x2"], row["y2"]), detection_id)
            for detection_id, row in found.items()
            if (row["operating"] if min_confidence is None else row["confidence"] >= min_confidence)
        )
        boxes = tuple(LabelledBox(label, box) for label, box in state.boxes(found)) if state.status != "unreviewed" else ()
        frames.append(ExportFrame(
            head["image_id"], head["model_version_id"], head["model"], head["path"], head["width"], head["height"], head["sha256"],
            head["captured_at"], head["camera"], head["line"], predictions, state.status, boxes, state.clean, state.undecided,
            state.reviewers, state.reviewed_at,
        ))  # fmt: skip
    return frames


def _heads() -> sa.Select:
    joined = _SC.join(_I, _I.c.id == _SC.c.image_id).join(_M, _M.c.id == _SC.c.model_version_id).outerjoin(_S, _S.c.id == _SC.c.source_id)
    return sa.select(_SC.c.image_id, _SC.c.model_version_id, _M.c.name.label("model"), _I.c.path, _I.c.width, _I.c.height, _I.c.sha256,
                     _SC.c.captured_at, _S.c.camera, _S.c.line).select_from(joined)  # fmt: skip


def reviewed_frames(
    engine: Engine, since: datetime | None = None, until: datetime | None = None, reviewed_after: datetime | None = None,
    model: str | None = None,
) -> list[ExportFrame]:  # fmt: skip
    """Every reviewed frame (status ``complete`` or ``partial``) captured in [since, until), last written after
    ``reviewed_after``, of model version ``model`` (a name) if given: image, size, the model's operating
    detections and the reviewed boxes. Oldest capture first."""
    flt = ReportFilter(since=since, until=until, model=model)
    _check_time(reviewed_after, "reviewed_after")
    statement = _heads().join(_RF, sa.and_(_RF.c.image_id == _SC.c.image_id, _RF.c.model_version_id == _SC.c.model_version_id))
    statement = statement.where(*_conditions(flt, _SC.c.captured_at, _SC.c.source_id, _SC.c.model_version_id))
    if reviewed_after is not None:
        statement = statement.where(_RF.c.updated_at > reviewed_after)
    statement = statement.order_by(_SC.c.captured_at, _SC.c.image_id, _SC.c.model_version_id)

    def run() -> list[ExportFrame]:
        with engine.connect() as connection:
            return _export_frames(connection, statement, None)

    return with_retries(run, "reading the reviewed frames")


def prelabelled_frames(engine: Engine, flt: ReportFilter, limit: int | None = None) -> list[ExportFrame]:
    """Scored frames matching ``flt``, newest first, with the model's detections as pre-labels (operating ones,
    or those at or above ``flt.min_confidence``) and, for reviewed frames, the reviewed boxes. With a class
    filter, only frames with a matching detection (and only those detections)."""
    _check_page(limit, 0)
    statement = _heads().where(*_conditions(flt, _SC.c.captured_at, _SC.c.source_id, _SC.c.model_version_id))
    if flt.class_name is not None:
        matching = sa.select(_D.c.id).where(_D.c.image_id == _SC.c.image_id, _D.c.model_version_id == _SC.c.model_version_id,
                                            _D.c.class_name == flt.class_name, _kept(flt, _D.c.confidence, _D.c.operating))  # fmt: skip
        statement = statement.where(matching.exists())
    statement = statement.order_by(_SC.c.captured_at.desc(), _SC.c.image_id.desc(), _SC.c.model_version_id).limit(limit)

    def run() -> list[ExportFrame]:
        with engine.connect() as connection:
            frames = _export_frames(connection, statement, flt.min_confidence)
        if flt.class_name is None:
            return frames
        return [replace(f, predictions=tuple(p for p in f.predictions if p.label == flt.class_name)) for f in frames]

    return with_retries(run, "reading the pre-labelled frames")


def _check_time(value: datetime | None, name: str) -> None:
    if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
        raise UsageError(f"{name} must be a timezone-aware time (the store keeps UTC): got {value!r}")


__all__ = ["LEGACY_THRESHOLD", "PRECISION_COLUMNS", "QUEUE_COLUMNS", "prelabelled_frames", "review_queue", "reviewed_frames",
           "reviewed_precision", "run_thresholds"]  # fmt: skip
