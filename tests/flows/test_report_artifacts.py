"""The report flow's markdown artifact, without a Prefect server: its charts inline as data-URI <img> blocks, no file:// link,
no overflowing line, and the self-contained page written beside the plots.

What the Prefect 3.8 UI does with it was read from its bundle (``prefect/server/ui/assets``): a markdown
artifact goes through ``PMarkdownRenderer``, whose ``html`` tokens pass through DOMPurify (``PSanitizeHtml``:
``style`` is stripped, ``src`` data URIs and ``width`` kept); an image artifact prints its URL under
the picture as a link, which is what overflowed. An HTML block must start a line after a blank one.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from flows.report import CHART_WIDTH, html_report_task, report_filter, report_markdown
from flows.tasks import plot_report_task, report_tables
from inspect_core.store import ReportFilter
from inspect_core.store.plant_clock import plant_clock
from tests.store.seeded import seed_store

IMG_LINE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="[^"<>]*" title="[^"<>]*" width="(\d+)">')
LONGEST = 200


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[str, Path]:
    store = seed_store(f"sqlite:///{tmp_path / 'results.db'}", tmp_path)
    flt = ReportFilter()
    folder = tmp_path / "reports" / "20261102T060000Z"
    clock = plant_clock("Asia/Kolkata", [{"name": "A", "start": "06:00"}, {"name": "N", "start": "18:00"}], "shift")
    tables = report_tables.fn(store.url, flt)
    plots = plot_report_task.fn(store.url, flt, str(folder))
    page = html_report_task.fn(store.url, flt, clock, str(folder / "report.html"))
    return report_markdown(flt, tables, plots, page), folder


def test_the_markdown_has_its_charts_inline_and_no_file_link_or_overflowing_line(artifact: tuple[str, Path]) -> None:
    markdown, folder = artifact
    assert "file://" not in markdown and "](/" not in markdown  # nor a markdown link to a server path
    lines = markdown.splitlines()
    charts = [i for i, line in enumerate(lines) if IMG_LINE.fullmatch(line)]
    assert len(charts) == 3
    for i in charts:
        assert lines[i - 1] == "" and (i + 1 == len(lines) or lines[i + 1] == "")  # an HTML block the UI renders, not inline text
        payload, width = IMG_LINE.fullmatch(lines[i]).groups()
        assert base64.b64decode(payload).startswith(b"\x89PNG\r\n\x1a\n") and int(width) == CHART_WIDTH
    too_long = [line[:80] for i, line in enumerate(lines) if len(line) > LONGEST and i not in charts]
    assert too_long == []
    assert "| line-A | 3 | 3 | 100.0% |" in markdown and "| line-B | 4 | 3 | 75.0% |" in markdown  # seeded: both models' scorings
    assert "buckets: shifts A from 06:00, N from 18:00 (Asia/Kolkata)" in markdown
    assert f"`{folder / 'report.html'}`" in markdown


def test_the_page_and_plots_are_written_into_the_run_folder(artifact: tuple[str, Path]) -> None:
    _markdown, folder = artifact
    page = (folder / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "file://" not in page and "Asia/Kolkata" in page
    assert sorted(p.name for p in folder.iterdir()) == ["confidence_histogram.png", "defect_rate_per_line.png", "defects_per_day.png",
                                                        "report.html"]  # fmt: skip


def test_the_flow_filter_reads_spans_and_iso_times() -> None:
    flt = report_filter(since="2026-11-01T08:00+05:30", line="L2", min_confidence=0.5)
    assert flt.since.isoformat() == "2026-11-01T08:00:00+05:30" and flt.line == "L2" and flt.min_confidence == 0.5
