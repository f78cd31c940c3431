"""The self-contained HTML report (``inspect_core.reporting.html_report``), read as HTML without a browser.

The seeded store (``tests/store/seeded.py``) is the oracle for the numbers, counted again here with
``sqlite3`` alone; the page is parsed with the standard library's HTML parser. The browser test
(``test_html_report_browser.py``) checks what only a browser can: charts drawn, images decoded,
sorting and filtering.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_core.reporting.html_report import THUMB_WIDTH, build_html_report, local_minute
from inspect_core.store import ReportFilter, ScoredImage, StoredDetection, ensure_source, open_store, write_scored_batch
from inspect_core.store.plant_clock import plant_clock
from tests.store.seeded import Store, model_and_run, seed_store

UTC = timezone.utc


class Page(HTMLParser):
    """Every tag with its attributes, and the text of each table's cells by table id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._table = dict(attrs)["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, table: str) -> list[list[str]]:
        return self.tables[table][1:]  # without the header row


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("html_report")
    return seed_store(f"sqlite:///{root / 'results.db'}", root)


def per_line_by_sqlite(store: Store) -> dict[str, tuple[int, int]]:
    """Scorings and scorings with a detection per line, counted with sqlite3 alone (every seeded detection is operating)."""
    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as connection:
        rows = connection.execute(
            "SELECT c.line, count(*), sum(EXISTS (SELECT 1 FROM detections d WHERE d.image_id = s.image_id "
            "AND d.model_version_id = s.model_version_id)) FROM image_scores s JOIN sources c ON c.id = s.source_id GROUP BY c.line"
        ).fetchall()
    return {line: (scored, defective) for line, scored, defective in rows}


def test_the_page_is_self_contained(store: Store) -> None:
    page = build_html_report(store.engine, ReportFilter(), plant_clock("Europe/Istanbul")).html
    parsed = Page(page)
    assert "file://" not in page and "http://" not in page and "https://" not in page and "url(" not in page
    for tag, attrs in parsed.tags:
        assert tag not in ("link", "iframe", "object", "embed")
        assert tag != "script" or "src" not in attrs
        assert tag != "img" or (attrs["src"] or "").startswith(("data:image/png;base64,", "data:image/jpeg;base64,")), attrs.get("alt")
        assert "href" not in attrs
    charts = [a for t, a in parsed.tags if t == "img" and "chart" in (a.get("class") or "")]
    assert [a["alt"] for a in charts] == ["defect rate per line", "defect rate per class", "confidence histogram"]
    for chart in charts:
        assert base64.b64decode(chart["src"].split(",", 1)[1]).startswith(b"\x89PNG")


def test_headline_and_per_line_numbers_match_an_independent_count(store: Store) -> None:
    report = build_html_report(store.engine, ReportFilter(), plant_clock("Europe/Istanbul"))
    parsed = Page(report.html)
    shown = {row[0]: (int(row[1]), int(row[2]), row[3], int(row[4])) for row in parsed.rows("per-line")}
    counted = per_line_by_sqlite(store)
    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as connection:
        detections = dict(
            connection.execute("SELECT c.line, count(*) FROM detections d JOIN sources c ON c.id = d.source_id GROUP BY c.line")
        )
    assert shown == {line: (n, d, f"{100 * d / n:.1f}%", detections[line]) for line, (n, d) in counted.items()}
    total_scored, total_defective = (sum(v[i] for v in counted.values()) for i in (0, 1))
    assert (report.images_scored, report.images_with_defects, report.detections) == (
        total_scored,
        total_defective,
        sum(detections.values()),
    )
    assert f'<div class="value">{100 * total_defective / total_scored:.1f}%</div><div class="label">defect rate</div>' in report.html


def test_times_are_the_plants_rounded_to_the_minute(store: Store) -> None:
    istanbul = Page(build_html_report(store.engine, ReportFilter(), plant_clock("Europe/Istanbul")).html)
    kolkata = Page(build_html_report(store.engine, ReportFilter(), plant_clock("Asia/Kolkata")).html)
    assert istanbul.tables["detections"][0][0] == "captured (Europe/Istanbul)"
    assert istanbul.rows("detections")[0][0] == "2026-11-02 14:00" and kolkata.rows("detections")[0][0] == "2026-11-02 16:30"  # 11:00 UTC
    clock = plant_clock("Asia/Kolkata")
    assert local_minute(datetime(2026, 11, 2, 11, 0, 29, 999999, tzinfo=UTC), clock) == "2026-11-02 16:30"
    assert local_minute(datetime(2026, 11, 2, 11, 0, 30, tzinfo=UTC), clock) == "2026-11-02 16:31"
    assert local_minute(datetime(2026, 11, 2, 18, 29, 45, tzinfo=UTC), clock) == "2026-11-03 00:00"


