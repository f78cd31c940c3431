"""Line-scan strips: the cloth found by its texture, tiles in the blank margins never sent, margin boxes dropped.

The strips are drawn here with numpy (a plain weave of noisy yarns between a black margin and an
evenly lit roller), so the oracle is the drawn columns, not the project's generator. The scripted
detector answers three boxes in every tile it is sent, whatever the tile holds: which answers survive
is decided by the tile's place alone, known from the drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlmodel import Session, select

import inspect_core.inference.predict as predict_module
from inspect_core.config import ScoreSection
from inspect_core.inference.cloth_region import ClothRegion, find_cloth
from inspect_core.inference.detector import Answer, Detection
from inspect_core.inference.scoring import score_images
from inspect_core.inference.tiling import plan_tiles
from inspect_core.store import DetectionRecord, open_store

HEIGHT, WIDTH, TILE, INPUT = 256, 4096, 256, 128
CLOTH = (1100, 3000)  # drawn cloth columns: tiles 0-3 and 12-15 (256 px each, no overlap) lie wholly in the margins
# The scripted answer in model-input pixels (128 px crops of 256 px tiles: x2 in the strip): left, centre, right.
ANSWER = [(4, 40, 28, 88), (52, 40, 76, 88), (100, 40, 124, 88)]
SETTINGS = ScoreSection(num_workers=0, batch_size=8, tile=True, tile_size=TILE, tile_overlap=0.0)


def weave(height: int, width: int, rng: np.random.Generator, period: int = 6) -> np.ndarray:
    """A plain weave: yarn crossings alternating warp over weft, shaded across each yarn, with yarn-to-yarn and sensor noise."""
    y, x = np.mgrid[0:height, 0:width]
    over = ((x // period) + (y // period)) % 2 == 0
    shade = np.where(over, np.sin(np.pi * (x % period) / period), np.sin(np.pi * (y % period) / period))
    grey = 90 + 60 * shade + rng.normal(0, 6, (height, width))
    return np.clip(grey, 0, 255)


def strip(cloth: tuple[int, int] = CLOTH, rows: tuple[int, int] = (0, HEIGHT), width: int = WIDTH, height: int = HEIGHT,
          seed: int = 0) -> np.ndarray:  # fmt: skip
    """RGB: black margin (sensor noise) left and above, the weave in ``cloth`` x ``rows``, an evenly lit roller right and below."""
    rng = np.random.default_rng(seed)
    grey = np.clip(rng.normal(2, 1, (height, width)), 0, 255)
    grey[:, cloth[1] :] = 185 + np.linspace(0, 10, width - cloth[1]) + rng.normal(0, 1.5, (height, width - cloth[1]))
    grey[rows[1] :, cloth[0] : cloth[1]] = 185 + rng.normal(0, 1.5, (height - rows[1], cloth[1] - cloth[0]))
    grey[rows[0] : rows[1], cloth[0] : cloth[1]] = weave(rows[1] - rows[0], cloth[1] - cloth[0], rng)
    return np.repeat(grey.round().astype(np.uint8)[..., None], 3, axis=2)


def expected_boxes(tiles: int = WIDTH // TILE, cloth: tuple[int, int] = CLOTH) -> tuple[list[tuple[float, ...]], list[tuple[float, ...]]]:
    """Every box the scripted detector gives in strip pixels, split into (on the cloth, in the margin)."""
    on, off = [], []
    for k in range(tiles):
        for x1, y1, x2, y2 in ANSWER:
            box = (TILE * k + 2.0 * x1, 2.0 * y1, TILE * k + 2.0 * x2, 2.0 * y2)
            inside = cloth[0] <= box[0] and box[2] <= cloth[1]
            assert inside or box[2] <= cloth[0] or box[0] >= cloth[1], "the oracle wants each box wholly on or off the cloth"
            (on if inside else off).append(box)
    return sorted(on), sorted(off)


class ScriptedDetector:
    """The scoring backend: the three ``ANSWER`` boxes for every crop it is sent, counting the crops."""

    input_size = INPUT

    def __init__(self) -> None:
        self.crops = 0

    def __call__(self, crops: Sequence[np.ndarray], max_new_tokens: int, num_beams: int) -> list[list[Detection]]:
        self.crops += len(crops)
        return [[Detection("hole", box, 0.9) for box in ANSWER] for _ in crops]


@pytest.mark.parametrize(
    ("cloth", "hole"),
    [((1100, 3000), None), ((0, 2500), None), ((700, 4096), None), ((1100, 3000), (1800, 1900)), ((1500, 2900), None)],
)
def test_the_finder_returns_the_drawn_cloth_columns(cloth: tuple[int, int], hole: tuple[int, int] | None) -> None:
    pixels = strip(cloth)
    if hole:  # a cut through the whole strip height, black inside: the cloth must not be split at it
        pixels[:, hole[0] : hole[1]] = 0
    region = find_cloth(pixels)
    assert abs(region.x0 - cloth[0]) <= 3 and abs(region.x1 - cloth[1]) <= 3, region
    assert (region.y0, region.y1) == (0, HEIGHT)  # the lines of the web are all kept


def test_a_tall_strip_has_its_margins_above_and_below() -> None:
    region = find_cloth(np.ascontiguousarray(strip().transpose(1, 0, 2)))
    assert (region.x0, region.x1) == (0, HEIGHT) and abs(region.y0 - CLOTH[0]) <= 3 and abs(region.y1 - CLOTH[1]) <= 3, region


def test_what_cannot_be_told_apart_is_left_whole() -> None:
    rng = np.random.default_rng(5)
    all_cloth = np.repeat(weave(256, 1024, rng).astype(np.uint8)[..., None], 3, axis=2)
    blank = np.full((256, 1024, 3), 3, np.uint8)
    frame = strip(cloth=(100, 500), width=600, height=400)  # an area-camera frame: its flat edges may be cloth
    for pixels in (all_cloth, blank, frame):
        height, width = pixels.shape[:2]
        assert find_cloth(pixels) == ClothRegion(0, 0, width, height)  # inspected whole, never silently skipped


def test_the_plan_masks_only_tiled_images_and_only_when_the_recipe_says_so() -> None:
    pixels = strip()
    masked = plan_tiles(pixels, SETTINGS, tile=True)
    assert [w[0] for w in masked.windows] == [TILE * k for k in range(4, 12)] and masked.skipped == 8 and masked.tiled
    unmasked = plan_tiles(pixels, SETTINGS.model_copy(update={"mask_margins": False}), tile=True)
    assert len(unmasked.windows) == 16 and unmasked.cloth is None
    whole = plan_tiles(pixels, SETTINGS, tile=False)
    assert whole.windows == [(0, 0, WIDTH, HEIGHT)] and whole.cloth is None


@pytest.mark.parametrize("mask", [True, False])
def test_scoring_never_sends_margin_tiles_and_drops_margin_boxes(tmp_path: Path, mask: bool) -> None:
    image = tmp_path / "strip.png"
    assert cv2.imwrite(str(image), strip())
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    detector = ScriptedDetector()
    score_images([image], "tiny", engine, SETTINGS.model_copy(update={"mask_margins": mask}), detector=detector)
    with Session(engine) as session:
        stored = sorted((d.x1, d.y1, d.x2, d.y2) for d in session.exec(select(DetectionRecord)))
    on, off = expected_boxes()
    if mask:
        assert detector.crops == 8  # tiles 4..11: the eight that hold cloth
        assert len(on) == 22 and off  # two answers of the edge tiles fall in the margin
        np.testing.assert_allclose(stored, on, atol=0.5)
    else:
        assert detector.crops == 16
        np.testing.assert_allclose(stored, sorted(on + off), atol=0.5)


def test_predict_takes_the_same_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []

    class FakeTorchDetector:
        def __init__(self, *_args: object) -> None:
            self.model, self.processor, self.input_size = None, None, INPUT

    def answers(_model: object, _processor: object, crops: Sequence[np.ndarray], *_args: object, decoder: str) -> list[Answer]:
        assert decoder in ("lean", "generate")
        sent.append(len(crops))
        return [Answer([Detection("hole", box, 0.9) for box in ANSWER], "") for _ in crops]

    monkeypatch.setattr(predict_module, "TorchDetector", FakeTorchDetector)
    monkeypatch.setattr(predict_module, "resolve_trained_source", lambda _model: str(tmp_path))
    monkeypatch.setattr(predict_module, "generate_answers", answers)
    predictor = predict_module.Predictor("scripted", settings=SETTINGS)
    (prediction,) = predictor.predict([strip()], tile=True)
    on, _off = expected_boxes()
    assert sum(sent) == 8
    np.testing.assert_allclose(sorted(d.box for d in prediction.detections), on, atol=0.5)


@pytest.mark.slow
def test_the_finder_on_the_randomised_generators_line_scan_strips() -> None:
    """The margins another generator recorded (``data.synth.photo``: unlit, backlit and roller margins, PRNU, flicker, JPEG)."""
    from inspect_core.data.synthetic_fabric import generate_sample

    errors, whole = [], 0
    for i in range(20):
        sample = generate_sample(11, i, size=256, style="randomised", width=2048)
        left, right = sample.margins
        region = find_cloth(sample.image)
        if (region.x0, region.x1) == (0, 2048):
            whole += 1
        else:
            errors += [region.x0 - left, region.x1 - (2048 - right)]
    assert whole <= 2  # measured: 2 in these 20 (a cloth as flat as its margin, one clipped to white), 3 in 50
    assert min(errors) >= -8 and max(errors) <= 8  # measured: 0-6 px
    assert all(e <= 0 for e in errors[::2]) and all(e >= 0 for e in errors[1::2])  # never into the cloth
