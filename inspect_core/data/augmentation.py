"""Albumentations augmentation that keeps boxes and polygons on the pixels they label.

Two uses:

- offline: :data:`OFFLINE_FLIPS` materialise ``flipped_h_*`` / ``flipped_v_*`` copies at build time;
- online: :class:`OnlineAugmenter` applies random flips and the configured extra transforms each
  time the training loader reads an image.

Text follows the pixels too: after a flip, position words in descriptions and captions are mirrored
("near the left selvage" becomes "near the right selvage"); other geometric extras leave text as is.

Polygon vertices travel as albumentations keypoints. Keypoints use pixel-centre coordinates while
our boxes and polygons use continuous ones, so vertices are shifted by half a pixel on the way in
and out; a flip then maps ``x -> width - x`` for boxes and polygons alike.
"""

from __future__ import annotations

import re
from dataclasses import replace

import albumentations as A
import numpy as np

from inspect_core.config import extra_transform
from inspect_core.data.annotations import AnnotatedImage, clip_polygon

__all__ = ["OFFLINE_FLIPS", "OnlineAugmenter", "apply", "compose", "extra_transform", "mirror_text"]

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


def mirror_text(text: str | None, transform_name: str) -> str | None:
    """Swap the position words a flip mirrors, keeping capitalisation."""
    swaps = _MIRRORED_WORDS.get(transform_name)
    if not text or not swaps:
        return text

    def swap(match: re.Match[str]) -> str:
        word = swaps[match.group(0).lower()]
        return word.capitalize() if match.group(0)[0].isupper() else word

    return re.sub(r"\b(" + "|".join(swaps) + r")\b", swap, text, flags=re.IGNORECASE)


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
    applied = [name for name, _params in out["applied_transforms"]]
    moved = []
    for box, index in zip(np.asarray(out["bboxes"]).reshape(-1, 4), out["object_ids"]):
        obj = objects[int(index)]
        polygon = polygons.get(int(index))
        description = obj.description
        for name in applied:
            description = mirror_text(description, name)
        moved.append(
            replace(
                obj,
                box=tuple(round(float(v), 4) for v in box),
                polygon=clip_polygon(tuple(polygon), width, height) if polygon else None,
                description=description,
            )
        )
    caption = image.caption
    for name in applied:
        caption = mirror_text(caption, name)
    return out["image"], replace(image, objects=tuple(moved), caption=caption, width=width, height=height)


class OnlineAugmenter:
    """Random augmentation for the training loader: flips at p=0.5 plus configured extras."""

    def __init__(
        self, horizontal_flip: bool = True, vertical_flip: bool = True, extra: list[A.BasicTransform] | None = None, seed: int | None = None
    ) -> None:
        transforms: list[A.BasicTransform] = []
        if horizontal_flip:
            transforms.append(A.HorizontalFlip(p=0.5))
        if vertical_flip:
            transforms.append(A.VerticalFlip(p=0.5))
        self.pipeline = compose(transforms + list(extra or []), seed=seed)

    def __call__(self, pixels: np.ndarray, image: AnnotatedImage) -> tuple[np.ndarray, AnnotatedImage]:
        return apply(self.pipeline, pixels, image)
