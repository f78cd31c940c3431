"""Champion/challenger retraining: fine-tune on newly labelled data, promote only a model that is better.

Every night a plant labels a few more frames. The challenger is fine-tuned with LoRA from the current
champion (or from the base model when there is none yet) on the labelled batches added since the
champion was trained; challenger and champion are then scored on the same fixed validation set, and
the challenger is promoted in the model registry only if its mAP@50 beats the champion's by
``margin``. A failed, diverged or worse run leaves the champion in place. Both scores are recorded.

Labelled data arrives as batch folders under one root (``labelled/2026-11-21/``, ...), each in any
format ``inspect-core dataset build`` imports; a batch is new when its folder changed after the
champion was registered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from inspect_core.config import InspectConfig
from inspect_core.data.sources import import_and_build
from inspect_core.model.trained_model import load_trained, merge_checkpoint, saved_input_size
from inspect_core.store import Engine, ModelVersion, champion, promote_model, register_model
from inspect_core.training.evaluation import evaluate_split
from inspect_core.training.loop import StopReason
from inspect_core.training.trainer import train


@dataclass(frozen=True)
class RetrainResult:
    promoted: bool
    challenger_map50: float | None
    champion_map50: float | None
    challenger_version_id: int | None
    champion_version_id: int | None
    challenger_dir: Path | None
    export_dir: Path | None
    reason: str

    def as_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def new_labelled_batches(root: Path, since: datetime | None) -> list[Path]:
    """Batch folders under ``root`` changed after ``since`` (all of them when ``since`` is None)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: labelled-data folder not found")
    batches = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if since is None:
        return batches

    def changed(folder: Path) -> datetime:
        latest = max((p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime)
        return datetime.fromtimestamp(latest, timezone.utc)

    return [b for b in batches if changed(b) > since]


def _map50(model_dir: Path | str, validation: Path, split: str, config: InspectConfig) -> float:
    model, processor = load_trained(model_dir, config.model.image_size)
    report = evaluate_split(model, processor, validation, split, config.train.batch_size, config.train.max_new_tokens)
    return report.detection.map50 if report.detection else 0.0


def retrain(
    config: InspectConfig, labelled: Path, engine: Engine, work_dir: Path, validation: Path, margin: float | None = None,
    export: bool = True, validation_split: str = "valid",
) -> RetrainResult:  # fmt: skip
    """Train a challenger on new labelled batches; promote it if it beats the champion by ``margin`` (None: ``retrain.margin``).

    Everything of this run goes to a new timestamped folder under ``work_dir``. ``validation`` is a
    built dataset whose ``validation_split`` stays fixed from night to night, so the two models are
    compared on the same images.
    """
    margin = config.retrain.margin if margin is None else margin
    current: ModelVersion | None = champion(engine)
    start_from = current.path if current else config.model.name
    if not Path(labelled).is_dir():  # a plant before its first export: a quiet night that says where it looked, not a failure
        reason = f"no labelled batches: {labelled} does not exist yet (the app's Export and review export write there)"
        return RetrainResult(False, None, None, None, current.id if current else None, None, None, reason)
    batches = new_labelled_batches(labelled, current.created_at if current else None)
    if not batches:
        return RetrainResult(False, None, None, None, current.id if current else None, None, None, "no labelled data since the champion")
    # One folder per night: the champion may live in an earlier night's folder, so nothing is deleted.
    work_dir = work_dir / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S_%fZ")
    dataset_dir = work_dir / "dataset"
    import_and_build(batches, dataset_dir, config.dataset, config.augment)
    base = {"name": start_from, "revision": None if current else config.model.revision}  # a champion is a local folder: no hub revision
    recipe = config.model_copy(update={"model": config.model.model_copy(update=base)})
    result = train(recipe, dataset_dir, work_dir / "train")
    champion_map50 = _map50(current.path, validation, validation_split, config) if current else None
    finished = (StopReason.EPOCHS_DONE, StopReason.EARLY_STOPPING, StopReason.TIME_LIMIT)  # train.max_minutes: a planned end
    if result.stopped not in finished or result.best_epoch is None:
        reason = f"training did not finish ({result.stopped}: {result.stop_detail}); the champion stays"
        return RetrainResult(False, None, champion_map50, None, current.id if current else None, None, None, reason)
    challenger_dir = merge_checkpoint(work_dir / "train" / "best", work_dir / "challenger")
    challenger_map50 = _map50(challenger_dir, validation, validation_split, config)
    promoted = champion_map50 is None or challenger_map50 >= champion_map50 + margin
    scores = {"map50": challenger_map50, "champion_map50": champion_map50, "validation": f"{validation}:{validation_split}",
              "trained_on": [str(b) for b in batches], "promoted": promoted, "image_size": saved_input_size(challenger_dir)}  # fmt: skip
    version = register_model(engine, challenger_dir, base_model=str(start_from), metrics=scores)
    if promoted:
        promote_model(engine, int(version.id))
        reason = "first model" if champion_map50 is None else f"mAP@50 {challenger_map50:.3f} beats the champion's {champion_map50:.3f}"
    else:
        reason = f"mAP@50 {challenger_map50:.3f} does not beat the champion's {champion_map50:.3f} by {margin}; the champion stays"
    export_dir = None
    if promoted and export:
        from inspect_core.inference.onnx_export import export_onnx

        export_dir = work_dir / "onnx"
        export_onnx(challenger_dir, export_dir)
    return RetrainResult(promoted, challenger_map50, champion_map50, int(version.id), current.id if current else None, challenger_dir,
                         export_dir, reason)  # fmt: skip