def test_thumbnails_show_the_top_frames_with_their_boxes_drawn(store: Store) -> None:
    report = build_html_report(store.engine, ReportFilter(), plant_clock("UTC"), top=3)
    parsed = Page(report.html)
    rows = parsed.rows("top-frames")
    assert [row[6] for row in rows] == ["0.99", "0.95", "0.90"] and rows[0][0] == "file missing"  # "gone" was never written
    assert report.missing_images == [str(store.frames / "gone.png")] and report.frames_shown == 3
    thumbs = [a for t, a in parsed.tags if t == "img" and a.get("class") == "thumb"]
    assert len(thumbs) == 2
    for thumb, name in zip(thumbs, ("d.png", "a.png")):
        drawn = cv2.imdecode(np.frombuffer(base64.b64decode(thumb["src"].split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        plain = cv2.imread(str(store.frames / name), cv2.IMREAD_COLOR)
        assert drawn.shape == plain.shape and drawn.shape[1] <= THUMB_WIDTH  # 200 px frames stay 200 px
        assert np.abs(drawn.astype(int) - plain.astype(int)).mean() > 2  # boxes and labels drawn over the frame


def test_the_detections_table_is_capped_and_says_so(store: Store) -> None:
    report = build_html_report(store.engine, ReportFilter(), plant_clock("UTC"), max_rows=3)
    assert len(Page(report.html).rows("detections")) == 3 and (report.rows_shown, report.rows_total) == (3, 8)
    assert "Showing the newest 3 of 8 matching detections." in report.html
    filtered = build_html_report(store.engine, ReportFilter(class_name="knot"), plant_clock("UTC"))
    assert "Showing all 1 matching detections." in filtered.html and "class knot" in filtered.html


def test_nothing_matching_still_makes_a_page(store: Store) -> None:
    report = build_html_report(store.engine, ReportFilter(since=datetime(2030, 1, 1, tzinfo=UTC)), plant_clock("Europe/Istanbul"))
    parsed = Page(report.html)
    assert (report.images_scored, report.detections, report.frames_shown) == (0, 0, 0)
    assert parsed.rows("detections") == [] and "No detection matches the filter." in report.html
    assert len([a for t, a in parsed.tags if t == "img" and a.get("class") == "chart"]) == 3


def test_text_from_the_store_is_escaped_and_a_big_store_keeps_the_page_small(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    source = ensure_source(engine, "<b>cam</b>", 'line "<script>alert(1)</script>"')
    version, run = model_and_run(engine, tmp_path, "m<i>1", 1500)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rng = np.random.default_rng(1)
    classes = ("<script>x</script>", "hole")
    batch = [ScoredImage(hashlib.sha256(str(i).encode()).hexdigest(), str(tmp_path / f"<img src=x>{i}.png"), 64, 48,
                         start + timedelta(minutes=7 * i), source,
                         [StoredDetection(name, float(rng.uniform(0.3, 1)), (1.0, 1.0, 20.0, 20.0)) for name in classes])
             for i in range(1500)]  # fmt: skip
    assert write_scored_batch(engine, run, version, batch) == 1500
    report = build_html_report(engine, ReportFilter(), plant_clock("Asia/Kolkata", [{"name": "A", "start": "06:00"}], "shift"))
    assert report.html.count("<script>") == 1 and "<b>cam</b>" not in report.html and "&lt;b&gt;cam&lt;/b&gt;" in report.html
    assert "<img src=x>" not in report.html and "&lt;script&gt;x&lt;/script&gt;" in report.html
    assert report.rows_shown == 500 and "Showing the newest 500 of 3,000 matching detections." in report.html
    assert len(report.html) < 600_000, len(report.html)  # 3000 detections, 1500 frames: 500 rows, 3 charts, no thumbnails (no files)
