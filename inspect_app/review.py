"""Review: the queue of frames most worth a look, one frame with its boxes, and what a reviewer says about them.

Everything goes through the store's review API (``inspect_core.store.reviews``): the queue's order, the
verdicts, the compare-and-set that keeps two reviewers from silently overwriting each other. This module
turns a page's state into those calls and back, without Gradio, so each step is tested on its own:

- ``queue``: the store's queue for the dashboard's filter, as the page's table.
- ``load_frame``: a frame's pixels (from the store's file for the image id, checked as scoring checks files,
  shrunk for the browser), its detections table and the boxes the annotator shows.
- ``edits_to_actions``: what the annotator returns, compared with what it was shown, as review actions: a
  shown box gone is rejected, relabelled is relabelled, moved is rejected and drawn again, a new box is added.
- ``save``: one write of a reviewer (one frame version step); a stale write is refused with who changed the
  frame and when, and the frame is reloaded so the reviewer decides again on what is there now.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from inspect_app.context import AppContext
from inspect_app.dashboard import Filters, clock_for, report_filter
from inspect_core.errors import UsageError
from inspect_core.reporting.annotate import palette
from inspect_core.store.browse import filter_choices
from inspect_core.store.reviews import FrameReview, ReviewAction, StaleReviewError, frame_detections, record_reviews, review_queue

QUEUE_SHOWN = 50  # frames listed at once: a reviewer's session, the next ones come as these are reviewed
DISPLAY_SIDE = 1600  # px, the longer side sent to the browser: a 16k line-scan strip shrinks, boxes scale with it
MOVED_PX = 2.0  # a shown box returned further than this (display pixels) was moved: the annotator rounds to whole pixels
SHOW = {"to review": False, "reviewed": True, "all": None}
QUEUE_TABLE = ["image_id", "model_version_id", "captured_at", "line", "camera", "model", "image", "defects", "margin", "reviewed_by"]
DETECTION_TABLE = ["detection_id", "class", "confidence", "threshold", "verdict", "reviewed_class", "reviewer"]


@dataclass(frozen=True)
class ShownBox:
    """A box the annotator was given: a model detection (``detection_id``) or a reviewer's drawn box (``added_review_id``)."""

    label: str
    box: tuple[float, float, float, float]  # pixels of the original image
    detection_id: int | None = None
    added_review_id: int | None = None
    model_class: str | None = None  # a detection's class as the model said it


@dataclass(frozen=True)
class FrameView:
    image_id: int
    model_version_id: int
    version: int  # the frame version the reviewer sees: what the next write carries
    pixels: np.ndarray  # RGB, longer side at most DISPLAY_SIDE
    scale: float  # display pixels per image pixel
    shown: tuple[ShownBox, ...]
    table: pd.DataFrame  # DETECTION_TABLE
    title: str
    classes: list[str]  # what a box may be called: the store's classes and the frame's own

    def annotator_value(self) -> dict:
        """The ``image_annotator`` value: the frame and its standing boxes in display pixels, coloured per class."""
        colours = palette(self.classes)
        boxes = []
        for b in self.shown:
            x1, y1, x2, y2 = (v * self.scale for v in b.box)
            boxes.append(
                {
                    "xmin": x1,
                    "ymin": y1,
                    "xmax": x2,
                    "ymax": y2,
                    "label": b.label,
                    "color": tuple(reversed(colours.get(b.label, (0, 0, 255)))),
                }
            )
        return {"image": self.pixels, "boxes": boxes}

    def label_colours(self) -> list[tuple[int, int, int]]:
        colours = palette(self.classes)
        return [tuple(reversed(colours[name])) for name in self.classes]


def queue(ctx: AppContext, flt: Filters, show: str = "to review") -> pd.DataFrame:
    """The frames most worth a look under the dashboard's filter (unreviewed first, then nearest the threshold, then newest)."""
    if show not in SHOW:
        raise UsageError(f"show {show!r}: one of {', '.join(SHOW)}")
    clock = clock_for(ctx, flt)
    found = review_queue(ctx.engine, report_filter(flt, clock), limit=QUEUE_SHOWN, reviewed=SHOW[show])
    table = pd.DataFrame({
        "image_id": found["image_id"], "model_version_id": found["model_version_id"],
        "captured_at": found["captured_at"].map(lambda t: f"{t.astimezone(clock.zone):%Y-%m-%d %H:%M %Z}"), "line": found["line"],
        "camera": found["camera"], "model": found["model"], "image": found["image_path"].map(lambda p: Path(p).name),
        "defects": found["defects"], "margin": found["margin"].round(3), "reviewed_by": found["reviewed_by"],
    })  # fmt: skip
    return table[QUEUE_TABLE]


def _pixels(path: str, name: str) -> np.ndarray:
    from inspect_core.inference.predict import load_image

    return load_image(path, name)


