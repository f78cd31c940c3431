"""Import then build: the one way labelled folders become a training set.

The CLI (``dataset build``, ``demo``), the ``build-dataset`` flow and nightly retraining all turn
labelled folders into a Florence JSONL dataset; they used to write the import-then-build sequence
three times, each with its own idea of which recipe fields applied. This module is that sequence,
once: the recipe's ``dataset:`` section says how to import (format, skip-invalid, mask class, class map,
YOLO names file) and how to split, and ``augment:`` what to materialise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from inspect_core.config import AugmentSection, DatasetSection
from inspect_core.data.build_output import check_output_apart
from inspect_core.data.dataset_builder import BuildSummary, build_dataset
from inspect_core.data.importers import ImportResult, import_dataset, parse_class_map
from inspect_core.errors import UsageError


def import_sources(sources: Path | Sequence[Path], dataset: DatasetSection) -> ImportResult:
    """One import of one or several labelled folders (nightly batches); an image in two batches is kept once, with the
    labels of the later folder (a re-review overrides the first one).

    Each folder may be in its own format when ``dataset.format`` is ``auto``.
    """
    folders = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(s) for s in sources]
    if not folders:
        raise UsageError("no labelled folder to import")
    class_map = parse_class_map(dataset.class_map)  # read once, before any folder: a bad map is a usage error up front
    results = [
        import_dataset(f, dataset.format, skip_invalid=dataset.skip_invalid, mask_class=dataset.mask_class, class_map=class_map,
                       data_yaml=dataset.data_yaml)
        for f in folders
    ]  # fmt: skip
    if len(results) == 1:
        return results[0]
    latest = {}  # a frame reviewed again in a later batch (labelled/<date>/, taken in name order) carries its newest labels
    for result in results:
        for image in result.images:
            latest[image.sha256] = image
    images = list(latest.values())
    classes = sorted({c for r in results for c in r.classes})
    return ImportResult(results[0].format, folders[0].parent, images, [e for r in results for e in r.skipped], classes)


def import_and_build(
    sources: Path | Sequence[Path], out: Path, dataset: DatasetSection, augment: AugmentSection, overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None, on_imported: Callable[[ImportResult], None] | None = None,
) -> BuildSummary:  # fmt: skip
    """Import ``sources`` with the recipe's ``dataset:`` settings and write the dataset to ``out``.

    ``on_imported`` sees the import before the (longer) build starts, for a progress bar's total.
    """
    folders = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(s) for s in sources]
    check_output_apart(Path(out), folders)  # before reading anything: --out must never replace a source
    imported = import_sources(folders, dataset)
    if on_imported is not None:
        on_imported(imported)
    return build_dataset(imported, Path(out), dataset, augment, overwrite=overwrite, progress=progress)
