"""`inspect-core train|evaluate|merge|pretrain-tiny`."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from inspect_core.cli.common import USER_ERRORS, _fail, _progress, app, console, deprecated, errors, renamed
from inspect_core.cli.recipe_options import SetOption, recipe, recipe_default
from inspect_core.config import InspectConfig
from inspect_core.errors import EXIT_INTERNAL, ModelLoadError

if TYPE_CHECKING:
    from inspect_core.training.evaluation import EvaluationReport
    from inspect_core.training.loop import StopReason
    from inspect_core.training.trainer import TrainResult


PROGRESS_LINES = 10  # where stderr is not a terminal (a log file, CI): a plain line at every tenth of the steps


def _step_line_due(done: int, total: int, logged: dict, minutes: float | None = None, every_minutes: float = 5.0) -> bool:
    """Whether a log gets a ``step N/M`` line now: the first step, each new tenth of ``total``, the last step,
    or (given ``minutes``) ``every_minutes`` since the last line; ``logged`` keeps where the last one was."""
    tenth = done * PROGRESS_LINES // max(total, 1)
    late = minutes is not None and minutes - logged.get("at", 0.0) >= every_minutes
    if done == 1 or tenth > logged.get("tenth", 0) or done == total or late:
        logged.update(tenth=tenth, at=minutes if minutes is not None else 0.0)
        return True
    return False


def run_training(config: InspectConfig, dataset: Path, output: Path, resume: bool) -> TrainResult:
    """The pipeline's train stage with one progress bar over the run's optimizer steps, and a line per finished epoch.

    The bar's total is the run's planned steps, which a time budget (``train.max_minutes``) shrinks
    after the first steps; its time column is then the time left of the run, not of an epoch. A
    terminal gets the bar; a log (stderr not a terminal, where rich draws nothing) gets a line
    ``step N/M`` at every tenth of the steps instead, so a long run there shows it is alive.
    """
    from inspect_core.pipeline import StageHooks
    from inspect_core.pipeline import train as train_stage

    with _progress() as progress:
        bar = progress.add_task("training", total=None)
        epoch, logged = {"n": 1}, {}
        terminal = progress.console.is_terminal

        def step(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total, description=f"epoch {epoch['n']}")
            if not terminal and _step_line_due(done, total, logged):
                progress.console.print(f"step {done}/{total} (epoch {epoch['n']})", markup=False, highlight=False)

        def epoch_done(entry: dict) -> None:
            scores = " ".join(f"{k} {v:.4g}" for k, v in entry.items() if k not in ("epoch", "step") and isinstance(v, float))
            progress.console.print(f"epoch {entry['epoch']}: {scores}", markup=False, highlight=False)
            epoch["n"] = entry["epoch"] + 1

        hooks = StageHooks(train_step=step, train_epoch=epoch_done)
        return train_stage(config, dataset, output, resume=resume, hooks=hooks)


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="YAML recipe (model, lora, train sections).")],
    sets: SetOption = None,
    dataset: Annotated[Path | None, typer.Option(help="Built dataset.", show_default=recipe_default("dataset.output"))] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder for the checkpoints and metrics.", show_default=recipe_default("train.output_dir"))
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    old_output: Annotated[Path | None, deprecated("--output", "--out")] = None,
) -> None:
    """Fine-tune Florence-2 with LoRA (or another strategy) on a built dataset.

    Writes best/ and latest/ checkpoints (and previous/, the fallback --resume uses if latest/ is unreadable),
    metrics.json and loss_curve.png to the run folder. Checkpoints are written whole, then renamed into place,
    so a run killed at any moment resumes (--resume) to the result an uninterrupted run gets.

    Example: inspect-core train --config configs/florence2-base-3090.yaml --dataset runs/base/dataset --out runs/base/train
    """
    try:
        output = renamed(out, old_output, "--out", "--output")
        cfg = recipe(config, sets, {"dataset.output": dataset, "train.output_dir": output})
        result = run_training(cfg, cfg.dataset.output, cfg.train.output_dir, resume)
    except (*USER_ERRORS, ModelLoadError) as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        console.print(
            f"{result.stopped}{f' ({result.stop_detail})' if result.stop_detail else ''} after {result.epochs_run} epoch(s); "
            f"best {result.metric_name} {result.best_metric} at epoch {result.best_epoch}",
            markup=False,
        )
        console.print(f"checkpoints: {result.output_dir / 'best'} (best), {result.output_dir / 'latest'} (latest)", markup=False)
    _exit_if_diverged(result.stopped, result.stop_detail)


def _exit_if_diverged(stopped: StopReason, detail: str) -> None:
    """A non-finite loss ends the run with its checkpoints kept (the loop's policy), but a script must see it failed: exit 1."""
    if stopped.diverged:
        errors.print(Text.assemble(("error: ", "bold red"), f"training stopped: {detail}"), highlight=False, soft_wrap=True)
        raise typer.Exit(code=EXIT_INTERNAL)


def _print_evaluation(report: EvaluationReport) -> None:
    if report.detection:
        # Class names and the split come from the user's files: Text cells, so rich never reads them as markup.
        table = Table(
            title=Text(f"{report.split}: mAP@50 {report.detection.map50:.3f}, mAP@50:95 {report.detection.map50_95:.3f}"),
            title_justify="left",
        )
        for column in ("class", "AP@50", "AP@50:95", "instances"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for name, values in report.detection.per_class.items():
            table.add_row(Text(name), f"{values['ap50']:.3f}", f"{values['ap50_95']:.3f}", str(values["instances"]))
        console.print(table)
    for task, metrics in report.text.items():
        console.print(
            f"{task}: WER {metrics['wer']:.3f}, CER {metrics['cer']:.3f}, Levenshtein similarity {metrics['levenshtein_similarity']:.3f}",
            markup=False,
        )
    calibration = report.calibration or {}
    if "ece_after" in calibration:
        console.print(
            f"calibration ({calibration.get('split')}): ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}; "
            f"operating threshold {_rounded(calibration.get('default_threshold'))}; diagram {calibration.get('diagram')}",
            markup=False,
        )


@app.command()
def evaluate(
    model: Annotated[str, typer.Option(help="Checkpoint folder (best/, latest/), merged model folder, 'tiny' or a hub id.")],
    dataset: Annotated[Path, typer.Option(help="Built dataset folder.")],
    split: Annotated[str, typer.Option(help="train, valid or test.")] = "test",
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Images per generate call.", show_default=recipe_default("train.batch_size"))
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, help="Longest answer generated.", show_default=recipe_default("train.max_new_tokens"))
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; model.image_size and the train: batch settings apply.")] = None,
    sets: SetOption = None,
    plots: Annotated[Path | None, typer.Option(help="Folder for the confusion matrix, PR-curve and reliability PNGs.")] = None,
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="Fit confidence calibration on calibration.split; save calibration.json with the model.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """mAP@50, mAP@50:95 and per-class AP (real confidences), plus text metrics for dense/grounding.

    With --calibrate (or a model that carries calibration.json) it also reports the expected calibration
    error before and after calibration on --split, the operating thresholds and a reliability diagram.

    Example: inspect-core evaluate --model runs/train/best --dataset runs/dataset --split test --plots runs/eval --calibrate
    """
    from inspect_core.pipeline import evaluate as evaluate_stage

    try:
        cfg = recipe(config, sets, {"train.batch_size": batch_size, "train.max_new_tokens": max_new_tokens})
        report = evaluate_stage(cfg, model, dataset, split, plots, calibrate=calibrate)
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
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; its model.image_size is saved with the merged processor.")] = None,
    sets: SetOption = None,
) -> None:
    """Fold the LoRA adapter into the base weights: a plain Florence-2 for serving and ONNX export.

    Example: inspect-core merge --model runs/train/best --out runs/merged
    """
    from inspect_core.model.trained_model import merge_checkpoint

    try:
        merged = merge_checkpoint(model, out, recipe(config, sets).model.image_size)
    except (*USER_ERRORS, ModelLoadError) as error:
        _fail(error)
    console.print(f"merged model written to {merged}", markup=False)


@app.command("pretrain-tiny")
def pretrain_tiny_command(
    out: Annotated[Path, typer.Option(help="Where the model goes (the repo ships models/tiny-fabric-base).")] = Path(
        "models/tiny-fabric-base"
    ),
    steps: Annotated[int | None, typer.Option(min=1, help="Optimiser steps (batch 8: ~0.5 s each on 2 CPU cores), default 6000.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per step. Default 8.")] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW peak learning rate. Default 1.5e-3.")] = None,
    eval_every: Annotated[int | None, typer.Option(min=1, help="Steps between held-out mAP evaluations. Default 500.")] = None,
    eval_images: Annotated[int | None, typer.Option(min=1, help="Held-out images each evaluation scores. Default 64.")] = None,
    minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes even if steps remain.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the training image stream (held-out: seed + 10000). Default 0.")] = None,
    init_from: Annotated[
        str | None, typer.Option(help="Continue from a saved tiny model (e.g. models/tiny-fabric-base) instead of random weights.")
    ] = None,
    od_only_fraction: Annotated[float | None, typer.Option(min=0, max=1, help="Share of the first steps that train <OD> only.")] = None,
    loc_sigma: Annotated[float | None, typer.Option(min=0, help="Soft location targets: Gaussian width in bins (0 = hard).")] = None,
    multi_scale_fraction: Annotated[
        float | None, typer.Option(min=0, max=1, help="Share of images rendered at 288-512 px and resized, so resolution matters less.")
    ] = None,
    randomised_fraction: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Share of images in the randomised fabric style (weaves, light, noise, backgrounds, line-scan margins): "
            "domain randomisation. The held-out style is never trained on.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final metrics as JSON.")] = False,
) -> None:
    """Build the embedded base model: a tiny Florence-2 trained from scratch on synthetic fabric.

    Runs for an hour or more on CPU; progress lines report held-out mAP@50 as it goes. The best model
    by mAP@50 is kept in --out as a plain Florence-2 (from_pretrained works), with a model card.

    Example: inspect-core pretrain-tiny --out runs/tiny --steps 2000 --minutes 30

    Continue the shipped model with domain randomisation: inspect-core pretrain-tiny --out runs/tiny-rand
    --init-from models/tiny-fabric-base --randomised-fraction 0.5 --minutes 120
    """
    from inspect_core.training.pretrain import PretrainSettings, pretrain_tiny, write_model_card

    # The defaults live in PretrainSettings (pretraining the embedded model is not a recipe setting): pass only what was given.
    given = {"steps": steps, "batch_size": batch_size, "lr": lr, "eval_every": eval_every, "eval_images": eval_images, "seed": seed,
             "time_limit_s": minutes * 60 if minutes else None, "init_from": init_from, "od_only_fraction": od_only_fraction,
             "loc_sigma": loc_sigma, "multi_scale_fraction": multi_scale_fraction, "randomised_fraction": randomised_fraction}  # fmt: skip
    settings = PretrainSettings(**{k: v for k, v in given.items() if v is not None})

    with _progress() as progress:
        task = progress.add_task("pretraining", total=settings.steps)

        def report(entry: dict) -> None:
            per_class = " ".join(f"{k}={v['ap50']:.2f}" for k, v in entry["per_class"].items())
            losses = f"loss {entry['loss']:.3f} aux {entry['aux_loss']:.3f}"
            line = f"step {entry['step']} ({entry['minutes']} min) {losses} mAP@50 {entry['map50']:.3f} [{per_class}]"
            progress.console.print(line, markup=False)  # the per-class list is in brackets, not rich markup

        terminal, started, logged = progress.console.is_terminal, time.monotonic(), {}

        def step(done: int) -> None:
            """The bar on a terminal; in a log, a line every tenth of the planned steps or every 5 minutes (an
            evaluation line comes only every --eval-every steps: 25 minutes apart at the usual 1500)."""
            progress.update(task, completed=done)
            minutes = (time.monotonic() - started) / 60
            if not terminal and _step_line_due(done, settings.steps, logged, minutes):
                progress.console.print(f"step {done}/{settings.steps} ({minutes:.1f} min)", markup=False, highlight=False)

        result = pretrain_tiny(out, settings, log=report, progress=step)
    if not math.isnan(result.best_map50):  # a model was saved (a run that broke before its first evaluation saved none)
        write_model_card(out)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        summary = f"{result.stopped} after {result.steps} step(s); best held-out mAP@50 {result.best_map50:.3f}; model in {out}"
        console.print(summary, markup=False)
    _exit_if_diverged(result.stopped, result.stop_detail)


def _rounded(value: object) -> str:
    """A threshold as a person reads it (0.79, not 0.7896890444840874); '-' when there is none."""
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"
