"""`inspect-core score` and `inspect-core export onnx`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from inspect_core.cli.common import USER_ERRORS, _collect_images, _fail, app, console, errors
from inspect_core.cli.recipe_options import SetOption, recipe, recipe_default, set_in_recipe
from inspect_core.errors import ModelLoadError


@app.command()
def score(
    images: Annotated[str, typer.Option(help="A folder (searched recursively) or a glob such as 'frames/**/*.png'.")],
    model: Annotated[
        str | None,
        typer.Option(help="`tiny`, a merged model folder or a training checkpoint folder.", show_default=recipe_default("model.name")),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(help="Results store URL (sqlite:///file.db, postgresql+psycopg://...).", show_default=recipe_default("store.url")),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="One operating threshold for every class (sets score.default_threshold); "
            "without it, the model's calibrated per-class thresholds (0.3 for a model without calibration.json).",
        ),
    ] = None,
    rescore: Annotated[
        bool,
        typer.Option(
            "--rescore", help="Score images this model already scored again, as a new run (the old run's detections are kept as history)."
        ),
    ] = False,
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; its model:, score: and store: sections apply.")] = None,
    sets: SetOption = None,
    backend: Annotated[
        str | None, typer.Option(help="torch or onnx (an `export onnx` folder as --model).", show_default=recipe_default("score.backend"))
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Images (or tiles) per generate call.", show_default=recipe_default("score.batch_size"))
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="torch backend: auto (bf16 where the chip has bf16 units), bf16 or fp32.", show_default=recipe_default("score.precision")
        ),
    ] = None,
    tile: Annotated[
        bool | None,
        typer.Option(
            "--tile/--no-tile", help="Score large or line-scan images as overlapping tiles.", show_default=recipe_default("score.tile")
        ),
    ] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id recorded with every image (with --line).")] = None,
    line: Annotated[str | None, typer.Option(help="Production line of that camera.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Score images into the results store: defects with class, box and confidence.

    Images already scored by the same model are skipped, so re-running after a crash (even kill -9)
    finishes the job with every image scored exactly once; --rescore scores them again as a new run.
    Every detection down to score.store_floor is stored; those at or above their class's operating
    threshold count as defects, and reports can apply another threshold after the fact.
    Without --db, the results go to store.url of the recipe (or the default), named on stderr.

    Files that cannot be used (unreadable, truncated, not an image, over the 100-megapixel decode
    budget, a name that is not UTF-8) go to the quarantine table with the reason, once per file however
    often rerun; the batch goes on and each is named on stderr. The exit code is then still 0: the
    summary's quarantined count (and "quarantined" in --json) tells a partial batch. A store that stays unreachable exits 1.

    Example: inspect-core score --images frames/ --model runs/train/best --db sqlite:///results.db --camera cam-3 --line L2
    """
    from inspect_core.cli.progress import stage_progress
    from inspect_core.pipeline import score as score_stage
    from inspect_core.store.engine import parse_store_url, safe_url

    try:
        flags = {"model.name": model, "store.url": db, "score.backend": backend, "score.batch_size": batch_size,
                 "score.precision": precision, "score.tile": tile, "score.default_threshold": threshold}  # fmt: skip
        cfg = recipe(config, sets, flags)
        paths = _collect_images(images)
        if db is None:  # never a silent ./runs/results.db: say where the results go
            origin = "store.url of the recipe" if set_in_recipe(cfg, "store.url") else "the default store.url; --db chooses another"
            as_given = parse_store_url(cfg.store.url).set(drivername=cfg.store.url.split("://", 1)[0].strip())
            shown = safe_url(as_given)  # checked, as the user spelled it, a PostgreSQL password hidden
            errors.print(f"results store: {shown} ({origin})", markup=False, highlight=False, soft_wrap=True)
        with stage_progress() as hooks:  # the pipeline's score stage: the demo and the flows score the same way
            summary = score_stage(cfg, paths, camera=camera, line=line, hooks=hooks, rescore=rescore)
    except USER_ERRORS as error:
        _fail(error)
    _show_quarantined(summary.quarantined_files)
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
        return
    console.print(
        f"run {summary.run_id} ({summary.model_version}): {summary.scored} scored, {summary.skipped} already scored, "
        f"{summary.quarantined} quarantined, {summary.detections} defects, {summary.images_per_second:.2f} images/s",
        markup=False,
        highlight=False,
    )
    table = Table("class", "defects")
    for name, count in summary.per_class.items():
        table.add_row(escape(name), str(count))
    console.print(table)


QUARANTINE_LINES = 50  # a folder of 10 000 broken files must not bury the summary


def _show_quarantined(files: dict[str, str]) -> None:
    """One stderr line per file this run quarantined (up to ``QUARANTINE_LINES``): which file, and why."""
    for path, reason in list(files.items())[:QUARANTINE_LINES]:
        errors.print(Text.assemble(("quarantined ", "yellow"), f"{path}: {reason}"), highlight=False, soft_wrap=True)
    if len(files) > QUARANTINE_LINES:
        errors.print(f"... and {len(files) - QUARANTINE_LINES} more quarantined (all are in the store's quarantine table)", highlight=False)


export_app = typer.Typer(help="Export a trained model for serving without PyTorch's overhead.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx_command(
    model: Annotated[Path, typer.Option(help="Merged model folder, LoRA checkpoint folder (merged first), or 'tiny'.")],
    out: Annotated[Path, typer.Option(help="Folder for the graphs, processor and onnx_model.json.")],
    quantize: Annotated[str | None, typer.Option(help="int8: dynamic int8 quantisation of every MatMul/Gemm.")] = None,
    opset: Annotated[int, typer.Option(min=14, help="ONNX opset.")] = 17,
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; its model.image_size is the input size exported.")] = None,
    sets: SetOption = None,
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
    from inspect_core.inference.onnx_export import export_onnx

    try:
        image_size = recipe(config, sets).model.image_size
        with errors.status(f"exporting {model} to ONNX"):
            manifest = export_onnx(model, out, quantize=quantize, opset=opset, image_size=image_size)
    except (*USER_ERRORS, ModelLoadError) as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(manifest | {"output": str(out)}, indent=2))
        return
    sizes = ", ".join(f"{out / manifest['graphs'][k]} ({mb} MB)" for k, mb in manifest["graph_mb"].items())
    parity = manifest["parity_vs_torch"]
    console.print(
        f"exported {model} ({manifest['quantization'] or 'fp32'}, opset {opset}) in {manifest['export_s']} s: {sizes}", markup=False
    )
    console.print(
        f"max difference from PyTorch: encoder {parity['encoder_hidden_max_abs_diff']:.2g}, "
        f"decoder-step logits {parity['step_logits_max_abs_diff']:.2g}"
    )
