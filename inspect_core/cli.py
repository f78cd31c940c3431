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
    shipped tiny Florence-2 with LoRA, evaluate on the held-out test split, merge the adapter, and
    score the test images into the results store (store.url of the recipe)."""
    from inspect_core.evaluation import evaluate_split
    from inspect_core.results_store import StoreUnavailableError, open_store
    from inspect_core.scoring import score_images
    from inspect_core.trained_model import load_trained, merge_checkpoint

    try:
        cfg = load_config(config)
        summary = run_build(cfg, cfg.dataset.output, overwrite=True)
        if not as_json:
            _print_summary(summary, as_json=False)
        shutil.rmtree(cfg.train.output_dir, ignore_errors=True)
        # The base model on the same test split first, so the demo shows what fine-tuning bought.
        test_split = (cfg.dataset.output, "test", cfg.train.batch_size, cfg.train.max_new_tokens)
        base_report = evaluate_split(*load_trained(cfg.model.name), *test_split)
        result = run_training(cfg, cfg.dataset.output, cfg.train.output_dir, resume=False)
        model, processor = load_trained(cfg.train.output_dir / "best")
        report = evaluate_split(model, processor, *test_split, cfg.train.output_dir)
        merged = merge_checkpoint(cfg.train.output_dir / "best", cfg.train.output_dir / "merged")
        test_images = _collect_images(str(cfg.dataset.output / "test"))
        with _progress() as progress:
            task = progress.add_task("scoring the test split into the store", total=len(test_images))
            store = open_store(cfg.store.url)
            scored = score_images(test_images, str(merged), store, cfg.score, progress=lambda n: progress.advance(task, n))
    except (*USER_ERRORS, ModelLoadError, StoreUnavailableError) as error:
        _fail(error)
    if as_json:
        everything = {"dataset": str(summary.output), "base_test": base_report.as_dict(), "training": result.as_dict(),
                      "test": report.as_dict(), "scoring": scored.as_dict()}  # fmt: skip
        typer.echo(json.dumps(everything, indent=2))
        return
    console.print(f"fine-tuned {cfg.model.name} ({cfg.lora.strategy}) for {result.epochs_run} epoch(s): {result.output_dir / 'best'}")
    _print_evaluation(report)
    if base_report.detection and report.detection:
        before, after = base_report.detection.map50, report.detection.map50
        console.print(f"test mAP@50 before fine-tuning (the base model): {before:.3f}; after: {after:.3f}")
    console.print(f"scored {scored.scored} test images into {cfg.store.url} ({scored.detections} defects, run {scored.run_id})")


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
    precision: Annotated[str | None, typer.Option(help="torch backend: auto (bf16 where the chip has bf16 units), bf16 or fp32.")] = None,
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
        given = {"backend": backend, "batch_size": batch_size, "precision": precision, "tile": tile}
        overrides = {k: v for k, v in given.items() if v is not None}
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
    eval_images: Annotated[int, typer.Option(min=1, help="Held-out images (another seed) each evaluation scores.")] = 64,
    minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes even if steps remain.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the training image stream (held-out images use seed + 10000).")] = 0,
    init_from: Annotated[
        str | None, typer.Option(help="Continue from a saved tiny model (e.g. models/tiny-fabric-base) instead of random weights.")
    ] = None,
    od_only_fraction: Annotated[float, typer.Option(min=0, max=1, help="Share of the first steps that train <OD> only.")] = 0.0,
    loc_sigma: Annotated[float, typer.Option(min=0, help="Soft location targets: Gaussian width in bins (0 = hard).")] = 0.0,
    multi_scale_fraction: Annotated[
        float, typer.Option(min=0, max=1, help="Share of images rendered at 288-512 px and resized, so camera resolution matters less.")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final metrics as JSON.")] = False,
) -> None:
    """Build the embedded base model: a tiny Florence-2 trained from scratch on synthetic fabric.

    Runs for an hour or more on CPU; progress lines report held-out mAP@50 as it goes. The best model
    by mAP@50 is kept in --out as a plain Florence-2 (from_pretrained works), with a model card.
    """
    from inspect_core.pretrain_tiny import PretrainSettings, pretrain_tiny, write_model_card

    settings = PretrainSettings(
        steps=steps, batch_size=batch_size, lr=lr, eval_every=eval_every, eval_images=eval_images, seed=seed,
        time_limit_s=minutes * 60 if minutes else None, init_from=init_from, od_only_fraction=od_only_fraction, loc_sigma=loc_sigma,
        multi_scale_fraction=multi_scale_fraction,
    )  # fmt: skip

    with _progress() as progress:
        task = progress.add_task("pretraining", total=steps)

        def report(entry: dict) -> None:
            per_class = " ".join(f"{k}={v['ap50']:.2f}" for k, v in entry["per_class"].items())
            losses = f"loss {entry['loss']:.3f} aux {entry['aux_loss']:.3f}"
            line = f"step {entry['step']} ({entry['minutes']} min) {losses} mAP@50 {entry['map50']:.3f} [{per_class}]"
            progress.console.print(line, markup=False)  # the per-class list is in brackets, not rich markup

        result = pretrain_tiny(out, settings, log=report, progress=lambda done: progress.update(task, completed=done))
    write_model_card(out)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        console.print(f"best held-out mAP@50 {result['best_map50']:.3f}; model in {out}")


export_app = typer.Typer(help="Export a trained model for serving without PyTorch's overhead.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx_command(
    model: Annotated[Path, typer.Option(help="Merged model folder, LoRA checkpoint folder (merged first), or 'tiny'.")],
    out: Annotated[Path, typer.Option(help="Folder for the graphs, processor and onnx_model.json.")],
    quantize: Annotated[str | None, typer.Option(help="int8: dynamic int8 quantisation of every MatMul/Gemm.")] = None,
    opset: Annotated[int, typer.Option(min=14, help="ONNX opset.")] = 17,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Export Florence-2 to ONNX graphs that onnxruntime runs for the whole greedy generation.

    Writes to --out: encoder.onnx (vision tower + text encoder, and the cross-attention keys/values),
    decoder.onnx (one decoder step with KV cache, run once per generated token), the processor files,
    generation_config.json, and onnx_model.json (opset, quantisation, source fingerprint, and the max
    difference from PyTorch measured right after export). Score with it by setting score.backend: onnx
    in the recipe and pointing the model at --out.

    --quantize int8 stores MatMul/Gemm weights as int8 (graphs about 2x smaller) and runs them with integer
    kernels; convolutions stay fp32. It pays on CPUs with VNNI (AVX-512 VNNI, AVX-VNNI) and on big models:
    Florence-2-base ran 1.8x faster than ONNX fp32 (3.5x faster than PyTorch) on a 2-core VNNI CPU, the
    5M-parameter tiny model only 1.2x (benchmarks/results/onnx_scoring.json). It changes answers: the tiny
    model's held-out mAP@50 fell from 0.20 to 0.18, so measure accuracy on held-out images before using it.

    Example: inspect-core export onnx --model runs/train/best --out runs/onnx-int8 --quantize int8
    """
    from inspect_core.onnx_export import export_onnx

    try:
        with errors.status(f"exporting {model} to ONNX"):
            manifest = export_onnx(model, out, quantize=quantize, opset=opset)
    except (*USER_ERRORS, ModelLoadError) as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(manifest | {"output": str(out)}, indent=2))
        return
    sizes = ", ".join(f"{out / manifest['graphs'][k]} ({mb} MB)" for k, mb in manifest["graph_mb"].items())
    parity = manifest["parity_vs_torch"]
    console.print(f"exported {model} ({manifest['quantization'] or 'fp32'}, opset {opset}) in {manifest['export_s']} s: {sizes}")
    console.print(
        f"max difference from PyTorch: encoder {parity['encoder_hidden_max_abs_diff']:.2g}, "
        f"decoder-step logits {parity['step_logits_max_abs_diff']:.2g}"
    )


