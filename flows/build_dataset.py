"""The build-dataset flow: import labels in any supported format and write a Florence JSONL training set."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import DEFAULT_CONFIG, dotted, flow_recipe
from flows.tasks import build_dataset_task
from inspect_core.data.dataset_builder import BuildSummary


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
    config: str = DEFAULT_CONFIG,
    source: str | None = None,
    output: str | None = None,
    overwrite: bool = True,
    overrides: list[str] | None = None,
) -> BuildSummary:
    """Build the training set with the recipe's dataset: and augment: sections; ``source``/``output`` replace dataset.source/output."""
    recipe = flow_recipe(config, overrides, **dotted("dataset", source=source, output=output))
    output = str(recipe.dataset.output)
    summary = build_dataset_task(recipe, str(recipe.dataset.source), output, overwrite)
    create_table_artifact(split_rows(summary), key="dataset-objects", description=f"objects per split and class in {output}")
    create_markdown_artifact(dataset_markdown(summary), key="dataset-summary", description=f"dataset {output}")
    return summary
