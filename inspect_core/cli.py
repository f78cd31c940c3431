"""The ``inspect-core`` command line (typer + rich).

Each command is a thin shell over the library: parse options, call one function, print a summary
(``--json`` for machines). Errors in user input exit with status 2 and a message naming the file,
line and field.
"""

from __future__ import annotations

import glob
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from inspect_core.annotations import AnnotationError
from inspect_core.config import ConfigError, InspectConfig, load_config
from inspect_core.dataset_builder import BuildSummary, build_dataset
from inspect_core.dataset_stats import SplitStats, built_dataset_stats, stats_as_dict
from inspect_core.errors import ModelLoadError
from inspect_core.importers import FORMATS, DatasetImportError, import_dataset

if TYPE_CHECKING:
    from inspect_core.evaluation import EvaluationReport
    from inspect_core.trainer import TrainResult

app = typer.Typer(
    name="inspect-core",
    help="Fabric defect inspection with Florence-2: build datasets, fine-tune, score, report.",
    no_args_is_help=True,
    add_completion=False,
)
dataset_app = typer.Typer(help="Import labels (VOC, COCO, YOLO, masks, Florence JSONL) and build training sets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")

console = Console()
errors = Console(stderr=True)

USER_ERRORS = (AnnotationError, DatasetImportError, ConfigError, FileExistsError, FileNotFoundError, ValueError)


def _fail(error: Exception) -> None:
    errors.print(f"[bold red]error:[/] {error}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


def _config(path: Path | None) -> InspectConfig:
    return load_config(path) if path else InspectConfig()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    )


def _stats_table(title: str, splits: dict[str, SplitStats]) -> Table:
    """One column per split, one row per count: stays narrow however many classes there are."""
    classes = sorted({c for s in splits.values() for c in s.objects})
    tasks = [t for t in ("od", "dense", "grounding") if any(t in s.records for s in splits.values())]
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for split in splits:
        table.add_column(split, justify="right")
    rows = [("images", lambda s: s.images), ("source images", lambda s: s.source_images), ("clean images", lambda s: s.clean_images)]
    rows += [(f"objects: {c}", lambda s, c=c: s.objects.get(c, 0)) for c in classes]
    rows += [(f"records: {t}", lambda s, t=t: s.records.get(t, 0)) for t in tasks]
    for name, value in rows:
        table.add_row(name, *(str(value(s)) for s in splits.values()))
    return table


def _print_summary(summary: BuildSummary, as_json: bool) -> None:
    if as_json:
        payload = asdict(summary) | {"output": str(summary.output), "source": str(summary.source), "splits": stats_as_dict(summary.splits)}
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(_stats_table(f"{summary.output} ({summary.source_format} import, order: {summary.order})", summary.splits))
    if summary.skipped:
        console.print(f"[yellow]{len(summary.skipped)} item(s) skipped[/]: see {summary.output / 'skipped.json'}")


