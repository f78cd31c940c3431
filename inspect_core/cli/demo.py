"""`inspect-core demo`: the plant's workflow in small on the embedded default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from inspect_core.cli.common import USER_ERRORS, _fail, app, console
from inspect_core.cli.dataset import _print_summary
from inspect_core.cli.progress import stage_progress
from inspect_core.cli.recipe_options import SetOption, recipe
from inspect_core.cli.training import _print_evaluation
from inspect_core.pipeline import run_demo


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="Recipe to run.")] = Path("configs/demo.yaml"),
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for everything the demo writes: OUT/dataset, OUT/train (with merged/) and the store OUT/results.db "
            "(sets dataset.output, train.output_dir and store.url; a --set of any of them still wins).",
            show_default="the recipe's: runs/demo/...",
        ),
    ] = None,
    sets: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """The plant's workflow in small, on the embedded default: build the sample dataset, fine-tune the
    shipped tiny Florence-2 with LoRA, evaluate on the held-out test split, merge the adapter, and
    score the test images into the results store (store.url of the recipe).

    The same stages as `dataset build`, `train`, `evaluate`, `merge` and `score` (inspect_core.pipeline).

    Example: inspect-core demo --set train.epochs=1

    Keep an earlier run: inspect-core demo --out runs/demo-tiny-randomised --set model.name=tiny-randomised
    """
    try:
        cfg = recipe(config, _out_settings(out) + list(sets or []))
        with stage_progress(announce=not as_json) as hooks:
            result = run_demo(cfg, hooks)
    except USER_ERRORS as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    _print_summary(result.dataset, as_json=False)
    training, report, base_report, scored = result.training, result.test, result.base_test, result.scoring
    best = training.output_dir / "best"
    console.print(
        f"fine-tuned {cfg.model.name} ({cfg.lora.strategy}) for {training.epochs_run} epoch(s): {best}", markup=False, highlight=False
    )
    _print_evaluation(report)
    if base_report.detection and report.detection:
        before, after = base_report.detection.map50, report.detection.map50
        console.print(f"test mAP@50 before fine-tuning (the base model): {before:.3f}; after: {after:.3f}")
    console.print(
        f"scored {scored.scored} test images into {cfg.store.url} ({scored.detections} defects, run {scored.run_id})",
        markup=False,
        highlight=False,
    )
    console.print(
        f"see them: .venv/bin/inspect-core app --db {cfg.store.url} --model {result.merged}  (then open http://127.0.0.1:7860)",
        markup=False,
        highlight=False,
    )


def _out_settings(out: Path | None) -> list[str]:
    """``--out`` as the ``--set`` items it stands for, placed before the user's own so an explicit one wins.

    JSON-quoted: a JSON string is a YAML string, so a path with a colon or a space stays one value.
    """
    if out is None:
        return []
    store = "sqlite:///" + str(out / "results.db")
    return [f"dataset.output={json.dumps(str(out / 'dataset'))}", f"train.output_dir={json.dumps(str(out / 'train'))}",
            f"store.url={json.dumps(store)}"]  # fmt: skip
