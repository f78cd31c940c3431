"""Run a model on a few images without a database: ``inspect-core predict`` and the app's Try page.

Scoring (``inspect_core.inference.scoring``) is for batches into the results store; this is for a
person looking at one frame: the same model loading (:class:`TorchDetector`: adapters merged once,
bf16 where the chip has it), the same resizing and tiling, the same calibration (``calibration.json``
beside the weights) and operating thresholds (:func:`operating_thresholds`), so a box shown here is
the box ``score`` would store with the same confidence. Nothing is written anywhere.

A :class:`Predictor` holds the model loaded once; ``predict`` may be called from several threads (a web
app's request handlers): generation is serialised by a lock, since one model on one device gains
nothing from running two generations at once and PyTorch modules are not documented thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image

from inspect_core.config import ScoreSection
from inspect_core.data.florence_tasks import TASK_PROMPTS
from inspect_core.data.importers.image_files import MAX_DECODE_PIXELS, read_image, shown_path
from inspect_core.errors import BadInputError, UsageError
from inspect_core.inference.detector import Answer, generate_answers
from inspect_core.inference.poses import detect_in_poses
from inspect_core.inference.scoring import TorchDetector
from inspect_core.inference.thresholds import DetectionPolicy, OperatingThresholds, detection_policy, operating_thresholds
from inspect_core.inference.tiling import place_detections, plan_tiles, window_crops
from inspect_core.model.trained_model import resolve_trained_source

Task = Literal["od", "dense", "grounding"]
TASKS: tuple[str, ...] = ("od", "dense", "grounding")
ImageInput = np.ndarray | Image.Image


@dataclass(frozen=True, slots=True)
class PredictedBox:
    """One box in the image's own pixels: ``score`` calibrated (the raw token confidence when the model has no calibration)."""

    label: str
    score: float
    raw_score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(self.score, 4), "raw_score": round(self.raw_score, 4),
                "box": [round(v, 1) for v in self.box]}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Prediction:
    width: int
    height: int
    detections: list[PredictedBox] = field(default_factory=list)
    text: str | None = None  # dense and grounding: the phrases of the answer, location tokens removed
    seconds: float = 0.0  # model time for this image (its tiles included)

    def as_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "detections": [d.as_dict() for d in self.detections], "text": self.text,
                "seconds": round(self.seconds, 3)}  # fmt: skip

    def draw(self, image: ImageInput) -> np.ndarray:
        """A copy of ``image`` (RGB) with the boxes drawn, each labelled 'class 0.93' (``reporting.annotate.draw_boxes``)."""
        from inspect_core.reporting.annotate import draw_boxes

        bgr = cv2.cvtColor(as_rgb(image), cv2.COLOR_RGB2BGR)
        draw_boxes(bgr, [(d.label, d.score, d.box) for d in self.detections])
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_image(path: Path | str, name: str | None = None) -> np.ndarray:
    """RGB pixels of an image file, checked as scoring checks it (decode budget, decompression bombs, non-images).

    ``name`` is what the error calls the file (an upload's original name rather than its temporary path).
    Raises :class:`BadInputError` naming the file and the problem.
    """
    loaded = read_image(Path(path))
    if isinstance(loaded, str):
        raise BadInputError(f"{name or shown_path(path)}: {loaded}")
    return loaded[0]


