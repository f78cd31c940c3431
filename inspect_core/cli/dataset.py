"""`inspect-core dataset build|stats|synth`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from inspect_core.cli.common import USER_ERRORS, _fail, app, console, deprecated, errors, renamed
from inspect_core.cli.recipe_options import SetOption, recipe, recipe_default, require
from inspect_core.config import InspectConfig
from inspect_core.data.dataset_builder import BuildSummary
from inspect_core.data.dataset_stats import SplitStats, built_dataset_stats, stats_as_dict
from inspect_core.data.importers import FORMATS
from inspect_core.errors import UsageError

_DEFAULT = InspectConfig()

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
    if as_json:  # the warnings are in the JSON (and dataset.json): nothing else is printed, so 2>&1 still parses
        payload = asdict(summary) | {"output": str(summary.output), "source": str(summary.source), "splits": stats_as_dict(summary.splits)}
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(_stats_table(f"{summary.output} ({summary.source_format} import, order: {summary.order})", summary.splits))
    for warning in summary.warnings:
        errors.print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    if summary.skipped:
        console.print(f"[yellow]{len(summary.skipped)} item(s) skipped[/]: see {escape(str(summary.output / 'skipped.json'))}")


def run_build(config: InspectConfig, out: Path, overwrite: bool) -> BuildSummary:
    """Import ``config.dataset.source`` and build the dataset at ``out`` with progress bars (the pipeline's build stage)."""
    from inspect_core.cli.progress import stage_progress
    from inspect_core.pipeline import build

    with stage_progress() as hooks:
        return build(config, out, overwrite=overwrite, hooks=hooks)


def _recipe_option(key: str, help_text: str, *names: str, shown: str | None = None) -> Any:
    """A flag that sets recipe ``key`` (None when not given, so the recipe holds the default, which --help shows)."""
    return typer.Option(*names, help=help_text, show_default=shown or recipe_default(key))


def _shares(split: str | None) -> dict[str, str] | None:
    """``--split 0.7,0.1,0.2`` as the recipe's ``dataset.splits`` (the recipe checks the numbers and their sum)."""
    if split is None:
        return None
    shares = [share.strip() for share in split.split(",")]
    if len(shares) != 3:
        raise UsageError(f"--split {split}: expected three shares train,valid,test such as 0.7,0.1,0.2")
    return dict(zip(("train", "valid", "test"), shares))


_SPLITS = ",".join(f"{share:g}" for share in _DEFAULT.dataset.splits.model_dump().values())
_FORMATS = f"Label format: auto or one of {', '.join(FORMATS)}."


@dataset_app.command("build")
def dataset_build(
    images: Annotated[
        Path | None,
        typer.Option(help="Folder with the images and their labels (or a COCO JSON / JSONL file); or dataset.source of --config."),
    ] = None,
    out: Annotated[Path | None, _recipe_option("dataset.output", "Output folder (Florence JSONL, maestro layout).")] = None,
    label_format: Annotated[str | None, _recipe_option("dataset.format", _FORMATS)] = None,
    augment: Annotated[
        bool | None,
        _recipe_option("augment.offline", "Materialise flipped_h_/flipped_v_ copies of training images.", "--augment/--no-augment"),
    ] = None,
    tasks: Annotated[str | None, _recipe_option("dataset.tasks", "Comma-separated tasks: od,dense,grounding.")] = None,
    order: Annotated[str | None, _recipe_option("dataset.order", "Task order in training: sequential or interleaved.")] = None,
    skip_invalid: Annotated[
        bool | None,
        _recipe_option("dataset.skip_invalid", "Skip bad items and write skipped.json instead of failing.", "--skip-invalid/--strict"),
    ] = None,
    mask_class: Annotated[str | None, _recipe_option("dataset.mask_class", "Class name for regions of binary masks.")] = None,
    class_map: Annotated[
        str | None,
        _recipe_option(
            "dataset.class_map",
            "Source class id or name -> class name for every label: '1:cut,2:hole', 'Hole:hole', or a "
            "YAML/JSON file of such pairs. For 1-based YOLO exports; an unlisted label is an error.",
        ),
    ] = None,
    data_yaml: Annotated[
        Path | None,
        _recipe_option("dataset.data_yaml", "YOLO class names file, when not in the source, its config/, ../config/ or the parent folder."),
    ] = None,
    split: Annotated[
        str | None,
        _recipe_option(
            "dataset.splits",
            "Train,valid,test shares, e.g. 0.7,0.1,0.2: for images without a split folder (all with --resplit).",
            shown=f"{_SPLITS}, recipe dataset.splits",
        ),
    ] = None,
    resplit: Annotated[
        bool | None,
        _recipe_option(
            "dataset.resplit", "Ignore the source's train/valid/test folders and split every image by --split.", "--resplit/--keep-splits"
        ),
    ] = None,
    seed: Annotated[int | None, _recipe_option("dataset.seed", "Seed for split assignment.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML recipe; options given here override it.")] = None,
    sets: SetOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    old_source: Annotated[Path | None, deprecated("--source", "--images")] = None,
    old_format: Annotated[str | None, deprecated("--format", "--label-format")] = None,
) -> None:
    """Import labels and write a mixed-task Florence JSONL dataset.

    --images (or dataset.source in the --config recipe) is required: nothing is built from a default folder.
    Warns (stderr, or the --json summary; and dataset.json) when valid or test is too small to evaluate on.

    Example: inspect-core dataset build --images sample_data/fabric_voc --out runs/dataset --augment

    Example: inspect-core dataset build --images plant_export --class-map '1:cut,2:hole' --split 0.7,0.15,0.15 --resplit
    """
    try:
        images = renamed(images, old_source, "--images", "--source")
        label_format = renamed(label_format, old_format, "--label-format", "--format")
        flags = {
            "dataset.source": images,
            "dataset.format": label_format,
            "dataset.order": order,
            "dataset.skip_invalid": skip_invalid,
            "dataset.mask_class": mask_class,
            "dataset.class_map": class_map,
            "dataset.data_yaml": data_yaml,
            "dataset.splits": _shares(split),
            "dataset.resplit": resplit,
            "dataset.seed": seed,
            "dataset.output": out,
            "dataset.tasks": [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
            "augment.offline": augment,
        }
        cfg = recipe(config, sets, flags)
        require(cfg, "dataset.source", "--images", "--images sample_data/fabric_voc")
        summary = run_build(cfg, cfg.dataset.output, overwrite)
    except USER_ERRORS as error:
        _fail(error)
    _print_summary(summary, as_json)


@dataset_app.command("stats")
def dataset_stats(
    path: Annotated[Path, typer.Argument(help="A built Florence JSONL dataset folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Images, objects per class and records per task, per split.

    Example: inspect-core dataset stats runs/dataset --json
    """
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
    size: Annotated[int, typer.Option(min=64, help="Image side in pixels (the height of a --width strip).")] = 512,
    style: Annotated[
        str,
        typer.Option(
            help="default: the project's generator (the sample data); randomised: domain randomisation for pretraining "
            "(structures, scales, backgrounds, camera effects, varied defects); heldout: an independent generator family "
            "that pretraining never sees, to test whether a model generalises."
        ),
    ] = "default",
    width: Annotated[
        int | None, typer.Option(min=64, help="Randomised style only: line-scan strips this wide, cloth between blank margins.")
    ] = None,
) -> None:
    """Generate synthetic fabric images with defects, labelled as LabelImg VOC XML.

    Example: inspect-core dataset synth --out sample_data/fabric_voc --count 48 --seed 7 --size 384
    Example: inspect-core dataset synth --style heldout --out runs/heldout_voc --count 100 --size 256
    """
    from inspect_core.data.synthetic_fabric import write_voc_dataset

    try:
        with errors.status(f"generating {count} images"):
            written = write_voc_dataset(out, count=count, seed=seed, size=size, style=style, width=width)
    except USER_ERRORS as error:
        _fail(error)
    console.print(f"wrote {len(written)} {style} images with VOC labels to {out}", markup=False, highlight=False)