def run_build(config: InspectConfig, out: Path, overwrite: bool) -> BuildSummary:
    """Import ``config.dataset.source`` and build the dataset at ``out`` with progress bars."""
    data = config.dataset
    with errors.status(f"importing {data.source} ({data.format})"):
        result = import_dataset(data.source, data.format, skip_invalid=data.skip_invalid, mask_class=data.mask_class)
    with _progress() as progress:
        task = progress.add_task("writing images", total=len(result.images))
        return build_dataset(
            result,
            out,
            data,
            config.augment,
            overwrite=overwrite,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )


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
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Import labels and write a mixed-task Florence JSONL dataset.

    Example: inspect-core dataset build --source sample_data/fabric_voc --out runs/dataset --augment
    """
    try:
        cfg = _config(config)
        overrides = {
            "source": source,
            "format": format,
            "order": order,
            "skip_invalid": skip_invalid,
            "mask_class": mask_class,
            "seed": seed,
            "output": out,
            "tasks": [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
        }
        dataset = cfg.dataset.model_validate(cfg.dataset.model_dump() | {k: v for k, v in overrides.items() if v is not None})
        augment_section = cfg.augment.model_validate(cfg.augment.model_dump() | ({"offline": augment} if augment is not None else {}))
        cfg = cfg.model_copy(update={"dataset": dataset, "augment": augment_section})
        summary = run_build(cfg, dataset.output, overwrite)
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
    from inspect_core.synthetic_fabric import write_voc_dataset

    with errors.status(f"generating {count} images"):
        written = write_voc_dataset(out, count=count, seed=seed, size=size)
    console.print(f"wrote {len(written)} images with VOC labels to {out}")


def _training_progress() -> tuple[Progress, Callable[[int, int], None], Callable[[dict], None]]:
    progress = _progress()
    task = progress.add_task("epoch 1", total=None)
    epoch = {"n": 1}

    def on_step(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total, description=f"epoch {epoch['n']}")

    def on_epoch(entry: dict) -> None:
        scores = " ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch" and isinstance(v, float))
        progress.console.print(f"epoch {entry['epoch']}: {scores}")
        epoch["n"] = entry["epoch"] + 1

    return progress, on_step, on_epoch


def run_training(config: InspectConfig, dataset: Path, output: Path, resume: bool) -> TrainResult:
    from inspect_core.trainer import train

    if not (dataset / "dataset.json").is_file():
        raise FileNotFoundError(f"{dataset} is not a built dataset; build it first: inspect-core dataset build --out {dataset}")
    progress, on_step, on_epoch = _training_progress()
    with progress:
        return train(config, dataset, output, resume=resume, on_step=on_step, on_epoch=on_epoch)


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="YAML recipe (model, lora, train sections).")],
    dataset: Annotated[Path | None, typer.Option(help="Built dataset; default: dataset.output of the recipe.")] = None,
    output: Annotated[Path | None, typer.Option(help="Run folder; default: train.output_dir of the recipe.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --output from its latest checkpoint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fine-tune Florence-2 with LoRA (or another strategy) on a built dataset.

    Writes best/ and latest/ checkpoints, metrics.json and loss_curve.png to the run folder.
    Example: inspect-core train --config configs/florence2-base-3090.yaml --dataset runs/base/dataset
    """
    try:
        cfg = load_config(config)
        result = run_training(cfg, dataset or cfg.dataset.output, output or cfg.train.output_dir, resume)
    except (*USER_ERRORS, ModelLoadError) as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        console.print(
            f"{result.stopped} after {result.epochs_run} epoch(s); "
            f"best {result.metric_name} {result.best_metric} at epoch {result.best_epoch}"
        )
        console.print(f"checkpoints: {result.output_dir / 'best'} (best), {result.output_dir / 'latest'} (latest)")


