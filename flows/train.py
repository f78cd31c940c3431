"""The train flow: nightly champion/challenger retraining on the labelled batches that arrived since the champion.

Challenger and champion are evaluated on the same fixed validation set; the challenger is promoted
only when its mAP@50 beats the champion's by ``margin`` (the score flow then picks it up). The
validation set is built once from ``validation_source`` when it does not exist yet, and never
rebuilt by this flow afterwards: comparing nights only means something on the same images.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger

from flows import DEFAULT_CONFIG, RUN_DIR, SAMPLE_FOLDER, flow_recipe
from flows.tasks import build_dataset_task, retrain_task
from inspect_core.data.dataset_builder import MANIFEST
from inspect_core.training.retraining import RetrainResult


def _map(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def model_rows(result: RetrainResult) -> list[dict[str, object]]:
    """Challenger and champion side by side on the validation set."""
    return [
        {"model": "challenger", "registry id": result.challenger_version_id, "mAP@50": _map(result.challenger_map50),
         "promoted": result.promoted},
        {"model": "champion (before)", "registry id": result.champion_version_id, "mAP@50": _map(result.champion_map50),
         "promoted": "-"},
    ]  # fmt: skip


def train_markdown(result: RetrainResult, validation: str, margin: float) -> str:
    verdict = "promoted: the score flow uses it from now on" if result.promoted else "not promoted: the champion stays"
    lines = [
        f"# Retraining: challenger {verdict}",
        "",
        f"- reason: {result.reason}",
        f"- challenger mAP@50: {_map(result.challenger_map50)} (registry id {result.challenger_version_id or '-'})",
        f"- champion mAP@50: {_map(result.champion_map50)} (registry id {result.champion_version_id or '-'})",
        f"- validation set: `{validation}` (fixed); promotion margin: {margin}",
        f"- challenger model: `{result.challenger_dir or '-'}`",
        f"- ONNX export: `{result.export_dir or '-'}`",
    ]
    return "\n".join(lines) + "\n"


@flow(name="train")
def train(
    config: str = DEFAULT_CONFIG,
    labelled: str | None = None,
    validation: str = f"{RUN_DIR}/validation",
    validation_source: str = SAMPLE_FOLDER,
    store_url: str | None = None,
    store_secret: str | None = None,
    work_dir: str = f"{RUN_DIR}/retrain",
    margin: float | None = None,
    export: bool = True,
    overrides: list[str] | None = None,
) -> RetrainResult:
    """Fine-tune a challenger on the new batch folders under ``labelled``; promote it if it beats the champion by ``margin``.

    ``labelled`` and ``margin`` default to the recipe's ``retrain.labelled_root`` (``labelled/``, where the
    app's Export page and ``inspect-core review export`` write each day's batch) and ``retrain.margin``.

    ``validation`` is a built dataset (its valid split is used); it is built from ``validation_source``
    on the first run only. ``export`` writes an ONNX export of a promoted model.
    """
    recipe = flow_recipe(config, overrides, store_url, store_secret)  # model:, lora:, train:, dataset: and store.url
    if not (Path(validation) / MANIFEST).is_file():
        get_run_logger().info("no validation set at %s yet: building it once from %s", validation, validation_source)
        build_dataset_task(recipe, validation_source, validation, overwrite=False)
    labelled = labelled if labelled is not None else str(recipe.retrain.labelled_root)
    margin = margin if margin is not None else recipe.retrain.margin
    result = retrain_task(recipe, labelled, recipe.store.url, work_dir, validation, margin, export)
    create_table_artifact(model_rows(result), key="retrain-models", description="challenger vs champion on the fixed validation set")
    create_markdown_artifact(train_markdown(result, validation, margin), key="retrain-summary", description="nightly retraining")
    return result
