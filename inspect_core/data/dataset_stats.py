"""Summaries of a dataset: images, objects per class and records per task, per split."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inspect_core.data.annotations import AnnotatedImage
from inspect_core.data.florence_tasks import TaskRecord
from inspect_core.data.importers.florence_jsonl import ANNOTATIONS_FILE, import_florence_jsonl, read_task_records
from inspect_core.data.importers.import_result import ImportCollector


@dataclass
class SplitStats:
    images: int = 0
    source_images: int = 0
    clean_images: int = 0
    objects: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)


def split_stats(images: list[AnnotatedImage], records: list[TaskRecord]) -> SplitStats:
    return SplitStats(
        images=len(images),
        source_images=len({i.source_key for i in images}),
        clean_images=sum(1 for i in images if not i.objects),
        objects=dict(sorted(Counter(o.label for i in images for o in i.objects).items())),
        records=dict(Counter(r.task for r in records)),
    )


def stats_as_dict(stats: dict[str, SplitStats]) -> dict[str, dict]:
    return {split: asdict(s) for split, s in stats.items()}


def built_dataset_stats(root: Path) -> dict[str, SplitStats]:
    """Stats of a Florence JSONL dataset on disk (validating it on the way)."""
    result = import_florence_jsonl(Path(root), ImportCollector())
    stats: dict[str, SplitStats] = {}
    for split_file in sorted(Path(root).glob(f"*/{ANNOTATIONS_FILE}")):
        split = split_file.parent.name
        records = read_task_records(split_file)
        stats[split] = split_stats([i for i in result.images if i.split == split], records)
    return stats
