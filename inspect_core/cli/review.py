"""`inspect-core review export`: reviewed frames out of the results store, as a labelled batch or a Label Studio import."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from inspect_core.cli.common import USER_ERRORS, _fail, app, console, deprecated, errors, renamed
from inspect_core.cli.recipe_options import SetOption, recipe

review_app = typer.Typer(help="Reviewed detections: export them as labelled batches for retraining, or as Label Studio pre-labels.",
                         no_args_is_help=True)  # fmt: skip
app.add_typer(review_app, name="review")

MAX_ROWS = 2**31 - 1


def _when(option: str, value: str | None) -> datetime | None:
    from inspect_core.errors import UsageError
    from inspect_core.reporting import parse_when

    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as error:
        raise UsageError(f"--{option}: {error}") from None


def _check_out(out: Path, fmt: str) -> None:
    """``--out`` names one batch: a folder holding folders (the labelled root itself, say) is never replaced by one."""
    from inspect_core.errors import UsageError
    from inspect_core.reporting.outputs import check_output_folder

    check_output_folder(out, "--out")
    if out.is_dir():
        nested = sorted(p.name for p in out.iterdir() if p.is_dir() and not (fmt == "label-studio" and p.name == "images"))
        if nested:
            raise UsageError(f"--out {out} holds folders ({', '.join(nested[:3])}): it looks like the labelled root, not one batch; "
                             f"name a batch folder inside it, e.g. {out / 'YYYY-MM-DD'}")  # fmt: skip


@review_app.command("export")
def review_export(
    db: Annotated[str, typer.Option(help="Results store URL: sqlite:///results.db or postgresql+psycopg://user@host/db.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder to write (default: <retrain.labelled_root>/<today> for voc, label-studio/<today>).")
    ] = None,
    label_format: Annotated[
        str | None, typer.Option("--label-format", help="voc: a labelled batch for retraining; label-studio: pre-labelled tasks.")
    ] = None,
    old_format: Annotated[str | None, deprecated("--format", "--label-format")] = None,
    since: Annotated[str | None, typer.Option(help="Frames captured from: 2026-11-01, 2026-11-01T08:00 (UTC) or 7d/24h ago.")] = None,
    until: Annotated[str | None, typer.Option(help="Frames captured before this time (exclusive); same forms as --since.")] = None,
    reviewed_after: Annotated[str | None, typer.Option(help="voc: only frames whose review changed after this time.")] = None,
    model: Annotated[str | None, typer.Option(help="Only frames scored by this model version (its registered name).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, max=MAX_ROWS, help="label-studio: the newest N frames only.")] = None,
    url_prefix: Annotated[str, typer.Option(help="label-studio: prefix of the image URLs (default: Label Studio local files).")] = (
        "/data/local-files/?d="
    ),
    link: Annotated[bool, typer.Option("--link/--copy", help="Hard-link images into the batch where possible, or always copy.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace the batch folder if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    config: Annotated[
        Path | None, typer.Option(help="Recipe YAML: its retrain.labelled_root is where a voc batch goes by default.")
    ] = None,
    sets: SetOption = None,
) -> None:
    """Write reviewed frames as a Pascal VOC batch (what dataset build and nightly retraining import) or Label Studio tasks.

    voc: every completely reviewed frame (each model box accepted, rejected or relabelled, or the frame
    marked clean), with the accepted, relabelled and drawn boxes; one image once, by its latest review.
    Nightly retraining takes the folders under its labelled root (the recipe's retrain.labelled_root,
    labelled/ by default, where this command writes <today>/) that changed since the champion was registered.

    label-studio: scored frames with the model's boxes as predictions (and reviewed boxes as annotations).

    Example: inspect-core review export --db sqlite:///results.db --out labelled/2026-11-21
    """
    from inspect_core.data.exporters import FORMATS, default_batch, write_label_studio, write_voc_batch
    from inspect_core.errors import UsageError
    from inspect_core.store import ReportFilter, StoreUnavailableError, open_store
    from inspect_core.store.reviews import prelabelled_frames, reviewed_frames

    try:
        fmt = renamed(label_format, old_format, "--label-format", "--format") or "voc"
        if fmt not in FORMATS:
            raise UsageError(f"--label-format {fmt!r}: use {' or '.join(FORMATS)}")
        if fmt == "voc" and limit is not None:
            raise UsageError("--limit applies to --label-format label-studio; a voc batch holds every reviewed frame that matches")
        if fmt == "label-studio" and reviewed_after is not None:
            raise UsageError("--reviewed-after applies to --label-format voc (label-studio exports scored frames, reviewed or not)")
        times = {"since": _when("since", since), "until": _when("until", until), "reviewed_after": _when("reviewed-after", reviewed_after)}
        target = out if out is not None else default_batch(fmt, labelled_root=recipe(config, sets).retrain.labelled_root)
        _check_out(target, fmt)
        try:
            engine = open_store(db, create=False)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{error}; score and review frames into it first") from None
        if fmt == "voc":
            frames = reviewed_frames(engine, times["since"], times["until"], times["reviewed_after"], model=model)
            result = write_voc_batch(frames, target, overwrite=overwrite, link=link)
        else:
            frames = prelabelled_frames(engine, ReportFilter(since=times["since"], until=times["until"], model=model), limit=limit)
            result = write_label_studio(frames, target, overwrite=overwrite, link=link, url_prefix=url_prefix)
    except (*USER_ERRORS, StoreUnavailableError) as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    if result.out is None:
        what = "completely reviewed frames" if fmt == "voc" else "scored frames"
        console.print(f"nothing to export: no {what} match; nothing was written", highlight=False, markup=False)
    else:
        per_class = ", ".join(f"{name} {n}" for name, n in result.boxes.items()) or "none"
        console.print(Text(f"wrote {result.frames} frame(s) to {result.out} ({fmt}): boxes {per_class}; {result.clean_frames} clean; "
                           f"{result.linked} image(s) linked, {result.copied} copied"))  # fmt: skip
    for image, reason in result.skipped:
        errors.print(Text(f"left out {image}: {reason}"))
