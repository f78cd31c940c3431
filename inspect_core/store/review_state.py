"""What a frame's review log adds up to: the verdict on each detection, the drawn boxes still standing, the status.

Pure Python over rows already read (a frame has a handful of reviews): the one place that defines the rules,
shared by the review page, reviewed precision and the export.

- The latest action on a detection is its verdict (accept, reject, relabel); a ``clean`` later than it
  rejects it, and rejects every detection without a later verdict: "this frame has no defect".
- A drawn box (``add``) stands until a later reject of it or a later ``clean``; a relabel of it changes its class.
- Verdicts on detections that are no longer the frame's (a rescoring replaced them) stay in the log but no
  longer count: the new run's detections need their own verdicts.
- A frame is ``complete`` when it was marked clean or every operating detection has a verdict, ``partial``
  when some have none, ``unreviewed`` without any review. Only a complete frame's boxes are its whole truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from inspect_core.data.annotations import Box


@dataclass(frozen=True)
class Verdict:
    action: str  # accept | reject | relabel (a clean counts as reject)
    class_name: str | None  # what the reviewer says the box is; None when rejected
    reviewer: str
    reviewed_at: datetime
    review_id: int
    by_clean: bool = False


@dataclass(frozen=True)
class DrawnBox:
    review_id: int
    class_name: str
    box: Box
    normalised: Box
    reviewer: str
    reviewed_at: datetime


@dataclass
class FrameState:
    verdicts: dict[int, Verdict] = field(default_factory=dict)  # detection id -> verdict, current detections only
    drawn: list[DrawnBox] = field(default_factory=list)
    clean: bool = False  # the latest clean is not followed by any box verdict or drawn box that stands
    undecided: int = 0  # operating detections without a verdict
    status: str = "unreviewed"
    reviewers: tuple[str, ...] = ()
    reviewed_at: datetime | None = None

    def boxes(self, detections: Mapping[int, Mapping[str, Any]]) -> list[tuple[str, Box]]:
        """(class, pixel box) of the boxes the review stands behind: accepted and relabelled detections, then drawn boxes."""
        kept = [(v.class_name, _box(detections[d])) for d, v in sorted(self.verdicts.items()) if v.action != "reject"]
        return [(str(label), box) for label, box in kept] + [(b.class_name, b.box) for b in self.drawn]


def _box(row: Mapping[str, Any], prefix: str = "") -> Box:
    return (float(row[f"{prefix}x1"]), float(row[f"{prefix}y1"]), float(row[f"{prefix}x2"]), float(row[f"{prefix}y2"]))


def fold(log: Iterable[Mapping[str, Any]], detections: Mapping[int, Mapping[str, Any]]) -> FrameState:
    """The state of one frame from its review ``log`` (rows of ``reviews``, any order) and its current ``detections``
    (id -> row with ``operating``, ``class_name`` and the box)."""
    rows = sorted(log, key=lambda r: r["id"])
    state = FrameState()
    if not rows:
        state.undecided = sum(1 for d in detections.values() if d["operating"])
        return state
    clean_id = max((r["id"] for r in rows if r["action"] == "clean"), default=None)
    latest: dict[int, Mapping[str, Any]] = {}
    drawn: dict[int, DrawnBox] = {}
    for row in rows:
        action, target = row["action"], row["added_review_id"]
        if action == "add" and (clean_id is None or row["id"] > clean_id):
            box = _box(row)
            drawn[row["id"]] = DrawnBox(row["id"], row["class_name"], box, _box(row, "n"), row["reviewer"], row["reviewed_at"])
        elif target is not None and target in drawn:
            if action == "reject":
                del drawn[target]
            elif action == "relabel":
                drawn[target] = DrawnBox(**{**drawn[target].__dict__, "class_name": row["class_name"]})
        elif row["detection_id"] is not None and row["detection_id"] in detections:
            latest[row["detection_id"]] = row
    clean_row = next(r for r in rows if r["id"] == clean_id) if clean_id is not None else None
    for detection_id in detections:
        row = latest.get(detection_id)
        if row is not None and (clean_id is None or row["id"] > clean_id):
            label = None if row["action"] == "reject" else row["class_name"]
            state.verdicts[detection_id] = Verdict(row["action"], label, row["reviewer"], row["reviewed_at"], row["id"])
        elif clean_row is not None:
            state.verdicts[detection_id] = Verdict("reject", None, clean_row["reviewer"], clean_row["reviewed_at"], clean_row["id"], True)
    state.drawn = list(drawn.values())
    state.undecided = sum(1 for d, row in detections.items() if row["operating"] and d not in state.verdicts)
    state.status = "complete" if clean_id is not None or state.undecided == 0 else "partial"
    state.clean = clean_id is not None and not state.boxes(detections)
    state.reviewers = tuple(sorted({r["reviewer"] for r in rows}))
    state.reviewed_at = rows[-1]["reviewed_at"]
    return state
