"""Rescoring with history: what an earlier run said is kept, reports read the latest.

``score --rescore`` scores images again with a model version that scored them before (new operating
thresholds, a new storage floor, a fixed preprocessing). Reports must count each (image, model version)
once, by its latest run, and the earlier answer must stay queryable. So, inside the batch's transaction,
the earlier detections move to ``superseded_detections`` (with the run that replaced them), the day
counts of the days and classes they touched are recounted from the detections that remain (exact, max
included), and the image's score row is pointed at the new run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa

from inspect_core.store.schema import (
    NO_SOURCE,
    DetectionDayCount,
    DetectionRecord,
    ImageScore,
    ScoredImage,
    SupersededDetection,
    confidence_bin,
)

_D = DetectionRecord.__table__
_H = SupersededDetection.__table__
_C = DetectionDayCount.__table__
_SC = ImageScore.__table__


def supersede(connection: sa.Connection, run_id: int, model_version_id: int, images: Mapping[int, ScoredImage], now: datetime) -> None:
    """Move the detections ``model_version_id`` stored for ``images`` (image id -> its new scoring) to history.

    Leaves the image score rows pointing at ``run_id`` with the new counts; the caller inserts the new
    detections (and their day counts) in the same transaction.
    """
    ids = list(images)
    mine = sa.and_(_D.c.image_id.in_(ids), _D.c.model_version_id == model_version_id)
    moved = [c.name for c in _D.c]
    connection.execute(
        _H.insert().from_select(
            [*moved, "superseded_by_run", "superseded_at"],
            sa.select(*_D.c, sa.literal(run_id, sa.Integer), sa.literal(now, _H.c.superseded_at.type)).where(mine),
        )
    )
    touched = {
        (captured.astimezone(timezone.utc).date(), source or NO_SOURCE, class_name)
        for captured, source, class_name in connection.execute(sa.select(_D.c.captured_at, _D.c.source_id, _D.c.class_name).where(mine))
    }
    connection.execute(_D.delete().where(mine))
    for day, source_key, class_name in sorted(touched):
        _recount_day(connection, day, source_key, model_version_id, class_name)
    connection.execute(
        _SC.update()
        .where(_SC.c.image_id == sa.bindparam("image"), _SC.c.model_version_id == model_version_id)
        .values(run_id=run_id, scored_at=now, detections=sa.bindparam("stored"), defects=sa.bindparam("operating")),
        [
            {"image": image_id, "stored": len(i.detections), "operating": sum(d.operating for d in i.detections)}
            for image_id, i in images.items()
        ],
    )  # fmt: skip


def _recount_day(connection: sa.Connection, day: date, source_key: int, model_version_id: int, class_name: str) -> None:
    """Rewrite one (day, camera, model, class) group of day counts from the detections it now holds."""
    start = datetime.combine(day, datetime.min.time(), timezone.utc)
    source = _D.c.source_id.is_(None) if source_key == NO_SOURCE else _D.c.source_id == source_key
    rows = connection.execute(
        sa.select(_D.c.confidence, _D.c.operating).where(
            _D.c.model_version_id == model_version_id,
            _D.c.class_name == class_name,
            source,
            _D.c.captured_at >= start,
            _D.c.captured_at < start + timedelta(days=1),
        )
    ).all()
    group = sa.and_(
        _C.c.day == day, _C.c.source_key == source_key, _C.c.model_version_id == model_version_id, _C.c.class_name == class_name
    )
    connection.execute(_C.delete().where(group))
    counts: dict[tuple[int, bool], list[float]] = {}
    for confidence, operating in rows:
        total = counts.setdefault((confidence_bin(confidence), bool(operating)), [0, 0.0, confidence])
        total[0] += 1
        total[1] += confidence
        total[2] = max(total[2], confidence)
    if counts:
        connection.execute(
            _C.insert(),
            [{"day": day, "source_key": source_key, "model_version_id": model_version_id, "class_name": class_name, "confidence_bin": b,
              "operating": operating, "n": int(n), "confidence_sum": total, "confidence_max": top}
             for (b, operating), (n, total, top) in sorted(counts.items())],
        )  # fmt: skip
