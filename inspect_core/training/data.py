"""Training-time view of a built dataset: task records with online augmentation, in task order.

:class:`FlorenceTaskDataset` serves one split's records as ``(RGB pixels, prefix, suffix)``. With an
:class:`~inspect_core.data.augmentation.OnlineAugmenter`, each read transforms the image and its labels
together and re-renders the record's target from the moved labels, so the loc tokens always match
the pixels the model sees. :class:`TaskOrderSampler` visits records in the order recorded by the
dataset build (``sequential`` or ``interleaved``, see :mod:`inspect_core.data.task_mixing`), and
re-plans it for fewer epochs when a time budget shrinks the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset, Sampler

from inspect_core.config import AugmentSection
from inspect_core.data.annotations import AnnotatedImage
from inspect_core.data.augmentation import OnlineAugmenter, PasteSource, extra_transform
from inspect_core.data.florence_tasks import TaskRecord, task_record
from inspect_core.data.importers.florence_jsonl import ANNOTATIONS_FILE, import_florence_jsonl, read_task_records
from inspect_core.data.importers.import_result import ImportCollector
from inspect_core.data.task_mixing import epoch_plan


def load_rgb(path: Path) -> np.ndarray:
    pixels = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise ValueError(f"{path}: cannot decode image")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def augmenter_from_config(
    augment: AugmentSection, seed: int | None = None, paste_from: list[PasteSource] | None = None
) -> OnlineAugmenter | None:
    """The training loader's augmenter for a recipe, or None when online augmentation is off.

    ``paste_from``: the defects copy-paste may take (:func:`~inspect_core.data.augmentation.paste_sources`
    of the training split); without them ``augment.copy_paste`` pastes nothing.
    """
    if not augment.online:
        return None
    extras = [extra_transform(spec.name, spec.params) for spec in augment.extra]
    return OnlineAugmenter(
        augment.horizontal_flip, augment.vertical_flip, extras, seed=seed, rotate90=augment.rotate90, color_jitter=augment.color_jitter,
        crop=augment.crop, scale=augment.scale, paste_probability=augment.copy_paste, paste_most=augment.copy_paste_max,
        paste_from=paste_from,
    )  # fmt: skip


class FlorenceTaskDataset(Dataset):
    """One split of a Florence JSONL dataset, record by record."""

    def __init__(self, root: Path, split: str, augmenter: OnlineAugmenter | None = None) -> None:
        root = Path(root)
        split_file = root / split / ANNOTATIONS_FILE
        if not split_file.is_file():
            raise FileNotFoundError(f"{split_file}: no such split in the dataset")
        images = import_florence_jsonl(root, ImportCollector(), split=split).images
        annotations = {i.image_path.name: i for i in images}
        self.records: list[TaskRecord] = read_task_records(split_file)
        self._annotations: list[AnnotatedImage] = [annotations[Path(r.image).name] for r in self.records]
        self.augmenter = augmenter

    def __len__(self) -> int:
        return len(self.records)

    def annotation(self, index: int) -> AnnotatedImage:
        """The labels behind record ``index`` (as stored, before any augmentation)."""
        return self._annotations[index]

    def __getitem__(self, index: int) -> tuple[np.ndarray, str, str]:
        record, annotation = self.records[index], self._annotations[index]
        pixels = load_rgb(annotation.image_path)
        if self.augmenter is None:
            return pixels, record.prefix, record.suffix
        pixels, moved = self.augmenter(pixels, annotation, record.task)
        rendered = task_record(moved, record.task, record.image)
        if rendered is None:  # grounding of an image whose objects all left the frame
            return pixels, record.prefix, ""
        return pixels, rendered.prefix, rendered.suffix


class TaskOrderSampler(Sampler[int]):
    """Yields one epoch of the task-ordered plan; call :meth:`set_epoch` before each epoch.

    The plan can change while an epoch runs (a time budget, :mod:`inspect_core.training.budget`):
    the iterator reads it live, so the records not yet drawn follow the new plan.
    """

    def __init__(self, records: list[TaskRecord], order: str, epochs: int, seed: int = 0) -> None:
        self.records, self.order, self.seed = records, order, seed
        self.plan = epoch_plan(records, order, epochs, seed)
        self.epoch = 0
        self._drawn = 0  # records of the current epoch already yielded

    def set_epoch(self, epoch: int) -> None:
        if not 0 <= epoch < len(self.plan):
            raise ValueError(f"epoch {epoch} is outside the planned 0..{len(self.plan) - 1}")
        self.epoch = epoch

    def replan(self, epochs: int, last_epoch_records: int | None = None) -> None:
        """Plan ``epochs`` epochs instead (every task still comes, in order); the last one ``last_epoch_records`` long.

        Epochs already run keep the records they had; the current one keeps those already drawn.
        A shortened last epoch keeps the same share of every task (:func:`balanced_prefix`).
        """
        fresh = epoch_plan(self.records, self.order, epochs, self.seed)
        plan = self.plan[: self.epoch] + fresh[self.epoch :]
        drawn = self.plan[self.epoch][: self._drawn] if self.epoch < len(plan) else []
        if drawn:
            plan[self.epoch] = drawn + plan[self.epoch][len(drawn) :]
        if last_epoch_records is not None and last_epoch_records < len(plan[-1]):
            done = len(drawn) if len(plan) - 1 == self.epoch else 0
            rest = plan[-1][done:]
            plan[-1] = plan[-1][:done] + balanced_prefix(rest, [self.records[i].task for i in rest], max(0, last_epoch_records - done))
        self.plan = plan

    def __iter__(self) -> Iterator[int]:
        self._drawn = 0
        epoch = self.epoch
        while self._drawn < len(self.plan[epoch]):
            self._drawn += 1
            yield self.plan[epoch][self._drawn - 1]

    def __len__(self) -> int:
        return len(self.plan[self.epoch])


def balanced_prefix(items: list[int], tasks: list[str], count: int) -> list[int]:
    """``count`` of ``items``, in their order, keeping each task's share (largest remainder), every task at least once if room."""
    if count >= len(items):
        return list(items)
    groups: dict[str, list[int]] = {}
    for position, task in enumerate(tasks):
        groups.setdefault(task, []).append(position)
    exact = {task: count * len(positions) / len(items) for task, positions in groups.items()}
    quota = {task: int(share) for task, share in exact.items()}
    for task in sorted(groups, key=lambda t: (quota[t] > 0, -(exact[t] - quota[t]))):  # tasks with none first, then largest remainder
        if sum(quota.values()) >= count:
            break
        quota[task] += 1
    kept = sorted(p for task, positions in groups.items() for p in positions[: quota[task]])
    return [items[p] for p in kept]
