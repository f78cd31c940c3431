"""Albumentations augmentation that keeps boxes and polygons on the pixels they label.

Two uses:

- offline: :data:`OFFLINE_FLIPS` materialise ``flipped_h_*`` / ``flipped_v_*`` copies at build time;
- online: :class:`OnlineAugmenter` applies, each time the training loader reads an image, in this
  order: copy-paste of defect crops from other training images (:func:`copy_paste`), a box-safe
  random crop (:func:`box_safe_crop`), a random zoom in or out (:func:`zoom`), random flips, a random
  multiple of 90 degrees, colour jitter, then the configured extra transforms.

Why these for few-shot real fabric (issue 15): with tens of photographs a model sees each defect a
few dozen times; flips alone give it 4 poses. Fabric has no up or down, so rotation by 90 degrees
doubles that exactly (no interpolation, no padding); crop and zoom vary where and how large a defect
is; colour jitter varies the dye and the light; copy-paste puts known defects on other cloth, so the
model learns the defect rather than the photograph it came in. Every geometric step maps boxes
exactly (axis-aligned), which ``tests/data/test_augmentation_fewshot.py`` checks against boxes found
by thresholding the transformed pixels.

Text follows the pixels too: after a flip or a rotation, position words in descriptions and
captions are mirrored or turned ("near the left selvage" becomes "near the right selvage"); other
geometric steps leave text as is. Pasted defects carry no description (their phrase is the class).

Polygon vertices travel as albumentations keypoints. Keypoints use pixel-centre coordinates while
our boxes and polygons use continuous ones, so vertices are shifted by half a pixel on the way in
and out; a flip then maps ``x -> width - x`` for boxes and polygons alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from inspect_core.config import extra_transform
from inspect_core.data.annotations import AnnotatedImage, DefectObject, clip_polygon

__all__ = ["OFFLINE_FLIPS", "OnlineAugmenter", "PasteSource", "apply", "box_safe_crop", "compose", "copy_paste", "extra_transform",
           "mirror_text", "paste_sources", "rotate_text", "zoom"]  # fmt: skip

OFFLINE_FLIPS: dict[str, type[A.BasicTransform]] = {"h": A.HorizontalFlip, "v": A.VerticalFlip}


def compose(transforms: list[A.BasicTransform], seed: int | None = None) -> A.Compose:
    """A box- and polygon-aware pipeline; boxes that leave the image are dropped with their polygon.

    A seeded ``A.Compose`` gives every transform the same seed, which makes their random decisions
    identical (both flips always together); each transform gets its own derived seed instead.
    """
    pipeline = A.Compose(
        transforms,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["object_ids"], clip=True, min_area=1.0),
        keypoint_params=A.KeypointParams(format="xy", label_fields=["keypoint_owners"], remove_invisible=False),
        seed=seed,
        save_applied_params=True,
    )
    if seed is not None:
        for index, transform in enumerate(pipeline.transforms):
            transform.set_random_seed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))
    return pipeline


_MIRRORED_WORDS = {
    "HorizontalFlip": {"left": "right", "right": "left"},
    "VerticalFlip": {"top": "bottom", "bottom": "top", "upper": "lower", "lower": "upper"},
}
# np.rot90 turns counter-clockwise: what was on top is on the left afterwards, and so on round.
_TURN = {"top": "left", "left": "bottom", "bottom": "right", "right": "top"}
_SIDE_OF = {"upper": "top", "lower": "bottom"}
_ADJECTIVE = {"top": "upper", "bottom": "lower"}


def _swap_words(text: str, swaps: dict[str, str]) -> str:
    def swap(match: re.Match[str]) -> str:
        word = swaps[match.group(0).lower()]
        return word.capitalize() if match.group(0)[0].isupper() else word

    return re.sub(r"\b(" + "|".join(swaps) + r")\b", swap, text, flags=re.IGNORECASE)


def mirror_text(text: str | None, transform_name: str) -> str | None:
    """Swap the position words a flip mirrors, keeping capitalisation."""
    swaps = _MIRRORED_WORDS.get(transform_name)
    if not text or not swaps:
        return text
    return _swap_words(text, swaps)


def rotate_text(text: str | None, quarter_turns: int) -> str | None:
    """Turn the position words by ``quarter_turns`` counter-clockwise quarter turns ("left" -> "bottom" for one)."""
    turns = quarter_turns % 4
    if not text or not turns:
        return text
    swaps = {}
    for word in (*_TURN, *_SIDE_OF):
        side = _SIDE_OF.get(word, word)
        for _ in range(turns):
            side = _TURN[side]
        swaps[word] = _ADJECTIVE.get(side, side) if word in _SIDE_OF else side  # "upper" stays an adjective where it can
    return _swap_words(text, swaps)


def _follow_text(text: str | None, applied: list[tuple[str, dict]]) -> str | None:
    for name, params in applied:
        text = rotate_text(text, int(params.get("factor", 0))) if name == "RandomRotate90" else mirror_text(text, name)
    return text


def apply(pipeline: A.Compose, pixels: np.ndarray, image: AnnotatedImage) -> tuple[np.ndarray, AnnotatedImage]:
    """Run ``pipeline`` on an image's pixels and labels; returns both transformed together."""
    objects = image.objects
    keypoints: list[tuple[float, float]] = []
    owners: list[int] = []
    for index, obj in enumerate(objects):
        for x, y in obj.polygon or ():
            keypoints.append((x - 0.5, y - 0.5))
            owners.append(index)
    out = pipeline(
        image=pixels,
        bboxes=np.array([o.box for o in objects], dtype=np.float32).reshape(-1, 4),
        object_ids=list(range(len(objects))),
        keypoints=np.array(keypoints, dtype=np.float32).reshape(-1, 2),
        keypoint_owners=owners,
    )
    height, width = out["image"].shape[:2]
    polygons: dict[int, list[tuple[float, float]]] = {}
    for (x, y), owner in zip(np.asarray(out["keypoints"]).reshape(-1, 2), out["keypoint_owners"]):
        polygons.setdefault(int(owner), []).append((round(float(x) + 0.5, 4), round(float(y) + 0.5, 4)))
    applied = [(name, dict(params)) for name, params in out["applied_transforms"]]
    moved = []
    for box, index in zip(np.asarray(out["bboxes"]).reshape(-1, 4), out["object_ids"]):
        obj = objects[int(index)]
        polygon = polygons.get(int(index))
        moved.append(
            replace(
                obj,
                box=tuple(round(float(v), 4) for v in box),
                polygon=clip_polygon(tuple(polygon), width, height) if polygon else None,
                description=_follow_text(obj.description, applied),
            )
        )
    caption = _follow_text(image.caption, applied)
    return out["image"], replace(image, objects=tuple(moved), caption=caption, width=width, height=height)