def as_rgb(image: ImageInput, name: str = "image") -> np.ndarray:
    """An RGB uint8 array (H, W, 3) from a PIL image or an array (grey, RGB or RGBA); a clear error for anything else."""
    if isinstance(image, Image.Image):
        if image.width * image.height > MAX_DECODE_PIXELS:
            raise BadInputError(f"{name}: {image.width}x{image.height} is over the decode budget of {MAX_DECODE_PIXELS / 1e6:g} megapixels")
        return np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise BadInputError(f"{name}: expected an RGB array or a PIL image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise BadInputError(f"{name}: expected 8-bit pixels (uint8), got {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise BadInputError(f"{name}: expected an (height, width, 3) RGB array, got shape {image.shape}")
    if image.shape[0] * image.shape[1] > MAX_DECODE_PIXELS:
        raise BadInputError(
            f"{name}: {image.shape[1]}x{image.shape[0]} is over the decode budget of {MAX_DECODE_PIXELS / 1e6:g} megapixels"
        )
    return np.ascontiguousarray(image[..., :3])


def task_prompt(task: str, phrase: str | None) -> str:
    """The Florence-2 prompt of ``task``; grounding needs the phrase to find."""
    if task not in TASKS:
        raise UsageError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    if task == "grounding":
        if not phrase or not phrase.strip():
            raise UsageError("task grounding needs a phrase to find (--phrase 'a hole'), none was given")
        return TASK_PROMPTS["grounding"] + phrase.strip()
    return TASK_PROMPTS[task]


class Predictor:
    """A model loaded once, with its calibration and operating thresholds: images in, :class:`Prediction` out."""

    def __init__(self, model: str, precision: str = "auto", image_size: int | None = None, settings: ScoreSection | None = None) -> None:
        self.model_name = model
        self.model_dir = resolve_trained_source(model)
        self.settings = settings if settings is not None else ScoreSection()
        self.policy: DetectionPolicy = detection_policy(self.model_dir, self.settings)  # scoring's: the same confidences and verdicts
        self.calibration, self.vocabulary, self.thresholds = self.policy.calibration, self.policy.vocabulary, self.policy.thresholds
        self._detector = TorchDetector(self.model_dir, precision, image_size)
        self.input_size = self._detector.input_size
        self._lock = threading.Lock()

    def thresholds_for(self, threshold: float | None) -> OperatingThresholds:
        """The operating thresholds, or ``threshold`` for every class without one of its own in the recipe (like ``score --threshold``)."""
        if threshold is None:
            return self.thresholds
        if not 0 <= threshold <= 1:
            raise UsageError(f"threshold {threshold}: must be within [0, 1]")
        return operating_thresholds(self.settings.model_copy(update={"default_threshold": threshold}), self.calibration)

    def predict(
        self, images: Sequence[ImageInput], task: Task = "od", phrase: str | None = None, threshold: float | None = None,
        tile: bool = False,
    ) -> list[Prediction]:  # fmt: skip
        """Detections (and, for dense and grounding, the answer's text) per image.

        ``threshold`` None keeps what the model's operating thresholds keep; a number keeps every box at or
        above it (calibrated scale). For ``od``, labels outside the model's class vocabulary are dropped
        (a fine-tuned model once answered ``<OD>`` with a caption phrase). ``tile`` cuts each image into
        overlapping square tiles (recipe ``score.tile_size``/``tile_overlap``), as ``score --tile`` does, the
        blank margins of a line-scan strip left out (``score.mask_margins``).
        """
        prompt = task_prompt(task, phrase)
        # Only <OD> answers in class names; the caption tasks answer in phrases, which no vocabulary holds.
        policy = replace(self.policy, thresholds=self.thresholds_for(threshold), vocabulary=self.vocabulary if task == "od" else None)
        pixels = [as_rgb(image, f"image {i + 1}") for i, image in enumerate(images)]
        return [self._predict_one(rgb, prompt, task, policy, tile) for rgb in pixels]

    def _predict_one(self, rgb: np.ndarray, prompt: str, task: str, policy: DetectionPolicy, tile: bool) -> Prediction:
        plan = plan_tiles(rgb, self.settings, tile)  # scoring's windows, cloth and crops: the same pixels, the same answer
        crops = window_crops(rgb, plan.windows, self.input_size)
        batch = self.settings.batch_size
        started = time.perf_counter()
        model, processor = self._detector.model, self._detector.processor

        def answer(images: list[np.ndarray]) -> list[Answer]:
            answers: list[Answer] = []
            for start in range(0, len(images), batch):
                answers += generate_answers(model, processor, images[start : start + batch], prompt, self.settings.max_new_tokens,
                                            self.settings.num_beams, decoder=self.settings.decoder)  # fmt: skip
            return answers

        with self._lock:
            if task == "od":  # scoring's poses too (score.tta_poses): boxes only, so <OD> only
                answers: list[Answer] = []
                found = detect_in_poses(lambda images: [a.detections for a in answer(images)], crops, self.settings.tta_poses)
            else:
                answers = answer(crops)
                found = [a.detections for a in answers]
        seconds = time.perf_counter() - started
        placed = place_detections(plan, found, self.input_size, self.settings.tile_merge_overlap)
        kept: list[PredictedBox] = []
        for raw in placed:  # judged one by one to keep each box's raw score beside its calibrated one
            for judged, operating in policy.judge([raw])[0]:
                if operating:
                    kept.append(PredictedBox(judged.label, float(judged.score), float(raw.score), tuple(float(v) for v in judged.box)))  # type: ignore[arg-type]
        kept.sort(key=lambda b: -b.score)
        text = None if task == "od" else "; ".join(dict.fromkeys(a.text for a in answers if a.text))
        return Prediction(plan.width, plan.height, kept, text, seconds)


def load_predictor(model: str, precision: str = "auto", image_size: int | None = None, settings: ScoreSection | None = None) -> Predictor:
    """Load ``model`` (``tiny``, a merged model or checkpoint folder, a hub id) once, with its calibration.

    ``settings`` is the recipe's ``score:`` section (thresholds, batch size, tiling, max_new_tokens); the
    defaults without it. ``image_size`` None scores at the size the model was saved with.
    """
    return Predictor(str(model), precision, image_size, settings)
