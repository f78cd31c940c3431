"""`inspect-core ingest folder|camera`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from inspect_core.cli.common import USER_ERRORS, _fail, _log_to_stderr, app, console, deprecated, errors, renamed
from inspect_core.cli.recipe_options import SetOption, recipe, recipe_default, require
from inspect_core.config import InspectConfig
from inspect_core.errors import BadInputError, EnvironmentFailure

# ---------------------------------------------------------------------------------------------
# Ingestion: `inspect-core ingest folder` and `inspect-core ingest camera`

ingest_app = typer.Typer(
    help="Get images in: watch a folder a camera PC writes into, or capture frames from a camera, stream or video file.",
    no_args_is_help=True,
)
app.add_typer(ingest_app, name="ingest")


def _ingest_config(config: Path | None, sets: list[str] | None, overrides: dict[str, object], db: str | None = None) -> InspectConfig:
    """The recipe with ``--set`` and then the options given on the command line laid over its ingest: section."""
    given = {f"ingest.{k}": v for k, v in overrides.items() if v is not None}
    if "ingest.every_frames" in given:
        given.setdefault("ingest.every_seconds", None)  # --every-frames replaces the recipe's every_seconds
    if "ingest.every_seconds" in given and "ingest.every_frames" not in given:
        given["ingest.every_frames"] = None
    return recipe(config, sets, {**given, "store.url": db})


@ingest_app.command("folder")
def ingest_folder(
    images: Annotated[
        Path | None, typer.Option(help="Folder the camera PC or line-scan system writes images into; or ingest.folder of --config.")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(help="Results store URL (sqlite:///file.db or postgresql+psycopg://...).", show_default=recipe_default("store.url")),
    ] = None,
    camera: Annotated[
        str | None, typer.Option(help="Camera id recorded with every image.", show_default=recipe_default("ingest.camera_id"))
    ] = None,
    line: Annotated[str | None, typer.Option(help="Production line of that camera.", show_default=recipe_default("ingest.line_id"))] = None,
    settle_seconds: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Read a file only after its size and mtime stayed the same this long.",
            show_default=recipe_default("ingest.settle_seconds"),
        ),
    ] = None,
    poll_seconds: Annotated[
        float | None,
        typer.Option(min=0.01, help="Seconds between scans of the folder.", show_default=recipe_default("ingest.poll_seconds")),
    ] = None,
    recursive: Annotated[
        bool | None,
        typer.Option("--recursive/--no-recursive", help="Also watch subfolders.", show_default=recipe_default("ingest.recursive")),
    ] = None,
    archive_dir: Annotated[
        Path | None,
        typer.Option(
            help="Move handled files here (quarantined ones under quarantine/). Without it, originals stay put.",
            show_default=recipe_default("ingest.archive_dir"),
        ),
    ] = None,
    once: Annotated[bool, typer.Option(help="Ingest what is in the folder now (waiting for it to settle), then exit.")] = False,
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; its ingest: and store: sections apply.")] = None,
    sets: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: the report with --once, else one line per busy poll.")] = False,
    old_folder: Annotated[Path | None, deprecated("--folder", "--images")] = None,
) -> None:
    """Watch a folder and register its images in the results store, ready for `inspect-core score`.

    A file is read once its size and mtime stop changing (--settle-seconds), so half-copied files are
    never read. A file copied in again (same content, any name) is counted as a duplicate, not
    registered twice. Capture time is the time in a camera-writer name (cam-3_L2_20261122T044543_786000Z.png),
    else the file's mtime. Empty, truncated and non-image files go to the quarantine table with the reason.
    Runs until Ctrl-C, or with --once until what was there at the start has been handled.

    Example: inspect-core ingest folder --images /mnt/loom3 --db sqlite:///runs/results.db --camera cam-3 --line L2 --once
    """
    from rich.markup import escape

    from inspect_core.ingest.folder import FolderWatcher, IngestReport
    from inspect_core.store import StoreUnavailableError, open_store

    try:
        folder = renamed(images, old_folder, "--images", "--folder")
        overrides = {"folder": folder, "settle_seconds": settle_seconds, "poll_seconds": poll_seconds, "recursive": recursive,
                     "archive_dir": archive_dir, "camera_id": camera, "line_id": line}  # fmt: skip
        cfg = _ingest_config(config, sets, overrides, db)
        require(cfg, "ingest.folder", "--images", "--images /mnt/loom3")
        settings = cfg.ingest
        engine = open_store(cfg.store.url)
        watcher = FolderWatcher(
            settings.folder, engine, settings.camera_id, settings.line_id, settings.settle_seconds, settings.recursive, settings.archive_dir
        )
    except (*USER_ERRORS, StoreUnavailableError) as error:
        _fail(error)
    _log_to_stderr()
    where = f"watching {watcher.folder} for camera {settings.camera_id} on line {settings.line_id}"
    if once:
        try:
            with errors.status(escape(where)):
                report = watcher.catch_up(settings.poll_seconds)
        except (StoreUnavailableError, OSError) as error:
            _fail(error)
        if as_json:
            typer.echo(json.dumps(report.as_dict(), indent=2))
            return
        console.print(report.summary(), markup=False, highlight=False)
        for path, reason in report.quarantined.items():
            console.print(f"[yellow]quarantined[/] {escape(path)}: {escape(reason)}", highlight=False, soft_wrap=True)
        return

    def on_poll(report: IngestReport) -> None:
        if report.registered or report.duplicates or report.quarantined:
            if as_json:
                typer.echo(json.dumps(report.as_dict()))
            else:
                errors.print(report.summary(), markup=False, highlight=False)

    with errors.status(escape(where)):
        totals = watcher.watch(settings.poll_seconds, on_poll=on_poll)
    if as_json:
        typer.echo(json.dumps(totals.as_dict()))
    else:
        counts = f"{totals.registered} registered, {totals.duplicates} duplicate(s), {totals.quarantined} quarantined"
        console.print(f"{totals.polls} poll(s): {counts}", markup=False)


@ingest_app.command("camera")
def ingest_camera(
    camera_source: Annotated[
        str | None,
        typer.Option(
            help="USB camera index (0), rtsp://user:pass@host/stream, http://... (MJPEG) or a video file; "
            "or ingest.camera_source of --config."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder the frames go to; point `ingest folder` at it.", show_default=recipe_default("ingest.frames_dir")),
    ] = None,
    camera: Annotated[
        str | None, typer.Option(help="Camera id, written into every frame's file name.", show_default=recipe_default("ingest.camera_id"))
    ] = None,
    line: Annotated[
        str | None, typer.Option(help="Line id, written into every frame's file name.", show_default=recipe_default("ingest.line_id"))
    ] = None,
    every_frames: Annotated[int | None, typer.Option(min=1, help="Keep every N-th frame (instead of --every-seconds).")] = None,
    every_seconds: Annotated[
        float | None,
        typer.Option(
            min=0.001, help="Keep one frame per S seconds (video time for a file).", show_default=recipe_default("ingest.every_seconds")
        ),
    ] = None,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Stop after writing this many frames (default: no limit).")] = None,
    image_format: Annotated[
        str | None, typer.Option(help="Frame files: png (lossless) or jpg.", show_default=recipe_default("ingest.image_format"))
    ] = None,
    black_below: Annotated[
        float | None,
        typer.Option(
            min=0, help="Reject frames whose mean grey level (0-255) is below this.", show_default=recipe_default("ingest.black_below")
        ),
    ] = None,
    frozen_below: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Reject frames differing from the last kept one by less than this (mean grey levels).",
            show_default=recipe_default("ingest.frozen_below"),
        ),
    ] = None,
    blur_below: Annotated[
        float | None,
        typer.Option(
            min=0, help="Reject frames whose variance of the Laplacian is below this.", show_default=recipe_default("ingest.blur_below")
        ),
    ] = None,
    max_reconnects: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Give up after this many reconnect attempts in a row (none: never, for a live camera).",
            show_default=recipe_default("ingest.max_reconnects"),
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Recipe YAML; its ingest: section applies.")] = None,
    sets: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the capture report as JSON.")] = False,
    old_source: Annotated[str | None, deprecated("--source", "--camera-source")] = None,
    old_format: Annotated[str | None, deprecated("--format", "--image-format")] = None,
) -> None:
    """Capture frames from a camera, stream or video file into a folder, dropping black, frozen and blurred ones.

    Frames are written whole (temp file + rename) as {camera}_{line}_{UTC time}.png. A live source
    that drops is reconnected with exponential backoff (logged); a video file stops at its end.
    Runs until Ctrl-C, --max-frames, the end of a file, or --max-reconnects failed attempts in a row.
    Exit code 0 when it stopped as asked or a video file ended; 1 when it gave up on a live source
    (the frames written so far stay); 3 for a video file it could not read; 2 for an --out that is a
    file or not writable.

    Example: inspect-core ingest camera --camera-source rtsp://10.0.3.21/stream1 --out /data/frames
    --camera cam-3 --line L2 --every-seconds 2
    """
    from rich.markup import escape

    from inspect_core.ingest.camera import CameraCapture, CaptureReport, FrameQuality, parse_source, shown_source

    try:
        source = renamed(camera_source, old_source, "--camera-source", "--source")
        image_format = renamed(image_format, old_format, "--image-format", "--format")
        overrides = {"camera_source": source, "frames_dir": out, "camera_id": camera, "line_id": line, "every_frames": every_frames,
                     "every_seconds": every_seconds, "image_format": image_format, "black_below": black_below,
                     "frozen_below": frozen_below, "blur_below": blur_below, "max_reconnects": max_reconnects}  # fmt: skip
        cfg = _ingest_config(config, sets, overrides)
        require(cfg, "ingest.camera_source", "--camera-source", "--camera-source rtsp://10.0.3.21/stream1")
        settings = cfg.ingest
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
        except (*USER_ERRORS, OSError) as error:
            _fail(error)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        rejected = ", ".join(f"{count} {reason}" for reason, count in sorted(report.rejected.items())) or "none"
        console.print(
            f"{report.written} frame(s) written to {settings.frames_dir} from {report.frames_read} read; rejected: {rejected}; "
            f"{report.reconnects} reconnect(s); {report.end_reason}",
            markup=False,
            highlight=False,
        )
    if report.failed:  # a cron job or Prefect must see a camera that is gone, not a clean exit
        where = f"camera {settings.camera_id} ({shown_source(capture.source)})"
        _fail(EnvironmentFailure(f"{where}: {report.end_reason}") if capture.live else BadInputError(f"{where}: {report.end_reason}"))
