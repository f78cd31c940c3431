"""The ingest flow: register the images a camera PC drops into a folder, optionally capturing them from a camera first.

``watch_seconds`` = 0 takes what is in the folder now (waiting until it has settled) and ends: the
pipeline and quick runs use that. The continuous deployment keeps polling for ``watch_seconds`` and
is scheduled again as it ends, one run at a time, so the folder is watched around the clock while
every stretch still shows in the UI as a run with its counts.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows import DEFAULT_CONFIG, dotted, flow_recipe
from flows.tasks import IngestCounts, capture_frames, ingest_folder


def ingest_markdown(folder: str, counts: IngestCounts, frames_written: int | None = None) -> str:
    """Counts per outcome, then why files were quarantined (one line per distinct reason)."""
    lines = [
        f"# Ingest of `{folder}`",
        "",
        "| registered | duplicates (content already stored) | quarantined | still settling |",
        "|---|---|---|---|",
        f"| {counts.registered} | {counts.duplicates} | {counts.quarantined} | {counts.waiting} |",
        "",
        f"- polls: {counts.polls} ({counts.failed_polls} failed: store or folder unreachable, retried at the next poll)",
    ]
    if frames_written is not None:
        lines.append(f"- frames captured from the camera: {frames_written}")
    if counts.quarantine_reasons:
        lines += ["", "## Quarantined", ""]
        lines += [f"- {n} x {reason}" for reason, n in sorted(counts.quarantine_reasons.items(), key=lambda item: -item[1])]
    return "\n".join(lines) + "\n"


@flow(name="ingest")
def ingest(
    config: str = DEFAULT_CONFIG,
    folder: str | None = None,
    store_url: str | None = None,
    store_secret: str | None = None,
    camera: str | None = None,
    line: str | None = None,
    settle_seconds: float | None = None,
    poll_seconds: float | None = None,
    watch_seconds: float = 0.0,
    archive_dir: str | None = None,
    camera_source: str | None = None,
    max_frames: int = 100,
    overrides: list[str] | None = None,
) -> IngestCounts:
    """Register the folder's images as frames of the camera over the line; keep watching for ``watch_seconds``.

    Folder, camera, line, timings, archive folder and store come from the recipe ``config`` (its
    ingest: and store: sections); the parameters given, and ``overrides`` (``key.path=value``), replace
    them for this run. With ``camera_source`` (a USB index such as 0, an rtsp:// URL or a video file)
    up to ``max_frames`` frames are captured into the folder first, with the recipe's sampling.
    """
    flags = dotted("ingest", folder=folder, camera_id=camera, line_id=line, settle_seconds=settle_seconds, poll_seconds=poll_seconds,
                   archive_dir=archive_dir, camera_source=camera_source)  # fmt: skip
    recipe = flow_recipe(config, overrides, store_url, store_secret, **flags)
    settings, folder = recipe.ingest, str(recipe.ingest.folder)
    camera, line, archive = settings.camera_id, settings.line_id, str(settings.archive_dir) if settings.archive_dir else None
    captured = None
    if camera_source:
        reconnects = settings.max_reconnects if settings.max_reconnects is not None else 3  # a flow run must end
        captured = capture_frames(settings.camera_source, folder, camera, line, max_frames, settings.every_seconds, reconnects)
    counts = ingest_folder(
        folder, recipe.store.url, camera, line, settings.settle_seconds, settings.poll_seconds, watch_seconds,
        recursive=settings.recursive, archive_dir=archive,
    )  # fmt: skip
    create_markdown_artifact(
        ingest_markdown(folder, counts, captured.written if captured else None), key="ingest-summary", description=f"ingest of {folder}"
    )
    return counts
