"""The report flow: defects per class, per day and per line over a time window, as UI artifacts and PNG plots.

The plots are written under ``out_dir/<UTC time>/`` (linked from the summary) and also shown in the
UI as image artifacts carrying the PNG inline (a ``data:`` URL): the UI cannot read the server's disk.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

from flows import DEFAULT_CONFIG, RUN_DIR, flow_recipe
from flows.tasks import ReportTables, plot_report_task, report_tables
from inspect_core.reporting import parse_when
from inspect_core.store import ReportFilter


@dataclass
class ReportOutcome:
    """The report's numbers, plus its artifacts' content so a parent flow (the pipeline) can show them too."""

    detections: int
    images_scored: int
    images_with_defects: int
    per_class: dict[str, int] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    class_rows: list[dict[str, object]] = field(default_factory=list)
    markdown: str = ""


def report_filter(
    since: str | None = None, until: str | None = None, line: str | None = None, camera: str | None = None,
    class_name: str | None = None, model: str | None = None, min_confidence: float | None = None,
) -> ReportFilter:  # fmt: skip
    """A filter from the flow's text parameters (times as ISO or spans back from now: 24h, 7d)."""
    return ReportFilter(
        since=parse_when(since) if since else None, until=parse_when(until) if until else None, line=line, camera=camera,
        class_name=class_name, model=model, min_confidence=min_confidence,
    )  # fmt: skip


def class_rows(tables: ReportTables) -> list[dict[str, object]]:
    rows = [
        {"class": row.class_name, "defects": int(row.detections), "mean confidence": round(float(row.mean_confidence), 3),
         "max confidence": round(float(row.max_confidence), 3)}
        for row in tables.per_class.itertuples()
    ]  # fmt: skip
    return rows or [{"class": "(none found)", "defects": 0, "mean confidence": None, "max confidence": None}]


def _describe(flt: ReportFilter) -> str:
    parts = [f"{name} {value.isoformat(timespec='minutes') if isinstance(value, datetime) else value}"
             for name, value in vars(flt).items() if value is not None]  # fmt: skip
    return ", ".join(parts) or "everything in the store"


def report_markdown(flt: ReportFilter, tables: ReportTables, plots: list[str]) -> str:
    """Totals, defect rate per line, the champion with its validation mAP, and links to the plots."""
    lines_table = tables.per_line
    scored, defective = int(lines_table["images_scored"].sum()), int(lines_table["images_with_defects"].sum())
    best = tables.champion
    map50 = best.metrics.get("map50") if best else None
    model = f"{best.name} (registry id {best.version_id}), validation mAP@50 {map50:.3f}" if isinstance(map50, float) else (
        best.name if best else "none promoted yet (scoring uses the shipped tiny model)")  # fmt: skip
    lines = [
        "# Defect report",
        "",
        f"- window: {_describe(flt)}",
        f"- defects: {int(tables.per_class['detections'].sum()) if not tables.per_class.empty else 0}",
        f"- images scored: {scored}, with a defect: {defective}" + (f" ({100 * defective / scored:.1f}%)" if scored else ""),
        f"- champion model: {model}",
        "",
        "| line | images scored | with defects | defect rate |",
        "|---|---|---|---|",
    ]
    lines += [f"| {row.line or '(no line)'} | {row.images_scored} | {row.images_with_defects} | {100 * row.defect_rate:.1f}% |"
              for row in lines_table.itertuples()]  # fmt: skip
    lines += ["", "Plots:", ""] + [f"- [{Path(p).name}]({Path(p).resolve().as_uri()})" for p in plots]
    return "\n".join(lines) + "\n"


def png_data_url(path: str) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


@flow(name="report")
def report(
    config: str = DEFAULT_CONFIG,
    store_url: str | None = None,
    store_secret: str | None = None,
    since: str | None = "24h",
    until: str | None = None,
    line: str | None = None,
    camera: str | None = None,
    class_name: str | None = None,
    model: str | None = None,
    min_confidence: float | None = None,
    out_dir: str = f"{RUN_DIR}/reports",
) -> ReportOutcome:
    """Report the detections captured in [``since``, ``until``) (ISO times or spans back from now: 24h, 7d; empty: no bound).

    ``line``, ``camera``, ``class_name``, ``model`` (a registry name) and ``min_confidence`` narrow it down.
    The store is the recipe's store.url, unless ``store_url``, the Secret block ``store_secret`` or ``$INSPECT_STORE_URL`` replaces it.
    """
    store_url = flow_recipe(config, store_url=store_url, store_secret=store_secret).store.url  # the recipe's, unless overridden
    flt = report_filter(since, until, line, camera, class_name, model, min_confidence)
    tables = report_tables(store_url, flt)
    plots = plot_report_task(store_url, flt, str(Path(out_dir) / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")))
    rows, markdown = class_rows(tables), report_markdown(flt, tables, plots)
    create_table_artifact(rows, key="report-defects-per-class", description=f"defects per class: {_describe(flt)}")
    create_markdown_artifact(markdown, key="report-summary", description=f"defect report: {_describe(flt)}")
    for plot in plots:
        create_image_artifact(png_data_url(plot), key=f"report-{Path(plot).stem.replace('_', '-')}", description=Path(plot).name)
    per_class = {str(row.class_name): int(row.detections) for row in tables.per_class.itertuples()}
    scored, defective = int(tables.per_line["images_scored"].sum()), int(tables.per_line["images_with_defects"].sum())
    return ReportOutcome(sum(per_class.values()), scored, defective, per_class, plots, rows, markdown)