def load_frame(ctx: AppContext, image_id: int, model_version_id: int) -> FrameView:
    """A frame for review: shrunk pixels, the boxes that stand (operating detections not rejected, drawn boxes), the table."""
    review: FrameReview = frame_detections(ctx.engine, int(image_id), int(model_version_id))
    pixels = _pixels(review.image_path, Path(review.image_path).name)
    scale = min(1.0, DISPLAY_SIDE / max(pixels.shape[:2]))
    if scale < 1.0:
        pixels = cv2.resize(pixels, (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    listed = review.detections[review.detections["operating"] | review.detections["verdict"].notna()]
    shown = [ShownBox(str(row.reviewed_class or row.class_name), (row.x1, row.y1, row.x2, row.y2), detection_id=int(row.detection_id),
                      model_class=str(row.class_name)) for row in listed.itertuples() if row.verdict != "reject"]  # fmt: skip
    shown += [
        ShownBox(str(row.class_name), (row.x1, row.y1, row.x2, row.y2), added_review_id=int(row.review_id))
        for row in review.drawn.itertuples()
    ]
    table = pd.DataFrame({
        "detection_id": listed["detection_id"], "class": listed["class_name"], "confidence": listed["confidence"].round(3),
        "threshold": listed["threshold"].round(3), "verdict": listed["verdict"].fillna("undecided"),
        "reviewed_class": listed["reviewed_class"], "reviewer": listed["reviewer"],
    })[DETECTION_TABLE]  # fmt: skip
    classes = sorted({*filter_choices(ctx.engine).classes, *review.detections["class_name"], *review.drawn["class_name"]})
    where = " ".join(str(v) for v in (review.line, review.camera) if v) or "no line"
    state = "clean" if review.clean else review.status + (f", {review.undecided} undecided" if review.undecided else "")
    title = (f"{Path(review.image_path).name} · {where} · {review.captured_at.astimezone(clock_for(ctx, Filters()).zone):%Y-%m-%d %H:%M %Z}"
             f" · model {review.model} · {state} · version {review.version}")  # fmt: skip
    return FrameView(int(image_id), int(model_version_id), review.version, pixels, scale, tuple(shown), table.reset_index(drop=True),
                     title, classes)  # fmt: skip


def _near(a: tuple[float, ...], b: tuple[float, ...], tolerance: float) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


def edits_to_actions(view: FrameView, returned: list[dict]) -> list[ReviewAction]:
    """The annotator's boxes (display pixels) against those it was shown, as review actions (see the module docstring).

    A box left where it was with its label changes nothing; accepting the model's boxes is its own action.
    """
    remaining = list(returned or [])
    actions: list[ReviewAction] = []
    for shown in view.shown:
        target = {"detection_id": shown.detection_id, "added_review_id": shown.added_review_id}
        scaled = tuple(v * view.scale for v in shown.box)
        match = next((b for b in remaining if _near(scaled, (b["xmin"], b["ymin"], b["xmax"], b["ymax"]), MOVED_PX)), None)
        if match is None:
            actions.append(ReviewAction("reject", **target))
            continue
        remaining.remove(match)
        label = str(match.get("label") or "").strip()
        if label and label != shown.label:  # back to the model's own class is accepting it
            verdict = "accept" if shown.detection_id is not None and label == shown.model_class else "relabel"
            actions.append(ReviewAction(verdict, class_name=label if verdict == "relabel" else None, **target))
    for box in remaining:
        label = str(box.get("label") or "").strip()
        if not label:
            raise UsageError("a drawn box has no class: choose its class in the annotator (click the box) and save again")
        corners = tuple(float(box[k]) / view.scale for k in ("xmin", "ymin", "xmax", "ymax"))
        actions.append(ReviewAction("add", class_name=label, box=corners))  # type: ignore[arg-type]
    return actions


def verdict_actions(view: FrameView, verdict: str, detection_ids: list[int], class_name: str | None = None) -> list[ReviewAction]:
    """Accept, reject or relabel chosen model detections (``detection_ids`` empty with accept: every undecided one)."""
    if verdict not in ("accept", "reject", "relabel"):
        raise UsageError(f"verdict {verdict!r}: accept, reject or relabel")
    known = set(view.table["detection_id"])
    if verdict == "accept" and not detection_ids:
        detection_ids = list(view.table.loc[view.table["verdict"] == "undecided", "detection_id"])
        if not detection_ids:
            raise UsageError("no undecided box on this frame: choose a box in the table to change its verdict")
    if not detection_ids:
        raise UsageError(f"choose a box in the table first, then {verdict} it")
    unknown = [d for d in detection_ids if d not in known]
    if unknown:
        raise UsageError(f"detection(s) {unknown} are not boxes of this frame: reload it")
    if verdict == "relabel" and not (class_name or "").strip():
        raise UsageError("relabel needs the new class: choose it first")
    return [
        ReviewAction(verdict, detection_id=int(d), class_name=class_name.strip() if verdict == "relabel" else None) for d in detection_ids
    ]


@dataclass(frozen=True)
class Saved:
    view: FrameView  # the frame as it is now (after the write, or reloaded after a refused one)
    message: str
    stale: bool = False


def save(ctx: AppContext, view: FrameView, reviewer: str, actions: list[ReviewAction]) -> Saved:
    """One write of ``reviewer`` on the frame at the version the page showed; a stale write stores nothing and reloads."""
    if not actions:
        return Saved(view, "nothing to save: no box was changed")
    try:
        recorded = record_reviews(ctx.engine, view.image_id, view.model_version_id, reviewer, actions, view.version)
    except StaleReviewError as error:
        return Saved(load_frame(ctx, view.image_id, view.model_version_id), f"Not saved: {error}", stale=True)
    done = ", ".join(f"{n} {a}" for a, n in _count(actions).items())
    return Saved(
        load_frame(ctx, view.image_id, view.model_version_id), f"Saved ({done}) as version {recorded.version} by {reviewer.strip()}"
    )


def _count(actions: list[ReviewAction]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for action in actions:
        counts[action.action] = counts.get(action.action, 0) + 1
    return counts
