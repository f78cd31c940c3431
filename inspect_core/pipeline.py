"""The pipeline's stages as library functions: build -> train -> evaluate -> merge -> score.

The CLI commands, the demo, the Prefect flows and nightly retraining call these (or the one library
function each wraps), so a stage behaves the same whichever door a user came in by. Each stage takes
the merged recipe (``inspect_core.config.load_recipe``) and reads its settings from it; the callers
only add progress display. Reports are the store's queries (``inspect_core.store.reports``) and their
rendering (``inspect_core.reporting``); ingest is ``inspect_core.ingest``.

This module sits above every package (data, model, training, inference, store) and nothing in them
imports it, so the import graph has no cycle.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inspect_core.config import InspectConfig
from inspect_core.data.dataset_builder import MANIFEST, BuildSummary
from inspect_core.data.sources import import_and_build
from inspect_core.errors import UsageError

if TYPE_CHECKING:
    from inspect_core.data.importers import ImportResult
    from inspect_core.inference.scoring import ScoreSummary
    from inspect_core.training.evaluation import EvaluationReport
    from inspect_core.training.trainer import TrainResult


def _quiet(*_args: object) -> None:
    return None


@dataclass
class StageHooks:
    """How a caller watches the stages: the CLI draws progress bars, a flow logs; the defaults say nothing."""

    stage: Callable[[str], None] = _quiet  # a stage starts: "build", "evaluate base", "train", ...
    imported: Callable[[ImportResult], None] = _quiet
    build_progress: Callable[[int, int], None] | None = None
    train_step: Callable[[int, int], None] | None = None
    train_epoch: Callable[[dict], None] | None = None
    score_total: Callable[[int], None] = _quiet
    score_progress: Callable[[int], None] | None = None


NO_HOOKS = StageHooks()


def build(
    config: InspectConfig, out: Path | None = None, overwrite: bool = False, sources: Path | Sequence[Path] | None = None,
    hooks: StageHooks = NO_HOOKS,
) -> BuildSummary:  # fmt: skip
    """Import ``sources`` (default: the recipe's ``dataset.source``) and build the dataset at ``out`` (default ``dataset.output``)."""
    hooks.stage("build")
    return import_and_build(
        sources if sources is not None else config.dataset.source, out if out is not None else config.dataset.output, config.dataset,
        config.augment, overwrite=overwrite, progress=hooks.build_progress, on_imported=hooks.imported,
    )  # fmt: skip


def require_built(dataset: Path) -> Path:
    """``dataset`` if it is a built dataset; else a usage error that says how to build it."""
    if not (Path(dataset) / MANIFEST).is_file():
        raise UsageError(f"{dataset} is not a built dataset; build it first: inspect-core dataset build --out {dataset}")
    return Path(dataset)


def train(
    config: InspectConfig, dataset: Path | None = None, output: Path | None = None, resume: bool = False, hooks: StageHooks = NO_HOOKS
) -> TrainResult:
    """Fine-tune ``config.model`` on a built dataset (default ``dataset.output``) into ``output`` (default ``train.output_dir``).

    The trainer ends by calibrating ``best/`` on ``calibration.split`` (``calibration.json``; ``TrainResult.calibration``).
    """
    from inspect_core.training.trainer import train as train_loop

    dataset = require_built(dataset if dataset is not None else config.dataset.output)
    hooks.stage("train")
    output = output if output is not None else config.train.output_dir
    return train_loop(config, dataset, output, resume=resume, on_step=hooks.train_step, on_epoch=hooks.train_epoch)


def evaluate(
    config: InspectConfig, model: str | Path | None = None, dataset: Path | None = None, split: str = "test",
    plots: Path | None = None, hooks: StageHooks = NO_HOOKS, calibrate: bool = False,
) -> EvaluationReport:  # fmt: skip
    """Detection and text metrics of ``model`` (default ``model.name``) on one split, at the recipe's image size and batch.

    ``calibrate`` first fits the confidence calibration on the recipe's ``calibration.split`` (saved as
    ``calibration.json`` when the model is a local folder). The report's ``calibration`` then holds the
    ECE before and after on ``split`` (held out when it is another split), the operating thresholds and
    the reliability diagram; a model that already carries a calibration has it measured the same way.
    """
    from inspect_core.model.calibration import load_calibration
    from inspect_core.model.trained_model import load_trained, resolve_trained_source
    from inspect_core.training.calibration import evaluation_calibration
    from inspect_core.training.evaluation import evaluate_split

    name = model if model is not None else config.model.name
    resolve_trained_source(str(name))  # a model folder that is not there is named first: the command names it first
    dataset = require_built(dataset if dataset is not None else config.dataset.output)
    hooks.stage(f"evaluate {split}")
    if not calibrate and Path(name).is_dir():
        load_calibration(name)  # a damaged calibration.json stops the run before the model does (calibrate=True replaces it)
    loaded, processor = load_trained(name, config.model.image_size, config.model.revision)
    report = evaluate_split(loaded, processor, dataset, split, config.train.batch_size, config.train.max_new_tokens, plots,
                            config.score.tta_poses)  # what `score` would store with this recipe  # fmt: skip
    report.calibration = evaluation_calibration(loaded, processor, name, dataset, report, config, plots, fit=calibrate)
    return report


def merge(config: InspectConfig, checkpoint: Path, out: Path, hooks: StageHooks = NO_HOOKS) -> Path:
    """Fold a checkpoint's LoRA adapter into its base: a plain Florence-2 for serving and export."""
    from inspect_core.model.trained_model import merge_checkpoint

    hooks.stage("merge")
    return merge_checkpoint(checkpoint, out, config.model.image_size)


def score(
    config: InspectConfig, images: Sequence[Path], model: str | Path | None = None, camera: str | None = None, line: str | None = None,
    hooks: StageHooks = NO_HOOKS, rescore: bool = False,
) -> ScoreSummary:  # fmt: skip
    """Score ``images`` with ``model`` (default ``model.name``) into ``store.url``, with the recipe's ``score:`` settings.

    ``camera`` and ``line`` go together: every image is recorded as captured by that camera over that line.
    ``rescore`` scores images the model version already scored again, as a new run that keeps the old answers.
    """
    from inspect_core.inference.scoring import score_images
    from inspect_core.store import ensure_source, open_store

    if (camera is None) != (line is None):
        raise UsageError("--camera and --line go together: a camera is always over a line")
    hooks.stage("score")
    engine = open_store(config.store.url)
    source_id = ensure_source(engine, camera, line) if camera is not None and line is not None else None
    hooks.score_total(len(images))
    model = str(model if model is not None else config.model.name)
    return score_images(list(images), model, engine, config.score, source_id, progress=hooks.score_progress,
                        image_size=config.model.image_size, rescore=rescore)  # fmt: skip


@dataclass
class DemoResult:
    """Everything the demo did, stage by stage."""

    dataset: BuildSummary
    base_test: EvaluationReport
    training: TrainResult
    test: EvaluationReport
    merged: Path
    scoring: ScoreSummary

    def as_dict(self) -> dict:
        return {"dataset": str(self.dataset.output), "base_test": self.base_test.as_dict(), "training": self.training.as_dict(),
                "test": self.test.as_dict(), "merged": str(self.merged), "scoring": self.scoring.as_dict()}  # fmt: skip


def run_demo(config: InspectConfig, hooks: StageHooks = NO_HOOKS) -> DemoResult:
    """The plant's workflow in small: build, evaluate the base, fine-tune, evaluate, merge, score the test split.

    The base model is evaluated on the same test split first, so the demo shows what fine-tuning bought.
    """
    from inspect_core.data.importers.image_files import collect_images

    summary = build(config, overwrite=True, hooks=hooks)
    shutil.rmtree(config.train.output_dir, ignore_errors=True)
    base_report = evaluate(config, hooks=hooks)
    result = train(config, hooks=hooks)
    best = config.train.output_dir / "best"
    report = evaluate(config, model=best, plots=config.train.output_dir, hooks=hooks)
    merged = merge(config, best, config.train.output_dir / "merged", hooks=hooks)
    scored = score(config, collect_images(config.dataset.output / "test"), model=merged, hooks=hooks)
    return DemoResult(summary, base_report, result, report, merged, scored)
