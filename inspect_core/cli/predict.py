"""`inspect-core predict`: run a model on a few images and look at the answer, with no database at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from inspect_core.cli.common import USER_ERRORS, _collect_images, _fail, _progress, app, console, errors
from inspect_core.cli.recipe_options import SetOption, recipe, recipe_default
from inspect_core.data.importers.image_files import shown_path
from inspect_core.errors import BadInputError, ModelLoadError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from inspect_core.inference.predict import Prediction


def _annotated_name(path: Path, taken: set[str]) -> str:
    """``<stem>.png``, with ``_2``, ``_3``... when two inputs share a stem (frames/a/x.png and frames/b/x.jpg)."""
    name, n = f"{path.stem}.png", 1
    while name in taken:
        n += 1
        name = f"{path.stem}_{n}.png"
    taken.add(name)
    return name


def _write_png(target: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise BadInputError(f"{target}: the annotated image could not be encoded as PNG")
    target.write_bytes(encoded.tobytes())  # not cv2.imwrite: it hides a full disk or a read-only folder behind False


def _write_crops(out: Path, annotated: Path, rgb: np.ndarray, prediction: Prediction, taken: set[str]) -> list[Path]:
    """``<annotated stem>_crop<k>.png`` per detection, k as in the table (most confident first), for strips and large frames.

    A 4096 px strip shown whole puts a defect in a few screen pixels: the engineer finds where along the
    web on the annotated strip and what it is on its crop (``reporting.annotate.detection_crops``).
    """
    import cv2

    from inspect_core.reporting.annotate import detection_crops, wants_crops

    if not prediction.detections or not wants_crops(prediction.width, prediction.height):
        return []
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # the palette is BGR, as on the annotated image
    written = []
    for k, (_window, crop) in enumerate(detection_crops(bgr, [(d.label, d.score, d.box) for d in prediction.detections]), start=1):
        name, n = f"{annotated.stem}_crop{k}.png", 1
        while name in taken:  # an input already called <stem>_crop<k>
            n += 1
            name = f"{annotated.stem}_crop{k}_{n}.png"
        taken.add(name)
        _write_png(out / name, cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        written.append(out / name)
    return written


def _print_table(results: list[tuple[Path, Prediction]], task: str) -> None:
    table = Table("class" if task == "od" else "phrase", "confidence", "raw", "box (px)")
    table.columns[0].overflow = "fold"
    table.add_column("image", overflow="fold", ratio=1)
    for path, prediction in results:
        if not prediction.detections:
            table.add_row(Text("(none)", style="dim"), "", "", "", Text(shown_path(path)))
        for i, d in enumerate(prediction.detections):
            box = ",".join(f"{v:.0f}" for v in d.box)
            table.add_row(Text(d.label), f"{d.score:.2f}", f"{d.raw_score:.2f}", box, Text(shown_path(path) if i == 0 else ""))
    console.print(table)
    for path, prediction in results:
        if prediction.text:
            console.print(Text.assemble((f"{shown_path(path)}: ", "bold"), prediction.text), highlight=False, soft_wrap=True)


@app.command()
def predict(
    images: Annotated[
        list[str],
        typer.Option(metavar="PATH", help="An image file, a folder (searched recursively) or a glob such as 'frames/*.png'; repeatable."),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="`tiny`, a merged model folder, a training checkpoint folder or a hub id.", show_default=recipe_default("model.name")
        ),
    ] = None,
    task: Annotated[str, typer.Option(help="od (defect classes), dense (a phrase per region) or grounding (find --phrase).")] = "od",
    phrase: Annotated[str | None, typer.Option(help="What --task grounding looks for, e.g. 'a dark hole'.")] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Show boxes at or above this confidence (every class); default: the model's operating thresholds."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the images with their boxes drawn (<image name>.png); line-scan strips and frames over 2048 px "
            "also get one crop per detection (<image name>_crop<k>.png, k as in the table)."
        ),
    ] = None,
    tile: Annotated[
        bool | None,
        typer.Option(
            "--tile/--no-tile", help="Look at large or line-scan images as overlapping tiles.", show_default=recipe_default("score.tile")
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="auto (bf16 where the chip has bf16 units), bf16 or fp32.", show_default=recipe_default("score.precision")),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; its model: and score: sections apply (never its store).")] = None,
    sets: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the detections as JSON, one object per image.")] = False,
) -> None:
    """Run a model on images and print what it finds; no results store is opened or written.

    Confidences are calibrated when the model folder has a calibration.json, and the boxes shown are
    those at or above the model's operating thresholds (or --threshold), as `score` would count them.
    Labels outside the model's classes are dropped for --task od. Images are checked as scoring checks
    them (decode budget, truncated or non-image files); one that cannot be used is named on stderr,
    the others are still shown, and the exit code is 3.

    Example: inspect-core predict --model runs/train/best --images frames/cam3_0042.png --out annotated/ --threshold 0.2
    """
    from inspect_core.inference.predict import TASKS, load_image, load_predictor

    try:
        if task not in TASKS:
            raise UsageError(f"--task {task!r}: use one of {', '.join(TASKS)}")
        if task == "grounding" and not (phrase and phrase.strip()):
            raise UsageError("--task grounding needs --phrase, e.g. --phrase 'a dark hole'")
        cfg = recipe(config, sets, {"model.name": model, "score.tile": tile, "score.precision": precision})
        paths = [p for spec in images for p in _collect_images(spec)]
        if out is not None:
            if out.exists() and not out.is_dir():
                raise UsageError(f"--out {out} is a file; give a folder for the annotated images")
            out.mkdir(parents=True, exist_ok=True)
        with errors.status(f"loading {cfg.model.name}"):
            predictor = load_predictor(cfg.model.name, cfg.score.precision, cfg.model.image_size, settings=cfg.score)
    except (*USER_ERRORS, ModelLoadError) as error:
        _fail(error)
    results: list[tuple[Path, Prediction]] = []
    written: dict[Path, Path] = {}
    crops: dict[Path, list[Path]] = {}
    failed: dict[Path, str] = {}
    taken: set[str] = set()
    with _progress() as progress:
        bar = progress.add_task("predicting", total=len(paths))
        for path in paths:
            try:
                pixels = load_image(path)
            except BadInputError as error:
                failed[path] = str(error)
                errors.print(Text.assemble(("cannot use ", "yellow"), str(error)), highlight=False, soft_wrap=True)
                progress.advance(bar)
                continue
            prediction = predictor.predict([pixels], task=task, phrase=phrase, threshold=threshold, tile=cfg.score.tile)[0]
            results.append((path, prediction))
            if out is not None:
                target = out / _annotated_name(path, taken)
                try:
                    _write_png(target, prediction.draw(pixels))
                    crops[path] = _write_crops(out, target, pixels, prediction, taken)
                except OSError as error:
                    failed_name = Path(error.filename).name if error.filename else target.name
                    _fail(UsageError(f"--out {out}: cannot write {failed_name}: {error.strerror or error}"))
                written[path] = target
            progress.advance(bar)
    if as_json:
        rows = [{"image": shown_path(p), **r.as_dict(), "annotated": shown_path(written[p]) if p in written else None,
                 "crops": [shown_path(c) for c in crops.get(p, [])]} for p, r in results]  # fmt: skip
        rows += [{"image": shown_path(p), "error": reason} for p, reason in failed.items()]
        typer.echo(json.dumps({"model": cfg.model.name, "task": task, "thresholds": predictor.thresholds_for(threshold).as_dict(),
                               "images": rows}, indent=2))  # fmt: skip
    else:
        _print_table(results, task)
        if written:
            cropped = f" and {n} crop(s) around detections" if (n := sum(map(len, crops.values()))) else ""
            errors.print(f"{len(written)} annotated image(s){cropped} written to {out}", markup=False, highlight=False)
    if failed:
        raise typer.Exit(code=BadInputError.exit_code)
