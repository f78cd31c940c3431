"""`inspect-core dataset build|stats|synth`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from inspect_core.cli.common import USER_ERRORS, _fail, app, console, errors
from inspect_core.cli.recipe_options import SetOption, recipe
from inspect_core.config import InspectConfig
from inspect_core.data.dataset_builder import BuildSummary
from inspect_core.data.dataset_stats import SplitStats, built_dataset_stats, stats_as_dict
from inspect_core.data.importers import FORMATS

dataset_app = typer.Typer(help="Import labels (VOC, COCO, YOLO, masks, Florence JSONL) and build training sets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


def _stats_table(title: str, splits: dict[str, SplitStats]) -> Table:
    """One column per split, one row per count: stays narrow however many classes there are."""
    classes = sorted({c for s in splits.values() for c in s.objects})
    tasks = [t for t in ("od", "dense", "grounding") if any(t in s.records for s in splits.values())]
    table = Table(title=escape(title), title_justify="left")
    table.add_column("")
    for split in splits:
        table.add_column(split, justify="right")
    rows = [("images", lambda s: s.images), ("source images", lambda s: s.source_images), ("clean images", lambda s: s.clean_images)]
    rows += [(f"objects: {c}", lambda s, c=c: s.objects.get(c, 0)) for c in classes]
    rows += [(f"records: {t}", lambda s, t=t: s.records.get(t, 0)) for t in tasks]
    for name, value in rows:
        table.add_row(escape(name), *(str(value(s)) for s in splits.values()))
    return table


def _print_summary(summary: BuildSummary, as_json: bool) -> None:
    if as_json:
        payload = asdict(summary) | {"output": str(summary.output), "source": str(summary.source), "splits": stats_as_dict(summary.splits)}
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(_stats_table(f"{summary.output} ({summary.source_format} import, order: {summary.order})", summary.splits))
    if summary.skipped:
        console.print(f"[yellow]{len(summary.skipped)} item(s) skipped[/]: see {escape(str(summary.output / 'skipped.json'))}")


def run_build(config: InspectConfig, out: Path, overwrite: bool) -> BuildSummary:
    """Import ``config.dataset.source`` and build the dataset at ``out`` with progress bars (the pipeline's build stage)."""
    from inspect_core.cli.progress import stage_progress
    from inspect_core.pipeline import build

    with stage_progress() as hooks:
        return build(config, out, overwrite=overwrite, hooks=hooks)


@dataset_app.command("build")
def dataset_build(
    source: Annotated[Path | None, typer.Option(help="Folder with images and labels.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (Florence JSONL, maestro layout).")] = None,
    format: Annotated[str | None, typer.Option(help=f"Label format: auto or one of {', '.join(FORMATS)}.")] = None,
    augment: Annotated[
        bool | None, typer.Option("--augment/--no-augment", help="Materialise flipped_h_/flipped_v_ copies of training images.")
    ] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks: od,dense,grounding.")] = None,
    order: Annotated[str | None, typer.Option(help="Task order in training: sequential or interleaved.")] = None,
    skip_invalid: Annotated[
        bool | None, typer.Option("--skip-invalid/--strict", help="Skip bad items and write skipped.json instead of failing.")
    ] = None,
    mask_class: Annotated[str | None, typer.Option(help="Class name for regions of binary masks.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for split assignment.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML recipe; options given here override it.")] = None,
    sets: SetOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Import labels and write a mixed-task Florence JSONL dataset.

    Example: inspect-core dataset build --source sample_data/fabric_voc --out runs/dataset --augment
    """
    try:
        flags = {
            "dataset.source": source,
            "dataset.format": format,
            "dataset.order": order,
            "dataset.skip_invalid": skip_invalid,
            "dataset.mask_class": mask_class,
            "dataset.seed": seed,
            "dataset.output": out,
            "dataset.tasks": [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
            "augment.offline": augment,
        }
        cfg = recipe(config, sets, flags)
        summary = run_build(cfg, cfg.dataset.output, overwrite)
    except USER_ERRORS as error:
        _fail(error)
    _print_summary(summary, as_json)


@dataset_app.command("stats")
def dataset_stats(
    path: Annotated[Path, typer.Argument(help="A built Florence JSONL dataset folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Images, objects per class and records per task, per split."""
    try:
        stats = built_dataset_stats(path)
    except USER_ERRORS as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(stats_as_dict(stats), indent=2))
    else:
        console.print(_stats_table(str(path), stats))


@dataset_app.command("synth")
def dataset_synth(
    out: Annotated[Path, typer.Option(help="Folder for images + LabelImg VOC XML.")],
    count: Annotated[int, typer.Option(min=1, help="Number of images.")] = 48,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same images.")] = 0,
    size: Annotated[int, typer.Option(min=64, help="Image side in pixels.")] = 512,
) -> None:
    """Generate synthetic fabric images with defects, labelled as LabelImg VOC XML."""
    from inspect_core.data.synthetic_fabric import write_voc_dataset

    with errors.status(f"generating {count} images"):
        written = write_voc_dataset(out, count=count, seed=seed, size=size)
    console.print(f"wrote {len(written)} images with VOC labels to {out}", markup=False, highlight=False)