# ---------------------------------------------------------------------------------------------
# Ingestion: `inspect-core ingest folder` and `inspect-core ingest camera`

ingest_app = typer.Typer(
    help="Get images in: watch a folder a camera PC writes into, or capture frames from a camera, stream or video file.",
    no_args_is_help=True,
)
app.add_typer(ingest_app, name="ingest")


def _ingest_config(config: Path | None, overrides: dict[str, object]) -> InspectConfig:
    """The recipe with the options given on the command line laid over its ingest: section."""
    cfg = _config(config)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "every_frames" in given:
        given.setdefault("every_seconds", None)  # --every-frames replaces the recipe's every_seconds
    if "every_seconds" in given and "every_frames" not in given:
        given["every_frames"] = None
    return cfg.model_copy(update={"ingest": cfg.ingest.model_validate(cfg.ingest.model_dump() | given)})


def _log_to_stderr() -> None:
    """Show the ingest modules' log lines (reconnects, quarantines) on stderr, rich-formatted."""
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("inspect_core")
    if not logger.handlers:
        logger.addHandler(RichHandler(console=errors, show_path=False))
        logger.setLevel(logging.INFO)


@ingest_app.command("folder")
def ingest_folder(
    folder: Annotated[Path | None, typer.Option(help="Folder the camera PC or line-scan system writes images into.")] = None,
    db: Annotated[str | None, typer.Option(help="Results store URL (sqlite:///file.db or postgresql+psycopg://...).")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id recorded with every image.")] = None,
    line: Annotated[str | None, typer.Option(help="Production line of that camera.")] = None,
    settle_seconds: Annotated[
        float | None, typer.Option(min=0, help="Read a file only after its size and mtime stayed the same this long.")
    ] = None,
    poll_seconds: Annotated[float | None, typer.Option(min=0.01, help="Seconds between scans of the folder.")] = None,
    recursive: Annotated[bool | None, typer.Option("--recursive/--no-recursive", help="Also watch subfolders.")] = None,
    archive_dir: Annotated[
        Path | None, typer.Option(help="Move handled files here (quarantined ones under quarantine/). Without it, originals stay put.")
    ] = None,
    once: Annotated[bool, typer.Option(help="Ingest what is in the folder now (waiting for it to settle), then exit.")] = False,
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; its ingest: and store: sections apply.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: the report with --once, else one line per busy poll.")] = False,
) -> None:
    """Watch a folder and register its images in the results store, ready for `inspect-core score`.

    A file is read once its size and mtime stop changing (--settle-seconds), so half-copied files are
    never read. A file copied in again (same content, any name) is counted as a duplicate, not
    registered twice. Capture time is the time in a camera-writer name (cam-3_L2_20261122T044543_786000Z.png),
    else the file's mtime. Empty, truncated and non-image files go to the quarantine table with the reason.
    Runs until Ctrl-C, or with --once until what was there at the start has been handled.

    Example: inspect-core ingest folder --folder /mnt/loom3 --db sqlite:///runs/results.db --camera cam-3 --line L2 --once
    """
    from rich.markup import escape

    from inspect_core.folder_ingest import FolderWatcher, IngestReport
    from inspect_core.results_store import StoreUnavailableError, open_store

    try:
        overrides = {"folder": folder, "settle_seconds": settle_seconds, "poll_seconds": poll_seconds, "recursive": recursive,
                     "archive_dir": archive_dir, "camera_id": camera, "line_id": line}  # fmt: skip
        cfg = _ingest_config(config, overrides)
        settings = cfg.ingest
        engine = open_store(db or cfg.store.url)
        watcher = FolderWatcher(
            settings.folder, engine, settings.camera_id, settings.line_id, settings.settle_seconds, settings.recursive, settings.archive_dir
        )
    except (*USER_ERRORS, StoreUnavailableError) as error:
        _fail(error)
    _log_to_stderr()
    where = f"watching {watcher.folder} for camera {settings.camera_id} on line {settings.line_id}"
    if once:
        try:
            with errors.status(where):
                report = watcher.catch_up(settings.poll_seconds)
        except (StoreUnavailableError, OSError) as error:
            _fail(error)
        if as_json:
            typer.echo(json.dumps(report.as_dict(), indent=2))
            return
        console.print(report.summary())
        for path, reason in report.quarantined.items():
            console.print(f"[yellow]quarantined[/] {escape(path)}: {escape(reason)}", highlight=False)
        return

    def on_poll(report: IngestReport) -> None:
        if report.registered or report.duplicates or report.quarantined:
            if as_json:
                typer.echo(json.dumps(report.as_dict()))
            else:
                errors.print(report.summary(), highlight=False)

    with errors.status(where):
        totals = watcher.watch(settings.poll_seconds, on_poll=on_poll)
    if as_json:
        typer.echo(json.dumps(totals.as_dict()))
    else:
        counts = f"{totals.registered} registered, {totals.duplicates} duplicate(s), {totals.quarantined} quarantined"
        console.print(f"{totals.polls} poll(s): {counts}")


@ingest_app.command("camera")
def ingest_camera(
    source: Annotated[
        str | None, typer.Option(help="USB camera index (0), rtsp://user:pass@host/stream, http://... (MJPEG) or a video file.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder the frames go to; point `ingest folder` at it.")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id, written into every frame's file name.")] = None,
    line: Annotated[str | None, typer.Option(help="Line id, written into every frame's file name.")] = None,
    every_frames: Annotated[int | None, typer.Option(min=1, help="Keep every N-th frame (instead of --every-seconds).")] = None,
    every_seconds: Annotated[
        float | None, typer.Option(min=0.001, help="Keep one frame per S seconds (video time for a file). Default 1.")
    ] = None,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Stop after writing this many frames.")] = None,
    image_format: Annotated[str | None, typer.Option("--format", help="png (lossless, default) or jpg.")] = None,
    black_below: Annotated[float | None, typer.Option(min=0, help="Reject frames whose mean grey level (0-255) is below this.")] = None,
    frozen_below: Annotated[
        float | None, typer.Option(min=0, help="Reject frames differing from the last kept one by less than this (mean grey levels).")
    ] = None,
    blur_below: Annotated[float | None, typer.Option(min=0, help="Reject frames whose variance of the Laplacian is below this.")] = None,
    max_reconnects: Annotated[
        int | None, typer.Option(min=0, help="Give up after this many reconnect attempts in a row (default: never, for a live camera).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; its ingest: section applies.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the capture report as JSON.")] = False,
) -> None:
    """Capture frames from a camera, stream or video file into a folder, dropping black, frozen and blurred ones.

    Frames are written whole (temp file + rename) as {camera}_{line}_{UTC time}.png. A live source
    that drops is reconnected with exponential backoff (logged); a video file stops at its end.
    Runs until Ctrl-C, --max-frames, the end of a file, or --max-reconnects failed attempts in a row.

    Example: inspect-core ingest camera --source rtsp://10.0.3.21/stream1 --out /data/frames --camera cam-3 --line L2 --every-seconds 2
    """
    from rich.markup import escape

    from inspect_core.camera_ingest import CameraCapture, CaptureReport, FrameQuality, parse_source, shown_source

    try:
        overrides = {"camera_source": source, "frames_dir": out, "camera_id": camera, "line_id": line, "every_frames": every_frames,
                     "every_seconds": every_seconds, "image_format": image_format, "black_below": black_below,
                     "frozen_below": frozen_below, "blur_below": blur_below, "max_reconnects": max_reconnects}  # fmt: skip
        settings = _ingest_config(config, overrides).ingest
        capture = CameraCapture(
            parse_source(settings.camera_source), settings.frames_dir, settings.camera_id, settings.line_id,
            every_frames=settings.every_frames, every_seconds=settings.every_seconds,
            quality=FrameQuality(settings.black_below, settings.frozen_below, settings.blur_below), image_format=settings.image_format,
            backoff_initial_s=settings.backoff_initial_seconds, backoff_max_s=settings.backoff_max_seconds,
            max_reconnects=settings.max_reconnects,
        )  # fmt: skip
    except USER_ERRORS as error:
        _fail(error)
    _log_to_stderr()
    with errors.status(escape(f"capturing {shown_source(capture.source)} into {settings.frames_dir}")) as status:

        def progress(report: CaptureReport) -> None:
            rejected = sum(report.rejected.values())
            status.update(f"{settings.camera_id}: {report.written} frame(s) written, {rejected} rejected, {report.reconnects} reconnect(s)")

        try:
            report = capture.run(max_frames=max_frames, progress=progress)
        except OSError as error:
            _fail(error)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    rejected = ", ".join(f"{count} {reason}" for reason, count in sorted(report.rejected.items())) or "none"
    console.print(
        f"{report.written} frame(s) written to {settings.frames_dir} from {report.frames_read} read; rejected: {rejected}; "
        f"{report.reconnects} reconnect(s); {report.end_reason}"
    )


def _print_report(per_class: list[dict[str, object]], newest: list[dict[str, object]]) -> None:
    table = Table("class", "defects", "mean confidence", "max confidence", title="defects per class", title_justify="left")
    for c in per_class:
        table.add_row(str(c["class_name"]), str(c["detections"]), f"{c['mean_confidence']:.3f}", f"{c['max_confidence']:.3f}")
    console.print(table)
    columns = ("captured (UTC)", "camera", "line", "class", "conf", "box (px)", "model", "image")
    rows = Table(*columns, title=f"newest {len(newest)}", title_justify="left")
    for r in newest:
        box = f"{r['x1']:.0f},{r['y1']:.0f},{r['x2']:.0f},{r['y2']:.0f}"
        cells = (f"{r['captured_at']:%Y-%m-%d %H:%M:%S}", str(r["camera"] or ""), str(r["line"] or ""), str(r["class_name"]))
        rows.add_row(*cells, f"{r['confidence']:.2f}", box, str(r["model"]), str(r["image_path"]))
    console.print(rows)


@app.command("report")
def report_command(
    db: Annotated[str, typer.Option(help="Results store URL: sqlite:///results.db or postgresql+psycopg://user@host/db.")],
    since: Annotated[str | None, typer.Option(help="From this capture time: 2026-11-01, 2026-11-01T08:00 (UTC) or 7d/24h ago.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this capture time (exclusive); same forms as --since.")] = None,
    line: Annotated[str | None, typer.Option(help="Production line.")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id.")] = None,
    class_name: Annotated[str | None, typer.Option("--class", help="Defect class, e.g. hole.")] = None,
    min_confidence: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Lowest confidence kept (inclusive).")] = None,
    model: Annotated[str | None, typer.Option(help="Model version name, as registered when scoring.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table (printed), or csv, parquet, json, html rows (to --out or stdout).")] = "table",
    out: Annotated[Path | None, typer.Option(help="File for the rows (csv/parquet/json/html); parquet needs one.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Newest N rows only (default: all; the table shows 20).")] = None,
    plots: Annotated[Path | None, typer.Option(help="Folder for defects per day, defect rate per line and confidence PNGs.")] = None,
    annotate: Annotated[Path | None, typer.Option(help="Folder for the --top images with boxes, classes and confidences drawn.")] = None,
    top: Annotated[int, typer.Option(min=1, help="How many images --annotate draws (most confident defect first).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print a summary as JSON: defects per class, rows, files written.")] = False,
) -> None:
    """Defects in the results store, filtered by time, line, camera, class, confidence and model.

    Prints a summary per class and the newest defects, or writes the rows as csv/parquet/json/html;
    --plots adds charts and --annotate draws the most confident defects on their images. Times are UTC.

    Example: inspect-core report --db sqlite:///results.db --since 7d --line L2 --class hole
    --min-confidence 0.5 --format csv --out holes.csv --plots report/ --annotate report/top
    """
    import sys

    import sqlalchemy as sa

    from inspect_core import reports
    from inspect_core.results_store import StoreUnavailableError, open_store

    try:
        times = {}
        for option, value in (("since", since), ("until", until)):
            try:
                times[option] = reports.parse_when(value) if value is not None else None
            except ValueError as error:
                raise ValueError(f"--{option}: {error}") from None
        flt = reports.ReportFilter(**times, line=line, camera=camera, class_name=class_name, model=model, min_confidence=min_confidence)
        if fmt != "table" and fmt not in reports.TABLE_FORMATS:
            raise ValueError(f"--format {fmt!r}: use table, {', '.join(reports.TABLE_FORMATS)}")
        if fmt == "table" and out is not None:
            raise ValueError(f"--out writes the rows to a file: add --format ({', '.join(reports.TABLE_FORMATS)})")
        if fmt != "table" and out is None and (fmt == "parquet" or as_json):
            raise ValueError(f"--format {fmt}{' with --json' if as_json else ''} needs --out FILE")
        url = sa.engine.make_url(db)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and not Path(url.database).is_file():
            raise FileNotFoundError(f"no results store at {url.database}; score images into it first (inspect-core score --db {db})")
        engine = open_store(db)
        summary = reports.class_summary(engine, flt)
        frame = reports.detections_frame(engine, flt, limit=limit or 20 if fmt == "table" else limit)
        files = []
        if fmt != "table":
            reports.write_table(frame, fmt, out or sys.stdout)
            files += [out] if out else []
        if plots is not None:
            files += reports.plot_report(engine, flt, plots)
        drawn = reports.annotate_top(engine, flt, annotate, top) if annotate is not None else reports.AnnotationResult()
        files += drawn.written
    except (*USER_ERRORS, StoreUnavailableError, sa.exc.ArgumentError) as error:
        _fail(error)
    if as_json:
        payload = {
            "filter": {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in asdict(flt).items() if v is not None},
            "detections": int(summary["detections"].sum()),
            "per_class": {row.class_name: int(row.detections) for row in summary.itertuples()},
            "rows": len(frame),
            "files": [str(f) for f in files],
            "missing_images": drawn.missing,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    notes = console if fmt == "table" else errors  # stdout stays clean when the rows go there
    if fmt == "table":
        _print_report(summary.to_dict("records"), frame.to_dict("records"))
    for path in files:
        notes.print(f"wrote {path}", highlight=False, markup=False)
    for path in drawn.missing:
        notes.print(f"image not found, not annotated: {path}", highlight=False, markup=False)
