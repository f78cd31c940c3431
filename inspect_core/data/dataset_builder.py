"""Build a Florence JSONL training set (maestro layout) from an import.

``out/{train,valid,test}/`` hold the images and ``annotations.jsonl``; ``out/dataset.json`` records
classes, tasks, task order, counts and the warnings about splits too small to evaluate on
(:func:`split_warnings`); ``out/skipped.json`` lists what ``--skip-invalid`` left out.
Everything is written to a temporary sibling folder and renamed into place only when complete (see
:mod:`inspect_core.data.build_output`), so a failed build leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from inspect_core import __version__
from inspect_core.config import AugmentSection, DatasetSection, SplitRatios
from inspect_core.data.annotations import SPLITS, AnnotatedImage, text_problem
from inspect_core.data.augmentation import OFFLINE_FLIPS, apply, compose
from inspect_core.data.build_output import atomic_directory
from inspect_core.data.dataset_stats import SplitStats, split_stats
from inspect_core.data.florence_tasks import TASK_ORDER, TaskRecord, task_record
from inspect_core.data.importers import ImportResult
from inspect_core.data.importers.florence_jsonl import ANNOTATIONS_FILE
from inspect_core.data.worker_lifetime import die_with_parent
from inspect_core.errors import BadInputError, UsageError

# Forked workers start at once; forkserver/spawn re-import albumentations and cv2 (~3 s here).
_FAST_START = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None

MANIFEST = "dataset.json"
SKIP_REPORT = "skipped.json"
JPEG_QUALITY = 95


@dataclass
class BuildSummary:
    output: Path
    source: Path
    source_format: str
    classes: list[str]
    tasks: list[str]
    order: str
    splits: dict[str, SplitStats]
    skipped: list[dict[str, str]]
    warnings: list[str] = field(default_factory=list)  # splits too small for a useful evaluation (split_warnings)


# Below these a split still builds, with a warning. One image of 10 moves an image-level score by 10 points; a real-fabric
# fine-tune that picked "best" on 6 validation images kept epoch 1 by a tie at 0 (test mAP@50 0.00 where the last epoch
# had 0.08, issue 15); a class with 2 objects has an AP that can only take a few values (each object is half its recall).
MIN_EVAL_IMAGES = 10
MIN_EVAL_OBJECTS = 3


def split_warnings(images: list[AnnotatedImage]) -> list[str]:
    """What makes valid or test too small to judge a model on: fewer than ``MIN_EVAL_IMAGES`` source images, or a class
    (of those in the dataset) with fewer than ``MIN_EVAL_OBJECTS`` objects there."""
    classes = sorted({o.label for i in images for o in i.objects})
    found = []
    for split in ("valid", "test"):
        members = [i for i in images if i.split == split]
        count = len({i.source_key for i in members})
        if count < MIN_EVAL_IMAGES:
            found.append(f"{split} has {count} source image(s), fewer than {MIN_EVAL_IMAGES}: its scores move by 10+ points per "
                         "image; give it a larger share (--split, and --resplit to override the source's split folders)")  # fmt: skip
        objects = Counter(o.label for i in members for o in i.objects)
        few = [f"{c} ({objects[c]})" for c in classes if objects[c] < MIN_EVAL_OBJECTS]
        if few:
            found.append(f"{split} has fewer than {MIN_EVAL_OBJECTS} objects of {', '.join(few)}: those classes' AP there is noise")
    return found


def assign_splits(images: list[AnnotatedImage], ratios: SplitRatios, seed: int, resplit: bool = False) -> list[AnnotatedImage]:
    """Give every image a split; images that share a source key always share a split.

    Splits from the source (split folders) are kept unless ``resplit``. The rest are grouped by source key,
    ordered by a seeded hash and cut by the ratios, so the assignment is deterministic and exact in counts.
    """
    if resplit:
        images = [replace(i, split=None) for i in images]
    keys = sorted({i.source_key for i in images if i.split is None})
    keys.sort(key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    n_valid = round(len(keys) * ratios.valid)
    n_test = round(len(keys) * ratios.test)
    if len(keys) >= 3:  # a requested split should not vanish on a small dataset
        n_valid = max(n_valid, 1 if ratios.valid > 0 else 0)
        n_test = max(n_test, 1 if ratios.test > 0 else 0)
    n_train = len(keys) - n_valid - n_test
    split_of = {k: ("train" if i < n_train else "valid" if i < n_train + n_valid else "test") for i, k in enumerate(keys)}
    return [i if i.split is not None else replace(i, split=split_of[i.source_key]) for i in images]


def _output_names(images: list[AnnotatedImage]) -> list[str]:
    """Unique file names per split: the source name, plus a content hash where names collide."""
    seen: dict[tuple[str, str], int] = {}
    for image in images:
        seen[(image.split, image.image_path.name)] = seen.get((image.split, image.image_path.name), 0) + 1
    return [
        image.image_path.name
        if seen[(image.split, image.image_path.name)] == 1
        else f"{image.image_path.stem}_{image.sha256[:8]}{image.image_path.suffix}"
        for image in images
    ]


@cache
def _flip_pipeline(flip: str) -> A.Compose:
    return compose([OFFLINE_FLIPS[flip](p=1.0)])


def _materialise(job: tuple[AnnotatedImage, Path, str, tuple[str, ...]]) -> list[tuple[str, AnnotatedImage]]:
    """Copy one image into its split folder and write its flipped copies (runs in a worker)."""
    image, folder, name, flips = job
    shutil.copyfile(image.image_path, folder / name)
    written = [(name, image)]
    if not flips:
        return written
    # Flips do not care about channel order, so the BGR pixels go through unconverted.
    pixels = cv2.imdecode(np.fromfile(image.image_path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise BadInputError(f"{image.image_path}: cannot decode image for augmentation")
    suffix = ".png" if image.image_path.suffix.lower() == ".png" else ".jpg"
    for flip in flips:
        flipped, moved = apply(_flip_pipeline(flip), pixels, image)
        flipped_name = f"flipped_{flip}_{Path(name).stem}{suffix}"
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if suffix == ".jpg" else []
        ok, encoded = cv2.imencode(suffix, flipped, params)
        if not ok:
            raise BadInputError(f"{image.image_path}: cannot encode the {flip} flip")
        encoded.tofile(str(folder / flipped_name))
        written.append((flipped_name, replace(moved, image_path=folder / flipped_name)))
    return written


def check_texts(images: list[AnnotatedImage]) -> None:
    """Refuse label text that cannot round-trip through a target (for imports made in code; importers refuse it with the file)."""
    for image in images:
        texts = [("caption", image.caption)]
        texts += [(f, t) for o in image.objects for f, t in (("label", o.label), ("description", o.description))]
        for name, text in texts:
            problem = text_problem(text) if text is not None else None
            if problem is not None:
                raise BadInputError(f"{image.image_path}: {name} {problem}")


def _check_not_overwriting_sources(images: list[AnnotatedImage], out: Path) -> None:
    """The source images must not live in the folder this build replaces."""
    target = Path(out).resolve()
    inside = next((i.image_path for i in images if Path(i.image_path).resolve().is_relative_to(target)), None)
    if inside is not None:
        raise UsageError(f"--out {out} holds the source image {inside}; building there would delete it. Choose an output folder "
                         "outside the source")  # fmt: skip


def build_dataset(
    result: ImportResult,
    out: Path,
    dataset: DatasetSection,
    augment: AugmentSection,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BuildSummary:
    """Write the Florence JSONL dataset for an import; returns what was written.

    Workers are bound to this process (:func:`~inspect_core.data.worker_lifetime.die_with_parent`),
    so a killed build leaves no process behind, and the next build removes its staging folder.
    """
    _check_not_overwriting_sources(result.images, out)
    check_texts(result.images)
    images = assign_splits(result.images, dataset.splits, dataset.seed, resplit=dataset.resplit)
    names = _output_names(images)
    flips = tuple(k for k, on in (("h", augment.horizontal_flip), ("v", augment.vertical_flip)) if on)
    tasks = [t for t in TASK_ORDER if t in dataset.tasks]
    with atomic_directory(out, overwrite) as staging:
        for split in SPLITS:
            (staging / split).mkdir()
        jobs = [
            (image, staging / image.split, name, flips if augment.offline and image.split in augment.splits else ())
            for image, name in zip(images, names)
        ]
        by_split: dict[str, list[tuple[str, AnnotatedImage]]] = {s: [] for s in SPLITS}
        workers = dataset.workers or os.cpu_count() or 1
        parallel = workers > 1 and len(jobs) > 8
        pool = (
            ProcessPoolExecutor(max_workers=workers, mp_context=_FAST_START, initializer=die_with_parent, initargs=(os.getpid(),))
            if parallel
            else _InlineExecutor()
        )
        with pool:
            for done, written in enumerate(pool.map(_materialise, jobs, chunksize=2), start=1):
                by_split[written[0][1].split].extend(written)
                if progress:
                    progress(done, len(jobs))
        stats: dict[str, SplitStats] = {}
        for split, entries in by_split.items():
            entries.sort(key=lambda e: e[0])
            records: list[TaskRecord] = [
                r for task in tasks for name, image in entries if (r := task_record(image, task, name)) is not None
            ]
            with (staging / split / ANNOTATIONS_FILE).open("w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(json.dumps(record.as_json(), ensure_ascii=False) + "\n")
            stats[split] = split_stats([image for _name, image in entries], records)
        summary = BuildSummary(
            output=Path(out),
            source=result.root,
            source_format=result.format,
            classes=result.classes,
            tasks=tasks,
            order=dataset.order,
            splits=stats,
            skipped=[e.as_dict() for e in result.skipped],
            warnings=split_warnings(images),
        )
        (staging / MANIFEST).write_text(json.dumps(manifest(summary, augment), indent=2) + "\n", encoding="utf-8")
        if summary.skipped:
            (staging / SKIP_REPORT).write_text(json.dumps(summary.skipped, indent=2) + "\n", encoding="utf-8")
    return summary


def manifest(summary: BuildSummary, augment: AugmentSection) -> dict:
    """What later stages (training, evaluation) read back about the dataset."""
    return {
        "inspect_core_version": __version__,
        "source": str(summary.source),
        "source_format": summary.source_format,
        "classes": summary.classes,
        "tasks": summary.tasks,
        "order": summary.order,
        "augment": augment.model_dump(mode="json"),
        "splits": {
            s: {"images": v.images, "source_images": v.source_images, "objects": v.objects, "records": v.records}
            for s, v in summary.splits.items()
        },
        "skipped": len(summary.skipped),
        "warnings": summary.warnings,
    }


class _InlineExecutor:
    """Same interface as a process pool, for small jobs where forking costs more than it saves."""

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, items, chunksize: int = 1):
        return map(fn, items)
