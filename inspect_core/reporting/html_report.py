"""``report --table-format html``: one self-contained page a quality engineer reads and forwards.

Title and window; headline numbers (images scored, defective images, defect rate, detections) in all
and per line; defect rate per line and per class over the plant's local days or shifts
(``report.timezone``, ``report.shifts``, ``report.bucket``); the confidence histogram; the most
confident frames as thumbnails with their boxes drawn; the newest detections. Both tables sort and
filter in the page. Every number comes from the store's report queries with the one filter, so the
page agrees with ``report --json``; times are the plant's, rounded to the minute.

Size stays bounded whatever the store holds: the charts are three ~40 KB PNGs, the thumbnails
``top`` JPEGs ``THUMB_WIDTH`` px wide (about 20-40 KB each for fabric frames), and the detections table
at most ``max_rows`` rows (the page says how many of how many it shows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import pandas as pd

from inspect_core.reporting.annotate import _draw, palette
from inspect_core.reporting.html_charts import confidence_chart, rate_per_class_chart, rate_per_line_chart
from inspect_core.reporting.html_page import Cell, esc, image, page, table
from inspect_core.store import (
    Engine,
    ReportFilter,
    class_summary,
    confidence_histogram,
    defect_rate_per_line,
    detections_frame,
    top_image_boxes,
)
from inspect_core.store.plant_clock import PlantClock
from inspect_core.store.report_frames import frame_details
from inspect_core.store.report_times import class_rate_per_bucket, defect_rate_per_bucket, defects_per_bucket

THUMB_WIDTH = 400  # pixels kept; shown at 240 CSS px (sharp on a high-density screen), full size on a click
THUMB_QUALITY = 80
MAX_ROWS = 500
TOP_FRAMES = 12
CHART_TITLES = {"rate_per_line": "defect rate per line", "rate_per_class": "defect rate per class", "confidence": "confidence histogram"}


@dataclass
class HtmlReport:
    """The page, and what it shows: the chart PNGs (a Prefect artifact embeds them too) and the counts."""

    html: str
    charts: dict[str, bytes]
    images_scored: int
    images_with_defects: int
    detections: int
    rows_shown: int
    rows_total: int
    frames_shown: int
    missing_images: list[str] = field(default_factory=list)


def local_minute(when: datetime, clock: PlantClock) -> str:
    """A time as the plant reads it: its zone, rounded to the minute."""
    moment = when.astimezone(clock.zone)
    return (moment + timedelta(seconds=30)).replace(second=0, microsecond=0).strftime("%Y-%m-%d %H:%M")


def _window(flt: ReportFilter, clock: PlantClock) -> str:
    start = local_minute(flt.since, clock) if flt.since else "the first capture"
    end = local_minute(flt.until, clock) if flt.until else "now"
    parts = [f"captured from {start} to {end} ({clock.name})"]
    names = {"line": "line", "camera": "camera", "class_name": "class", "model": "model"}
    parts += [f"{label} {getattr(flt, key)}" for key, label in names.items() if getattr(flt, key) is not None]
    kept = (
        "detections at the model's operating thresholds"
        if flt.min_confidence is None
        else f"detections with confidence >= {flt.min_confidence:g}"
    )
    return "; ".join(parts) + f"; {kept}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _headline(per_line: pd.DataFrame, line_detections: pd.Series, detections: int) -> tuple[str, int, int]:
    scored, defective = int(per_line["images_scored"].sum()), int(per_line["images_with_defects"].sum())
    cards = [("images scored", f"{scored:,}"), ("defective images", f"{defective:,}"), ("defect rate", _percent(defective, scored)),
             ("detections", f"{detections:,}")]  # fmt: skip
    html = '<div class="cards">' + "".join(
        f'<div class="card"><div class="value">{esc(v)}</div><div class="label">{esc(k)}</div></div>' for k, v in cards
    ) + "</div>"  # fmt: skip
    rows = []
    for row in per_line.itertuples():
        name = "(no line)" if row.line is None else row.line
        rate = row.images_with_defects / row.images_scored if row.images_scored else 0.0
        rows.append([Cell(name), Cell(f"{row.images_scored:,}", row.images_scored, True),
                     Cell(f"{row.images_with_defects:,}", row.images_with_defects, True),
                     Cell(_percent(row.images_with_defects, row.images_scored), f"{rate:.6f}", True),
                     Cell(f"{int(line_detections.get(name, 0)):,}", int(line_detections.get(name, 0)), True)])  # fmt: skip
    headers = [("line", "text"), *((name, "number") for name in ("images scored", "defective images", "defect rate", "detections"))]
    return html + table("per-line", headers, rows, sortable=False), scored, defective


def _thumbnail(path: str, boxes: pd.DataFrame, colours: dict[str, tuple[int, int, int]]) -> bytes | None:
    """The frame shrunk to ``THUMB_WIDTH`` with its boxes drawn on it (``annotate``'s drawing), as JPEG; None when the file is gone."""
    pixels = cv2.imread(path, cv2.IMREAD_COLOR) if Path(path).is_file() else None
    if pixels is None:
        return None
    height, width = pixels.shape[:2]
    if width > THUMB_WIDTH:
        pixels = cv2.resize(pixels, (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width))), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", _draw(pixels, boxes, colours), [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
    return encoded.tobytes() if ok else None


