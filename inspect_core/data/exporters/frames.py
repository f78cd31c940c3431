"""What an export writes, as plain values: a frame's image, the model's pre-labels and the reviewed boxes.

The store fills these (``inspect_core.store.reviews``: ``reviewed_frames``, ``prelabelled_frames``) and the
writers in this package turn them into files; the writers never read the store (``data`` sits below ``store``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from inspect_core.data.annotations import Box

STATUSES = ("unreviewed", "partial", "complete")


@dataclass(frozen=True, slots=True)
class LabelledBox:
    """A box a reviewer stands behind (accepted, relabelled or drawn), in pixels of the original image."""

    label: str
    box: Box


@dataclass(frozen=True, slots=True)
class ScoredBox:
    """A model detection as stored: its class, its (calibrated) confidence and its pixel box."""

    label: str
    score: float
    box: Box
    detection_id: int | None = None


@dataclass(frozen=True, slots=True)
class ExportFrame:
    """One (image, model version) frame with what the model said and, once reviewed, what the reviewers said.

    ``status`` is ``complete`` when every operating detection has a verdict (or the frame was marked clean):
    only then is ``boxes`` the frame's whole truth (``()`` for a clean frame). A ``partial`` frame still has
    undecided detections (``undecided`` of them) and is not exported as labels.
    """

    image_id: int
    model_version_id: int
    model: str
    image_path: str
    width: int
    height: int
    sha256: str
    captured_at: datetime
    camera: str | None = None
    line: str | None = None
    predictions: tuple[ScoredBox, ...] = ()  # the model's operating detections
    status: str = "unreviewed"  # one of STATUSES
    boxes: tuple[LabelledBox, ...] = ()
    clean: bool = False
    undecided: int = 0
    reviewers: tuple[str, ...] = ()
    reviewed_at: datetime | None = None


def latest_per_image(frames: Iterable[ExportFrame]) -> list[ExportFrame]:
    """One frame per image: an image reviewed under two model versions is exported with its latest review.

    Labels describe the image, not the model, so a batch must not hold the same image twice (the importer
    would keep whichever it met first). Order: capture time, then image id.
    """
    best: dict[int, ExportFrame] = {}
    for frame in frames:
        kept = best.get(frame.image_id)
        if kept is None or _later(frame, kept):
            best[frame.image_id] = frame
    return sorted(best.values(), key=lambda f: (f.captured_at, f.image_id))


def _later(frame: ExportFrame, than: ExportFrame) -> bool:
    if frame.reviewed_at is None or than.reviewed_at is None:
        return than.reviewed_at is None and frame.reviewed_at is not None
    return (frame.reviewed_at, frame.model_version_id) > (than.reviewed_at, than.model_version_id)
