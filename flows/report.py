"""The report flow: defects per class, per line and over the plant's days or shifts, as UI artifacts and files.

Each run writes under ``out_dir/<UTC time>/`` the self-contained HTML page (``report.html``, the same
as ``inspect-core report --table-format html``) and the PNG plots. The UI gets a table artifact (defects
per class) and a markdown artifact with the totals, the defect rate per line and the page's charts.

The charts sit in the markdown as ``<img src="data:...">`` tags, each alone on its line: the Prefect 3
UI renders a markdown artifact's HTML blocks (sanitised by DOMPurify, which keeps ``data:`` images and a
``width``), while an image artifact also prints its URL as a link under the picture - a data URI
of 50 000 characters that overflowed the page. Nothing links to ``file://``: the browser refuses
those, and the server's disk is not the reader's. The page's path is printed as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows import DEFAULT_CONFIG, RUN_DIR, flow_recipe
from flows.tasks import ReportTables, plot_report_task, report_tables, store
from inspect_core.reporting import parse_when
from inspect_core.reporting.html_page import data_uri, esc
from inspect_core.reporting.html_report import CHART_TITLES, build_html_report
from inspect_core.store import ReportFilter
from inspect_core.store.plant_clock import PlantClock, clock_from_settings

CHART_WIDTH = 720  # px in the artifact; the PNG is 900 px wide, so it stays sharp and never wider than the page


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
    html: str = ""  # the self-contained page's path


@dataclass
class PageResult:
    path: str
    charts: dict[str, bytes]
    zone: str
    buckets: str


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


def chart_tag(png: bytes, title: str) -> str:
    """One chart as an HTML block the UI's markdown renders: the whole tag on one line, a blank line either side."""
    return f'<img src="{data_uri(png, "image/png")}" alt="{esc(title)}" title="{esc(title)}" width="{CHART_WIDTH}">'


def report_markdown(flt: ReportFilter, tables: ReportTables, plots: list[str], page: PageResult | None = None) -> str:
    """Totals, defect rate per line, the champion with its validation mAP, the page's charts inline, and where the files are."""
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
    ]
    if page is not None:
        lines.append(f"- buckets: {page.buckets}")
    lines += ["", "| line | images scored | with defects | defect rate |", "|---|---|---|---|"]
    lines += [f"| {row.line or '(no line)'} | {row.images_scored} | {row.images_with_defects} | {100 * row.defect_rate:.1f}% |"
              for row in lines_table.itertuples()]  # fmt: skip
    if page is not None:
        for name, png in page.charts.items():
            lines += ["", chart_tag(png, f"{CHART_TITLES[name]} ({page.zone})")]
        lines += ["", f"Full report, one self-contained page with thumbnails and sortable tables: `{page.path}`"]
    if plots:
        lines += ["", f"PNG plots ({', '.join(Path(p).name for p in plots)}) in `{Path(plots[0]).parent}`"]
    return "\n".join(lines) + "\n"


@task(cache_policy=NO_CACHE)
def html_report_task(store_url: str, flt: ReportFilter, clock: PlantClock, path: str) -> PageResult:
    """The self-contained HTML report written to ``path``; its charts come back for the markdown artifact."""
    page = build_html_report(store(store_url), flt, clock)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page.html, encoding="utf-8")
    return PageResult(str(target), page.charts, clock.name, clock.describe())


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
    overrides: list[str] | None = None,
) -> ReportOutcome:
    """Report the detections captured in [``since``, ``until``) (ISO times or spans back from now: 24h, 7d; empty: no bound).

    ``line``, ``camera``, ``class_name``, ``model`` (a registry name) and ``min_confidence`` narrow it down.
    The store is the recipe's store.url, unless ``store_url``, the Secret block ``store_secret`` or ``$INSPECT_STORE_URL`` replaces it;
    the recipe's report: section (timezone, shifts, bucket) sets the page's days or shifts; ``overrides``
    (``report.timezone=Europe/Istanbul``) lay over the recipe as everywhere else.
    """
    recipe = flow_recipe(config, overrides, store_url=store_url, store_secret=store_secret)  # the recipe's store, unless overridden
    store_url, clock = recipe.store.url, clock_from_settings(recipe.report)
    flt = report_filter(since, until, line, camera, class_name, model, min_confidence)
    folder = Path(out_dir) / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tables = report_tables(store_url, flt)
    plots = plot_report_task(store_url, flt, str(folder))
    page = html_report_task(store_url, flt, clock, str(folder / "report.html"))
    rows, markdown = class_rows(tables), report_markdown(flt, tables, plots, page)
    create_table_artifact(rows, key="report-defects-per-class", description=f"defects per class: {_describe(flt)}")
    create_markdown_artifact(markdown, key="report-summary", description=f"defect report: {_describe(flt)}")
    per_class = {str(row.class_name): int(row.detections) for row in tables.per_class.itertuples()}
    scored, defective = int(tables.per_line["images_scored"].sum()), int(tables.per_line["images_with_defects"].sum())
    return ReportOutcome(sum(per_class.values()), scored, defective, per_class, plots, rows, markdown, page.path)