def _frames(engine: Engine, flt: ReportFilter, clock: PlantClock, top: int) -> tuple[str, int, list[str]]:
    boxes = top_image_boxes(engine, flt, top)
    if boxes.empty:
        return '<p class="note">No detection matches the filter.</p>', 0, []
    details = frame_details(engine, boxes["image_id"].unique()).set_index("image_id")
    colours = palette(boxes["class_name"])
    rows, missing = [], []
    for (best, image_id, _model_id), group in boxes.groupby(["best", "image_id", "model_version_id"], sort=False):
        path, info = group["path"].iloc[0], details.loc[image_id]
        picture = _thumbnail(path, group, colours)
        if picture is None:
            missing.append(path)
        shown = (
            image(picture, "image/jpeg", f"{Path(path).name} with its boxes", "thumb")
            if picture
            else '<span class="missing">file missing</span>'
        )
        found = ", ".join(f"{row.class_name} {row.confidence:.2f}" for row in group.sort_values("confidence", ascending=False).itertuples())
        rows.append([Cell(raw_html=shown), Cell(local_minute(info.captured_at, clock), int(info.captured_at.timestamp())),
                     Cell("(no line)" if info.line is None else info.line), Cell(info.camera), Cell(group["model"].iloc[0]),
                     Cell(found), Cell(f"{best:.2f}", f"{best:.6f}", True), Cell(Path(path).name)])  # fmt: skip
    headers = [("frame", "text"), (f"captured ({clock.name})", "time"), ("line", "text"), ("camera", "text"), ("model", "text"),
               ("detections", "text"), ("best", "number"), ("file", "text")]  # fmt: skip
    note = f'<p class="note">The {len(rows)} frame(s) whose best matching detection is most confident; click a thumbnail to enlarge it.</p>'
    return note + table("top-frames", headers, rows), len(rows), missing


def _detections(frame: pd.DataFrame, total: int, clock: PlantClock) -> str:
    rows = [[Cell(local_minute(row.captured_at, clock), int(row.captured_at.timestamp())),
             Cell("(no line)" if row.line is None else row.line), Cell(row.camera), Cell(row.class_name),
             Cell(f"{row.confidence:.2f}", f"{row.confidence:.6f}", True), Cell(row.model), Cell(Path(row.image_path).name)]
            for row in frame.itertuples()]  # fmt: skip
    headers = [(f"captured ({clock.name})", "time"), ("line", "text"), ("camera", "text"), ("class", "text"), ("confidence", "number"),
               ("model", "text"), ("file", "text")]  # fmt: skip
    shown = f"all {total:,}" if len(rows) >= total else f"the newest {len(rows):,} of {total:,}"
    return f'<p class="note">Showing {shown} matching detections.</p>' + table("detections", headers, rows)


def _per_class(summary: pd.DataFrame) -> str:
    rows = [[Cell(r.class_name), Cell(f"{r.detections:,}", r.detections, True), Cell(f"{r.mean_confidence:.2f}", None, True),
             Cell(f"{r.max_confidence:.2f}", None, True)] for r in summary.itertuples()]  # fmt: skip
    headers = [("class", "text"), ("detections", "number"), ("mean confidence", "number"), ("max confidence", "number")]
    return table("per-class", headers, rows, sortable=False) if rows else '<p class="note">No detection matches the filter.</p>'


def build_html_report(
    engine: Engine, flt: ReportFilter, clock: PlantClock, title: str = "Defect report", top: int = TOP_FRAMES,
    max_rows: int = MAX_ROWS, now: datetime | None = None,
) -> HtmlReport:  # fmt: skip
    """Query the store with ``flt`` and render the page (the thumbnails read the frames' files, where they still are)."""
    per_line = defect_rate_per_line(engine, flt)
    summary = class_summary(engine, flt)
    rates, defects = defect_rate_per_bucket(engine, flt, clock), defects_per_bucket(engine, flt, clock)
    line_detections = (
        defects.assign(line=defects["line"].map(lambda v: "(no line)" if v is None else v)).groupby("line")["detections"].sum()
    )
    detections = int(summary["detections"].sum()) if not summary.empty else 0
    charts = {
        "rate_per_line": rate_per_line_chart(rates, clock),
        "rate_per_class": rate_per_class_chart(class_rate_per_bucket(rates, defects), clock),
        "confidence": confidence_chart(confidence_histogram(engine, flt)),
    }
    headline, scored, defective = _headline(per_line, line_detections, detections)
    frames_html, frames_shown, missing = _frames(engine, flt, clock, top)
    newest = detections_frame(engine, flt, limit=max_rows)
    made = local_minute(now or datetime.now(timezone.utc), clock)
    body = "\n".join([
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{esc(_window(flt, clock))}</p>',
        f'<p class="meta">Buckets: {esc(clock.describe())}. Times are local to the plant ({esc(clock.name)}), rounded to the minute. '
        f"Made {esc(made)}.</p>",
        "<h2>Headline</h2>", headline,
        "<h2>Over time</h2>",
        *(image(png, "image/png", CHART_TITLES[name], "chart") for name, png in charts.items() if name != "confidence"),
        "<h2>Per class</h2>", _per_class(summary), image(charts["confidence"], "image/png", CHART_TITLES["confidence"], "chart"),
        "<h2>Most confident frames</h2>", frames_html,
        "<h2>Detections</h2>", _detections(newest, detections, clock),
    ])  # fmt: skip
    return HtmlReport(page(title, body), charts, scored, defective, detections, len(newest), detections, frames_shown, missing)
