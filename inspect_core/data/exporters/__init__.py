"""Exporters: reviewed frames out of the results store, as labelled batches and labelling-tool imports.

- ``voc``: a Pascal VOC batch folder (``labelled/<date>/``) that ``dataset build`` and nightly retraining import
- ``label_studio``: Label Studio tasks with the model's boxes as pre-labels (``predictions``)
- ``frames``: the plain values the store hands over (``ExportFrame``); the writers never read the store

Nightly retraining (``inspect_core.training.retraining.new_labelled_batches``) takes every folder directly
under its labelled root (the train flow's ``labelled`` parameter) that is not hidden and changed after the
champion was registered; ``default_batch`` names today's batch under such a root.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from inspect_core.data.exporters.frames import ExportFrame, LabelledBox, ScoredBox, latest_per_image
from inspect_core.data.exporters.images import ExportResult
from inspect_core.data.exporters.label_studio import write_label_studio
from inspect_core.data.exporters.voc import write_voc_batch

# retrain.labelled_root's default; relative to where inspect-core runs (the repository root, as runs/ and sample_data/)
LABELLED_ROOT = Path("labelled")
LABEL_STUDIO_ROOT = Path("label-studio")  # outside the labelled root: a Label Studio import is not a VOC batch
FORMATS = ("voc", "label-studio")


def default_batch(fmt: str, today: date | None = None, labelled_root: Path = LABELLED_ROOT) -> Path:
    """Where an export goes when no folder is named: ``<labelled_root>/<today>`` (VOC, a batch nightly retraining takes;
    the recipe's ``retrain.labelled_root``) or ``label-studio/<today>``. Today is the machine's local date, as a person
    naming the folder would write it."""
    day = (today or date.today()).isoformat()
    return (Path(labelled_root) if fmt == "voc" else LABEL_STUDIO_ROOT) / day


__all__ = ["FORMATS", "LABELLED_ROOT", "LABEL_STUDIO_ROOT", "ExportFrame", "ExportResult", "LabelledBox", "ScoredBox", "default_batch",
           "latest_per_image", "write_label_studio", "write_voc_batch"]  # fmt: skip