def _print_evaluation(report: EvaluationReport) -> None:
    if report.detection:
        table = Table(
            title=f"{report.split}: mAP@50 {report.detection.map50:.3f}, mAP@50:95 {report.detection.map50_95:.3f}", title_justify="left"
        )
        for column in ("class", "AP@50", "AP@50:95", "instances"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for name, values in report.detection.per_class.items():
            table.add_row(name, f"{values['ap50']:.3f}", f"{values['ap50_95']:.3f}", str(values["instances"]))
        console.print(table)
    for task, metrics in report.text.items():
        console.print(
            f"{task}: WER {metrics['wer']:.3f}, CER {metrics['cer']:.3f}, Levenshtein similarity {metrics['levenshtein_similarity']:.3f}"
        )


@app.command()
def evaluate(
    model: Annotated[str, typer.Option(help="Checkpoint folder (best/, latest/), merged model folder, 'tiny' or a hub id.")],
    dataset: Annotated[Path, typer.Option(help="Built dataset folder.")],
    split: Annotated[str, typer.Option(help="train, valid or test.")] = "test",
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    plots: Annotated[Path | None, typer.Option(help="Folder for the confusion matrix and PR-curve PNGs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """mAP@50, mAP@50:95 and per-class AP (real confidences), plus text metrics for dense/grounding."""
    from inspect_core.evaluation import evaluate_split
    from inspect_core.trained_model import load_trained

    try:
        loaded, processor = load_trained(model)
        report = evaluate_split(loaded, processor, dataset, split, batch_size, max_new_tokens, plots)
    except (*USER_ERRORS, ModelLoadError) as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_evaluation(report)


@app.command()
def merge(
    model: Annotated[Path, typer.Option(help="Checkpoint folder with a LoRA adapter (e.g. runs/train/best).")],
    out: Annotated[Path, typer.Option(help="Folder for the merged model (safetensors + processor).")],
) -> None:
    """Fold the LoRA adapter into the base weights: a plain Florence-2 for serving and ONNX export."""
    from inspect_core.trained_model import merge_checkpoint

    try:
        merged = merge_checkpoint(model, out)
    except (*USER_ERRORS, ModelLoadError) as error:
        _fail(error)
    console.print(f"merged model written to {merged}")


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="Recipe to run.")] = Path("configs/demo.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """The plant's workflow in small, on the embedded default: build the sample dataset, fine-tune the
    shipped tiny Florence-2 with LoRA, and score the held-out test split."""
    from inspect_core.evaluation import evaluate_split
    from inspect_core.trained_model import load_trained

    try:
        cfg = load_config(config)
        summary = run_build(cfg, cfg.dataset.output, overwrite=True)
        if not as_json:
            _print_summary(summary, as_json=False)
        shutil.rmtree(cfg.train.output_dir, ignore_errors=True)
        result = run_training(cfg, cfg.dataset.output, cfg.train.output_dir, resume=False)
        model, processor = load_trained(cfg.train.output_dir / "best")
        report = evaluate_split(
            model, processor, cfg.dataset.output, "test", cfg.train.batch_size, cfg.train.max_new_tokens, cfg.train.output_dir
        )
    except (*USER_ERRORS, ModelLoadError) as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps({"dataset": str(summary.output), "training": result.as_dict(), "test": report.as_dict()}, indent=2))
        return
    console.print(f"fine-tuned {cfg.model.name} ({cfg.lora.strategy}) for {result.epochs_run} epoch(s): {result.output_dir / 'best'}")
    _print_evaluation(report)


def _collect_images(spec: str) -> list[Path]:
    """A folder (searched recursively for image files) or a glob pattern, sorted."""
    from inspect_core.importers.image_files import IMAGE_SUFFIXES

    folder = Path(spec).expanduser()
    if folder.is_dir():
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    matches = sorted(Path(p) for p in glob.glob(str(folder), recursive=True) if Path(p).is_file())
    if not matches:
        raise FileNotFoundError(f"--images {spec}: no such folder, and the pattern matches no file")
    return matches


@app.command()
def score(
    images: Annotated[str, typer.Option(help="A folder (searched recursively) or a glob such as 'frames/**/*.png'.")],
    model: Annotated[str, typer.Option(help="`tiny`, a merged model folder or a training checkpoint folder.")] = "tiny",
    db: Annotated[str | None, typer.Option(help="Results store URL (sqlite:///file.db or postgresql+psycopg://...).")] = None,
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; its score: and store: sections apply.")] = None,
    backend: Annotated[str | None, typer.Option(help="torch or onnx (an `export onnx` folder as --model).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images (or tiles) per generate call.")] = None,
    tile: Annotated[bool | None, typer.Option("--tile/--no-tile", help="Score large or line-scan images as overlapping tiles.")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id recorded with every image (with --line).")] = None,
    line: Annotated[str | None, typer.Option(help="Production line of that camera.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Score images into the results store: defects with class, box and confidence.

    Images already scored by the same model are skipped, so re-running after a crash (even kill -9)
    finishes the job with every image scored exactly once. Files that cannot be read go to the
    quarantine table with the reason; the batch goes on.

    Example: inspect-core score --images frames/ --model runs/train/best --db sqlite:///results.db --camera cam-3 --line L2
    """
    from inspect_core.results_store import StoreUnavailableError, ensure_source, open_store
    from inspect_core.scoring import score_images

    try:
        recipe = _config(config)
        overrides = {k: v for k, v in {"backend": backend, "batch_size": batch_size, "tile": tile}.items() if v is not None}
        settings = recipe.score.model_validate({**recipe.score.model_dump(), **overrides})
        paths = _collect_images(images)
        if (camera is None) != (line is None):
            raise ValueError("--camera and --line go together: a camera is always over a line")
        engine = open_store(db or recipe.store.url)
        source_id = ensure_source(engine, camera, line) if camera else None
        with _progress() as progress:
            task = progress.add_task("scoring", total=len(paths))
            summary = score_images(paths, model, engine, settings, source_id, progress=lambda n: progress.advance(task, n))
    except (*USER_ERRORS, ModelLoadError, StoreUnavailableError) as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
        return
    console.print(
        f"run {summary.run_id} ({summary.model_version}): {summary.scored} scored, {summary.skipped} already scored, "
        f"{summary.quarantined} quarantined, {summary.detections} defects, {summary.images_per_second:.2f} images/s"
    )
    table = Table("class", "defects")
    for name, count in summary.per_class.items():
        table.add_row(name, str(count))
    console.print(table)


@app.command("pretrain-tiny")
def pretrain_tiny_command(
    out: Annotated[Path, typer.Option(help="Where the model goes (the repo ships models/tiny-fabric-base).")] = Path(
        "models/tiny-fabric-base"
    ),
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps (batch 8: ~0.5 s each on 2 CPU cores).")] = 6000,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    lr: Annotated[float, typer.Option(help="AdamW peak learning rate.")] = 1.5e-3,
    eval_every: Annotated[int, typer.Option(min=1, help="Steps between held-out mAP evaluations.")] = 500,
    minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes even if steps remain.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the training image stream (held-out images use seed + 10000).")] = 0,
    init_from: Annotated[
        str | None, typer.Option(help="Continue from a saved tiny model (e.g. models/tiny-fabric-base) instead of random weights.")
    ] = None,
    od_only_fraction: Annotated[float, typer.Option(min=0, max=1, help="Share of the first steps that train <OD> only.")] = 0.0,
    loc_sigma: Annotated[float, typer.Option(min=0, help="Soft location targets: Gaussian width in bins (0 = hard).")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final metrics as JSON.")] = False,
) -> None:
    """Build the embedded base model: a tiny Florence-2 trained from scratch on synthetic fabric.

    Runs for an hour or more on CPU; progress lines report held-out mAP@50 as it goes. The best model
    by mAP@50 is kept in --out as a plain Florence-2 (from_pretrained works), with a model card.
    """
    from inspect_core.pretrain_tiny import PretrainSettings, pretrain_tiny, write_model_card

    settings = PretrainSettings(
        steps=steps, batch_size=batch_size, lr=lr, eval_every=eval_every, seed=seed, time_limit_s=minutes * 60 if minutes else None,
        init_from=init_from, od_only_fraction=od_only_fraction, loc_sigma=loc_sigma,
    )  # fmt: skip

    def report(entry: dict) -> None:
        per_class = " ".join(f"{k}={v['ap50']:.2f}" for k, v in entry["per_class"].items())
        losses = f"loss {entry['loss']:.3f} aux {entry['aux_loss']:.3f}"
        errors.print(f"step {entry['step']} ({entry['minutes']} min) {losses} mAP@50 {entry['map50']:.3f} [{per_class}]")

    result = pretrain_tiny(out, settings, log=report)
    write_model_card(out)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        console.print(f"best held-out mAP@50 {result['best_map50']:.3f}; model in {out}")