def _moved(image: AnnotatedImage, width: int, height: int, scale: float, dx: float, dy: float) -> AnnotatedImage:
    """Labels under ``x -> scale * x + dx`` (and y alike) on a ``width`` x ``height`` canvas: boxes clipped,
    dropped when under a quarter of them (or 1 px²) stays in view; polygons clipped with them."""
    kept = []
    for obj in image.objects:
        x1, y1, x2, y2 = (scale * obj.box[0] + dx, scale * obj.box[1] + dy, scale * obj.box[2] + dx, scale * obj.box[3] + dy)
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        visible = max(0.0, cx2 - cx1) * max(0.0, cy2 - cy1)
        if visible < max(1.0, 0.25 * (x2 - x1) * (y2 - y1)):
            continue
        polygon = obj.polygon and clip_polygon(tuple((scale * x + dx, scale * y + dy) for x, y in obj.polygon), width, height)
        kept.append(replace(obj, box=tuple(round(v, 4) for v in (cx1, cy1, cx2, cy2)), polygon=polygon or None))
    return replace(image, objects=tuple(kept), width=width, height=height)


def _union(image: AnnotatedImage) -> tuple[float, float, float, float] | None:
    if not image.objects:
        return None
    boxes = np.array([o.box for o in image.objects])
    return float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max())


def box_safe_crop(
    pixels: np.ndarray, image: AnnotatedImage, rng: np.random.Generator, min_side: float
) -> tuple[np.ndarray, AnnotatedImage]:
    """A random window keeping ``min_side``..1 of each side (the aspect may change), widened to hold every box whole.

    A pure slice, so boxes only shift: the processor resizes the window to the model's input later.
    """
    height, width = pixels.shape[:2]
    union = _union(image)
    sides = []
    for size, lo, hi in ((width, 0, 2), (height, 1, 3)):
        keep = int(round(size * rng.uniform(min_side, 1.0)))
        first, last = (math.floor(union[lo]), math.ceil(union[hi])) if union else (size, 0)
        keep = max(keep, last - first, 1)
        start_lo, start_hi = max(0, last - keep), min(first, size - keep) if union else size - keep
        sides.append(int(rng.integers(start_lo, max(start_lo, start_hi) + 1)))
        sides.append(keep)
    x0, w, y0, h = sides
    return pixels[y0 : y0 + h, x0 : x0 + w].copy(), _moved(image, w, h, 1.0, -x0, -y0)


