"""The ingest flow: register the images a camera PC drops into a folder, optionally capturing them from a camera first.

``watch_seconds`` = 0 takes what is in the folder now (waiting until it has settled) and ends: the
pipeline and quick runs use that. The continuous deployment keeps polling for ``watch_seconds`` and
is scheduled again as it ends, one run at a time, so the folder is watched around the clock while
every stretch still shows in the UI as a run with its counts.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows import DEFAULT_STORE_URL, SAMPLE_FOLDER
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
    folder: str = SAMPLE_FOLDER,
    store_url: str = DEFAULT_STORE_URL,
    camera: str = "cam-1",
    line: str = "line-1",
    settle_seconds: float = 2.0,
    poll_seconds: float = 2.0,
    watch_seconds: float = 0.0,
    archive_dir: str | None = None,
    camera_source: str | None = None,
    max_frames: int = 100,
) -> IngestCounts:
    """Register ``folder``'s images as frames of ``camera`` over ``line``; keep watching for ``watch_seconds``.

    With ``camera_source`` (a USB index such as 0, an rtsp:// URL or a video file) up to
    ``max_frames`` frames are captured into ``folder`` first. Originals stay where they are unless
    ``archive_dir`` is given.
    """
    captured = capture_frames(camera_source, folder, camera, line, max_frames) if camera_source else None
    counts = ingest_folder(folder, store_url, camera, line, settle_seconds, poll_seconds, watch_seconds, archive_dir=archive_dir)
    create_markdown_artifact(
        ingest_markdown(folder, counts, captured.written if captured else None), key="ingest-summary", description=f"ingest of {folder}"
    )
    return counts
