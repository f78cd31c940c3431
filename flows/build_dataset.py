"""The build-dataset flow: import labels in any supported format and write a Florence JSONL training set."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import DEFAULT_CONFIG, RUN_DIR, SAMPLE_FOLDER
from flows.tasks import build_dataset_task
from inspect_core.config import load_config
from inspect_core.dataset_builder import BuildSummary


def split_rows(summary: BuildSummary) -> list[dict[str, object]]:
    """One row per split and class: the objects a model will learn from, where."""
    return [
        {"split": split, "images": stats.images, "class": name, "objects": count}
        for split, stats in summary.splits.items()
        for name, count in (sorted(stats.objects.items()) or [("(none)", 0)])
    ]


def dataset_markdown(summary: BuildSummary) -> str:
    images = {split: stats.images for split, stats in summary.splits.items()}
    lines = [
        f"# Dataset `{summary.output}`",
        "",
        f"- source: `{summary.source}` ({summary.source_format})",
        f"- images per split: {', '.join(f'{k} {v}' for k, v in images.items())}",
        f"- classes: {', '.join(summary.classes) or 'none'}",
        f"- tasks: {', '.join(summary.tasks)} ({summary.order})",
        f"- skipped items: {len(summary.skipped)}",
    ]
    return "\n".join(lines) + "\n"


@flow(name="build-dataset")
def build_dataset(
    source: str = SAMPLE_FOLDER, output: str = f"{RUN_DIR}/dataset", config: str = DEFAULT_CONFIG, overwrite: bool = True
) -> BuildSummary:
    """Build the training set at ``output`` from the labels in ``source`` with the recipe's dataset: and augment: sections."""
    summary = build_dataset_task(load_config(config), source, output, overwrite)
    create_table_artifact(split_rows(summary), key="dataset-objects", description=f"objects per split and class in {output}")
    create_markdown_artifact(dataset_markdown(summary), key="dataset-summary", description=f"dataset {output}")
    return summary
