"""Boxes a person can see on a line-scan strip: line width by image size, labels kept in the image, crops per detection.

Oracles are measured on the drawn pixels: the thickness of a drawn edge counted in the output, what
is left of it after shrinking the strip to a screen's width, and coloured defect patches painted
here that must arrive whole (and unpainted by the box) in their crops.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import inspect_core.inference.predict as predict_module
from inspect_core.cli import app
from inspect_core.config import ScoreSection
from inspect_core.inference.predict import PredictedBox, Prediction
from inspect_core.inference.thresholds import operating_thresholds
from inspect_core.reporting.annotate import CROP_CONTEXT, detection_crops, draw_boxes, palette

RED = (40, 40, 230)  # BGR of the first palette colour: the colour of a lone class
SCREEN = 1600  # px a strip is shown across on a plant PC's screen


def edge_thickness(row: np.ndarray, x: int) -> int:
    """Width of the run of drawn (non-black) pixels in ``row`` ending at column ``x`` or ``x - 1`` (a box's left edge at ``x``)."""
    drawn = np.flatnonzero(row[: x + 1].max(axis=-1) > 0)
    if not len(drawn) or drawn[-1] < x - 1:
        return 0
    run = 1
    while run < len(drawn) and drawn[-1 - run] == drawn[-1] - run:
        run += 1
    return run


@pytest.mark.parametrize(("width", "height"), [(256, 256), (4096, 256), (256, 4096)])
def test_line_width_follows_the_longer_side_and_survives_the_screen(width: int, height: int) -> None:
    canvas = np.zeros((height, width, 3), np.uint8)
    box = (100.0, 100.0, 140.0, 140.0)
    draw_boxes(canvas, [("hole", 0.9, box)], {"hole": RED})
    thickness = edge_thickness(canvas[120], 100)  # the left edge, at the box's mid-height
    assert (thickness == 1) if max(width, height) == 256 else (thickness >= 8)  # cv2 draws a line of width t >= 2 with t + 1 px
    assert not canvas[101:139, 101:139].any()  # lines sit outside the box: the defect itself stays visible
    shrink = SCREEN / max(width, height)
    shown = canvas if shrink >= 1 else cv2.resize(canvas, (round(width * shrink), round(height * shrink)), interpolation=cv2.INTER_AREA)
    row = shown[round(120 * min(shrink, 1))]
    left = round(100 * min(shrink, 1))
    assert row[max(0, left - 4) : left + 1, 2].max() >= 0.8 * RED[2]  # still (nearly) full colour on the screen


def test_a_label_at_the_edge_of_a_strip_is_kept_whole_inside_it() -> None:
    middle, corner = (np.zeros((256, 4096, 3), np.uint8) for _ in range(2))
    draw_boxes(middle, [("broken_yarn", 0.93, (2000.0, 120.0, 2040.0, 160.0))], {"broken_yarn": RED})
    draw_boxes(corner, [("broken_yarn", 0.93, (4060.0, 0.0, 4096.0, 30.0))], {"broken_yarn": RED})
    white = [int((img.min(axis=-1) > 200).sum()) for img in (middle, corner)]  # the text's pixels
    assert white[0] > 100 and white[1] == white[0]  # the corner label is shifted in, not cut off


def test_each_crop_holds_its_box_with_context_around_it() -> None:
    pixels = np.zeros((256, 4096, 3), np.uint8)
    boxes = [("hole", 0.9, (1000.0, 100.0, 1020.0, 130.0)), ("stain", 0.8, (4050.0, 200.0, 4090.0, 250.0))]
    for (_, _, (x1, y1, x2, y2)), colour in zip(boxes, ((0, 255, 255), (255, 255, 0))):
        pixels[int(y1) : int(y2), int(x1) : int(x2)] = colour
    crops = detection_crops(pixels, boxes)
    assert len(crops) == 2
    for (_, _, (x1, y1, x2, y2)), (window, crop), colour in zip(boxes, crops, ((0, 255, 255), (255, 255, 0))):
        wx0, wy0, wx1, wy1 = window
        assert wx0 <= x1 - min(CROP_CONTEXT, x1) and wy0 <= y1 - min(CROP_CONTEXT, y1)
        assert wx1 >= min(4096, x2 + CROP_CONTEXT) and wy1 >= min(256, y2 + CROP_CONTEXT)
        zoom = crop.shape[0] // (wy1 - wy0)
        assert crop.shape[:2] == ((wy1 - wy0) * zoom, (wx1 - wx0) * zoom) and min(crop.shape[:2]) >= 256
        patch = (crop == colour).all(axis=-1)
        assert patch.sum() == (x2 - x1) * (y2 - y1) * zoom**2  # the whole defect, enlarged, and no line over it


@pytest.fixture
def scripted_predictor(monkeypatch: pytest.MonkeyPatch) -> None:
    """``predict`` without a model: every image gets two boxes, at the painted patches of ``painted_strip``."""

    class Scripted:
        def predict(self, images: list[np.ndarray], **_kwargs: object) -> list[Prediction]:
            return [Prediction(i.shape[1], i.shape[0], [PredictedBox(label, s, s, box) for label, s, box in BOXES]) for i in images]

        def thresholds_for(self, _threshold: float | None) -> object:
            return operating_thresholds(ScoreSection(), None)

    monkeypatch.setattr(predict_module, "load_predictor", lambda *_a, **_k: Scripted())


BOXES = [("hole", 0.9, (600.0, 50.0, 630.0, 90.0)), ("stain", 0.7, (3000.0, 150.0, 3060.0, 200.0))]
PATCHES = [(0, 255, 255), (255, 255, 0)]  # RGB


def painted(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    rgb = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
    for (_, _, (x1, y1, x2, y2)), colour in zip(BOXES, PATCHES):
        rgb[int(y1) : int(y2), int(x1) : int(x2)] = colour
    return rgb


def test_predict_out_writes_a_crop_around_each_detection_of_a_strip(tmp_path: Path, scripted_predictor: None) -> None:
    frames, out = tmp_path / "frames", tmp_path / "annotated"
    frames.mkdir()
    assert cv2.imwrite(str(frames / "strip.png"), cv2.cvtColor(painted(4096, 256), cv2.COLOR_RGB2BGR))
    assert cv2.imwrite(str(frames / "frame.png"), cv2.cvtColor(painted(4096, 256)[:, 560:816], cv2.COLOR_RGB2BGR))
    result = CliRunner().invoke(app, ["predict", "--images", str(frames), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["image"]).name: r for r in json.loads(result.stdout)["images"]}
    assert rows["frame.png"]["crops"] == []  # a 256 px frame is seen whole: no crops
    crops = [Path(c) for c in rows["strip.png"]["crops"]]
    assert [c.name for c in crops] == ["strip_crop1.png", "strip_crop2.png"]  # k in the table's order, most confident first
    colours = palette(label for label, _, _ in BOXES)  # BGR
    for crop_file, (label, _, (x1, y1, x2, y2)), colour in zip(crops, BOXES, PATCHES):
        crop = cv2.cvtColor(cv2.imread(str(crop_file)), cv2.COLOR_BGR2RGB)
        patch = (crop == colour).all(axis=-1)
        ys, xs = np.nonzero(patch)
        zoom = round((ys.max() - ys.min() + 1) / (y2 - y1))
        assert zoom >= 1 and patch.sum() == (x2 - x1) * (y2 - y1) * zoom**2  # the defect whole, enlarged by whole pixels
        assert xs.min() >= CROP_CONTEXT * zoom / 2 and ys.min() > 0  # with cloth around it
        assert (crop == np.array(colours[label][::-1])).all(axis=-1).any()  # and its box drawn
