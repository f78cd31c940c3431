"""Frames as the browser sees them: small pictures the app renders from registered images, with their boxes drawn.

The browser never gets a path to open: the app reads the file the store names for an image id, shrinks it
and hands Gradio the pixels, which Gradio writes into the app's private folder and serves from there.
A file that is gone or no longer an image becomes a grey tile saying so; the list goes on.
"""

from __future__ import annotations

import warnings
from datetime import timezone, tzinfo
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from inspect_core.data.importers.image_files import MAX_DECODE_PIXELS
from inspect_core.reporting.annotate import draw_boxes, palette

THUMBNAIL_SIDE = 320  # px, the longer side: a defect of 1 % of a 2k frame stays a few pixels wide
FRAME_TABLE_COLUMNS = ["image_id", "captured_at", "line", "camera", "model", "image", "defects", "classes", "max_confidence"]


def placeholder(reason: str, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """A grey tile with ``reason`` written on it (a frame whose file cannot be shown)."""
    tile = np.full((side * 3 // 4, side, 3), 90, np.uint8)
    cv2.putText(tile, reason[:40], (8, side * 3 // 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def shrink(path: Path | str, side: int = THUMBNAIL_SIDE) -> np.ndarray | str:
    """RGB pixels of an image file, its longer side at most ``side``; or why it cannot be shown.

    The header's size is checked against the decode budget before any pixel is decoded (as scoring checks
    files), and JPEGs decode at a reduced scale (``draft``): a list of 24 frames of 2k costs a fraction of
    decoding them whole.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_DECODE_PIXELS:
                    return "over the decode budget"
                image.draft("RGB", (side, side))
                image = image.convert("RGB")
                image.thumbnail((side, side))
                return np.asarray(image)
    except FileNotFoundError:
        return "file missing"
    except Exception:  # any decoder error: the file changed since it was scored
        return "not readable as an image"


def render(path: str, boxes: pd.DataFrame, colours: dict[str, tuple[int, int, int]] | None = None) -> np.ndarray:
    """A thumbnail of ``path`` with ``boxes`` (class_name, confidence, normalised nx1..ny2) drawn, or a placeholder."""
    pixels = shrink(path)
    if isinstance(pixels, str):
        return placeholder(pixels)
    height, width = pixels.shape[:2]
    placed = [(r.class_name, r.confidence, (r.nx1 * width, r.ny1 * height, r.nx2 * width, r.ny2 * height)) for r in boxes.itertuples()]
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    draw_boxes(bgr, placed, colours)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def frame_table(detections: pd.DataFrame, zone: tzinfo = timezone.utc) -> pd.DataFrame:
    """One row per frame of ``inspect_core.store.browse.frames`` output: when (in ``zone``), where, which model, how many defects
    of which classes."""
    if detections.empty:
        return pd.DataFrame(columns=FRAME_TABLE_COLUMNS)
    rows = []
    for (image_id, _model_id), group in detections.groupby(["image_id", "model_version_id"], sort=False):
        first = group.iloc[0]
        rows.append([int(image_id), f"{first.captured_at.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}", first.line, first.camera, first.model,
                     Path(first.image_path).name, len(group), ", ".join(sorted(set(group["class_name"]))),
                     round(float(group["confidence"].max()), 3)])  # fmt: skip
    return pd.DataFrame(rows, columns=FRAME_TABLE_COLUMNS)


def gallery(detections: pd.DataFrame, zone: tzinfo = timezone.utc) -> list[tuple[np.ndarray, str]]:
    """Thumbnails with boxes and a caption per frame, in the order of ``frame_table``."""
    if detections.empty:
        return []
    colours = palette(detections["class_name"])
    items = []
    for (_image, _model), group in detections.groupby(["image_id", "model_version_id"], sort=False):
        first = group.iloc[0]
        when = first.captured_at.astimezone(zone)
        caption = f"{Path(first.image_path).name} · {first.line or 'no line'} · {when:%Y-%m-%d %H:%M %Z} · {len(group)} defect(s)"
        items.append((render(first.image_path, group, colours), caption))
    return items