def zoom(pixels: np.ndarray, image: AnnotatedImage, rng: np.random.Generator, amount: float) -> tuple[np.ndarray, AnnotatedImage]:
    """Zoom by a factor in ``[1 - amount, 1 + amount]`` on the same canvas: in, no further than keeps every box
    whole in view; out, with the cloth placed at random on its own mean colour (no mirrored, unlabelled copies)."""
    height, width = pixels.shape[:2]
    factor = float(rng.uniform(1.0 - amount, 1.0 + amount))
    union = _union(image)
    if factor > 1 and union:  # zoom in no further than keeps every box whole (no unlabelled slivers at the edge)
        factor = max(1.0, min(factor, width / max(union[2] - union[0], 1e-6), height / max(union[3] - union[1], 1e-6)))
    offsets = []
    for size, lo, hi in ((width, 0, 2), (height, 1, 3)):
        low, high = sorted((0.0, size - factor * size))  # where the scaled image's left (top) edge may go: the canvas stays covered
        if factor > 1 and union:  # keep the boxes' span in view (the factor above makes sure it fits)
            low, high = max(low, -factor * union[lo]), min(high, size - factor * union[hi])
            high = max(low, high)
        offsets.append(float(rng.uniform(low, high)) if high > low else low)
    dx, dy = offsets
    # cv2 maps pixel centres: continuous x' = f x + d is centre x'-0.5 = f (x-0.5) + (d + 0.5 f - 0.5).
    matrix = np.array([[factor, 0, dx + 0.5 * factor - 0.5], [0, factor, dy + 0.5 * factor - 0.5]], dtype=np.float64)
    fill = tuple(float(v) for v in pixels.reshape(-1, pixels.shape[-1]).mean(axis=0))
    warped = cv2.warpAffine(pixels, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    return warped, _moved(image, width, height, factor, dx, dy)


@dataclass(frozen=True)
class PasteSource:
    """One labelled defect of the training split that copy-paste may put on another image."""

    image_path: Path
    label: str
    box: tuple[float, float, float, float]


def paste_sources(images: Iterable[AnnotatedImage]) -> list[PasteSource]:
    """Every object of ``images`` (each image once, however many task records it has) as a paste source."""
    seen: set[Path] = set()
    sources = []
    for image in images:
        if image.image_path in seen:
            continue
        seen.add(image.image_path)
        sources.extend(
            PasteSource(image.image_path, o.label, o.box) for o in image.objects if o.box[2] - o.box[0] >= 2 <= o.box[3] - o.box[1]
        )
    return sources


def _load_patch(source: PasteSource) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The defect with a margin of its surroundings (RGB), and the defect's box inside the patch."""
    pixels = cv2.imdecode(np.fromfile(source.image_path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise ValueError(f"{source.image_path}: cannot decode image for copy-paste")
    height, width = pixels.shape[:2]
    x1, y1 = max(0, math.floor(source.box[0])), max(0, math.floor(source.box[1]))
    x2, y2 = min(width, math.ceil(source.box[2])), min(height, math.ceil(source.box[3]))
    margin = max(2, round(0.15 * max(x2 - x1, y2 - y1)))
    px1, py1, px2, py2 = max(0, x1 - margin), max(0, y1 - margin), min(width, x2 + margin), min(height, y2 + margin)
    patch = cv2.cvtColor(pixels[py1:py2, px1:px2], cv2.COLOR_BGR2RGB)
    return patch, (x1 - px1, y1 - py1, x2 - px1, y2 - py1)


def _feather(height: int, width: int, inner: tuple[int, int, int, int]) -> np.ndarray:
    """Alpha 1 over the defect's box, fading linearly to 0 across the margin around it."""

    def ramp(size: int, start: int, end: int) -> np.ndarray:
        centres = np.arange(size) + 0.5
        before = centres / start if start > 0 else np.ones(size)
        after = (size - centres) / (size - end) if size > end else np.ones(size)
        return np.clip(np.minimum(before, after), 0.0, 1.0)

    return np.outer(ramp(height, inner[1], inner[3]), ramp(width, inner[0], inner[2]))[..., None]


def copy_paste(
    pixels: np.ndarray, image: AnnotatedImage, sources: list[PasteSource], rng: np.random.Generator, most: int,
    load=_load_patch,
) -> tuple[np.ndarray, AnnotatedImage]:  # fmt: skip
    """Paste 1..``most`` defects of other images at random free places (not touching any box), feathered into the cloth.

    Each patch is turned by a random multiple of 90 degrees and shrunk if it would cover over half a side.
    """
    candidates = [s for s in sources if s.image_path != image.image_path]
    if not candidates:
        return pixels, image
    height, width = pixels.shape[:2]
    out, objects = pixels.copy(), list(image.objects)
    for _ in range(int(rng.integers(1, most + 1))):
        source = candidates[int(rng.integers(len(candidates)))]
        patch, inner = load(source)
        for _turn in range(int(rng.integers(4))):  # np.rot90 (counter-clockwise): (x, y) -> (y, width - x)
            side = patch.shape[1]
            patch, inner = np.rot90(patch).copy(), (inner[1], side - inner[2], inner[3], side - inner[0])
        shrink = min(1.0, 0.5 * width / patch.shape[1], 0.5 * height / patch.shape[0])
        if shrink < 1.0:
            patch = cv2.resize(patch, (max(1, round(patch.shape[1] * shrink)), max(1, round(patch.shape[0] * shrink))),
                               interpolation=cv2.INTER_AREA)  # fmt: skip
            inner = tuple(min(limit, round(v * shrink)) for v, limit in zip(inner, (patch.shape[1], patch.shape[0]) * 2))
        ph, pw = patch.shape[:2]
        if inner[2] - inner[0] < 1 or inner[3] - inner[1] < 1:
            continue
        for _try in range(20):
            x0, y0 = int(rng.integers(0, width - pw + 1)), int(rng.integers(0, height - ph + 1))
            if all(_apart((x0, y0, x0 + pw, y0 + ph), o.box) for o in objects):
                alpha = _feather(ph, pw, inner)
                region = out[y0 : y0 + ph, x0 : x0 + pw].astype(np.float32)
                out[y0 : y0 + ph, x0 : x0 + pw] = np.clip(alpha * patch + (1 - alpha) * region + 0.5, 0, 255).astype(out.dtype)
                box = (float(x0 + inner[0]), float(y0 + inner[1]), float(x0 + inner[2]), float(y0 + inner[3]))
                objects.append(DefectObject(source.label, box))
                break
    return out, replace(image, objects=tuple(objects))


def _apart(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


class OnlineAugmenter:
    """Random augmentation for the training loader: copy-paste, crop, zoom, flips at p=0.5, rotation, colour, extras.

    The custom steps (copy-paste, crop, zoom) each apply with probability 0.5 (copy-paste with
    ``paste_probability``) and draw from their own seeded generator; the albumentations steps from
    per-transform seeds (:func:`compose`).
    """

    def __init__(
        self, horizontal_flip: bool = True, vertical_flip: bool = True, extra: list[A.BasicTransform] | None = None,
        seed: int | None = None, *, rotate90: bool = False, color_jitter: float = 0.0, crop: float = 0.0, scale: float = 0.0,
        paste_probability: float = 0.0, paste_most: int = 2, paste_from: list[PasteSource] | None = None,
    ) -> None:  # fmt: skip
        transforms: list[A.BasicTransform] = []
        if horizontal_flip:
            transforms.append(A.HorizontalFlip(p=0.5))
        if vertical_flip:
            transforms.append(A.VerticalFlip(p=0.5))
        if rotate90:
            transforms.append(A.RandomRotate90(p=1.0))
        if color_jitter > 0:
            transforms.append(A.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter,
                                            hue=min(0.5, color_jitter / 10), p=0.8))  # fmt: skip
        self.pipeline = compose(transforms + list(extra or []), seed=seed)
        self.rng = np.random.default_rng(seed)
        self.crop, self.scale = crop, scale
        self.paste_probability, self.paste_most, self.paste_from = paste_probability, paste_most, list(paste_from or [])

    def __call__(self, pixels: np.ndarray, image: AnnotatedImage, task: str | None = None) -> tuple[np.ndarray, AnnotatedImage]:
        """Augment one record's image; ``task`` "grounding" gets no pasted defects (its caption would not name them)."""
        if self.paste_from and task != "grounding" and self.rng.random() < self.paste_probability:
            pixels, image = copy_paste(pixels, image, self.paste_from, self.rng, self.paste_most)
        if self.crop > 0 and self.rng.random() < 0.5:
            pixels, image = box_safe_crop(pixels, image, self.rng, 1.0 - self.crop)
        if self.scale > 0 and self.rng.random() < 0.5:
            pixels, image = zoom(pixels, image, self.rng, self.scale)
        return apply(self.pipeline, pixels, image)
