"""Florence-2 task formats: the prompt (``prefix``) and target (``suffix``) of each training record.

One annotation source yields three tasks:

- ``od``: ``<OD>`` -> ``class<loc x4>class<loc x4>...``
- ``dense``: ``<DENSE_REGION_CAPTION>`` -> ``description<loc x4>...``
- ``grounding``: ``<CAPTION_TO_PHRASE_GROUNDING>caption`` -> ``phrase<loc x4>[<loc x4>...]...``

Objects in a target follow :func:`inspect_core.data.annotations.sort_objects`, so equal inputs give
byte-identical targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inspect_core.data.annotations import AnnotatedImage, sort_objects
from inspect_core.data.loc_tokens import LOC_BINS, encode_box

TASK_PROMPTS: dict[str, str] = {
    "od": "<OD>",
    "dense": "<DENSE_REGION_CAPTION>",
    "grounding": "<CAPTION_TO_PHRASE_GROUNDING>",
}
TASK_ORDER: tuple[str, ...] = ("od", "dense", "grounding")


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One line of a Florence JSONL file."""

    image: str
    prefix: str
    suffix: str

    @property
    def task(self) -> str:
        return task_of_prefix(self.prefix)

    def as_json(self) -> dict[str, str]:
        return {"image": self.image, "prefix": self.prefix, "suffix": self.suffix}


def task_of_prefix(prefix: str) -> str:
    """Task name of a prompt; the grounding prompt carries its caption after the task token."""
    for name, token in TASK_PROMPTS.items():
        if prefix == token or (name == "grounding" and prefix.startswith(token)):
            return name
    raise ValueError(f"unknown task prompt {prefix!r}; expected one of {', '.join(TASK_PROMPTS.values())}")


def caption_for(image: AnnotatedImage) -> str:
    """The image caption, or one composed from its defect phrases when the source had none."""
    if image.caption:
        return image.caption
    phrases = list(dict.fromkeys(o.phrase for o in sort_objects(image.objects)))
    if not phrases:
        return "fabric with no visible defects"
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"fabric with {listed}"


def _boxes_target(image: AnnotatedImage, text_of) -> str:
    return "".join(text_of(obj) + encode_box(obj.box, image.width, image.height) for obj in sort_objects(image.objects))


def grounding_target(image: AnnotatedImage) -> str:
    """Phrases in reading order of their first box; a repeated phrase carries all its boxes."""
    grouped: dict[str, list[str]] = {}
    for obj in sort_objects(image.objects):
        grouped.setdefault(obj.phrase, []).append(encode_box(obj.box, image.width, image.height))
    return "".join(phrase + "".join(boxes) for phrase, boxes in grouped.items())


def task_record(image: AnnotatedImage, task: str, image_name: str) -> TaskRecord | None:
    """The record of ``task`` for one image, or None when the task has nothing to learn from it."""
    if task == "od":
        return TaskRecord(image_name, TASK_PROMPTS["od"], _boxes_target(image, lambda o: o.label))
    if task == "dense":
        return TaskRecord(image_name, TASK_PROMPTS["dense"], _boxes_target(image, lambda o: o.phrase))
    if task == "grounding":
        if not image.objects:
            return None  # nothing to ground in a clean image
        return TaskRecord(image_name, TASK_PROMPTS["grounding"] + caption_for(image), grounding_target(image))
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASK_ORDER)}")


_SEGMENT = re.compile(r"([^<]*)((?:<loc_[0-9]{1,6}>)+)")
_LOC_VALUE = re.compile(r"<loc_([0-9]{1,6})>")


def parse_target(suffix: str) -> list[tuple[str, list[tuple[int, int, int, int]]]]:
    """Parse a target into ``(text, [loc boxes])`` pairs; raise ``ValueError`` on anything else.

    Rejects text without boxes, loc counts that are not a multiple of four and values above 999.
    """
    pairs: list[tuple[str, list[tuple[int, int, int, int]]]] = []
    position = 0
    # Anchored matches, one after the other: searching (finditer) is quadratic on a long target without boxes.
    while (match := _SEGMENT.match(suffix, position)) is not None:
        text = match.group(1).strip()
        values = [int(v) for v in _LOC_VALUE.findall(match.group(2))]
        if not text:
            raise ValueError(f"boxes at character {match.start()} have no label text before them")
        if len(values) % 4:
            raise ValueError(f"'{text}' has {len(values)} loc tokens; boxes need 4 each")
        too_big = [v for v in values if v >= LOC_BINS]
        if too_big:
            raise ValueError(f"'{text}' has loc value {too_big[0]} > {LOC_BINS - 1}")
        pairs.append((text, [tuple(values[i : i + 4]) for i in range(0, len(values), 4)]))  # type: ignore[misc]
        position = match.end()
    rest = suffix[position:].strip()
    if rest:
        raise ValueError(f"cannot parse {rest[:40]!r} at character {position}: expected text followed by <loc_N> x4")
    return pairs
