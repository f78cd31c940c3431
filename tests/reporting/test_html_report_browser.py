"""The HTML report in a real (headless Debian) chromium: charts drawn, thumbnails decoded, tables sort and filter.

Six committed sample frames are scored by the shipped tiny model (64 new tokens, every stored
detection operating: it is unsure of its boxes) on two lines, ``inspect-core report --table-format html``
writes the page, and chromium opens it. The per-line defect rate the page shows is checked against
the store counted with ``sqlite3`` alone. Every request the page makes must be a ``data:`` URI.

The screenshot lands in the test's temporary folder (printed with ``-s``); with
``INSPECT_UPDATE_SCREENSHOTS=1`` it also replaces ``docs/screenshots/report.png`` (the README's).
Skipped when chromium (``apt-get install chromium``) or Python Playwright is missing; the browser is never downloaded.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from inspect_core.cli import main
from inspect_core.config import load_recipe
from inspect_core.pipeline import score

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "sample_data" / "fabric_voc").glob("*.jpg"))[:6]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ZONE = "Europe/Istanbul"

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install chromium)")
sync_playwright = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed").sync_playwright


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store holding six scored sample frames (three on line L1, three on L2) and its HTML report."""
    folder = tmp_path_factory.mktemp("html_report_browser")
    url = f"sqlite:///{folder / 'results.db'}"
    sets = [f"store.url={url}", "score.max_new_tokens=64", "score.batch_size=3", "score.num_workers=0", "score.default_threshold=0.0"]
    recipe = load_recipe(REPO / "configs" / "demo.yaml", sets)
    scored = [score(recipe, SAMPLES[:3], camera="cam-1", line="L1"), score(recipe, SAMPLES[3:], camera="cam-2", line="L2")]
    assert sum(s.detections for s in scored) > 0, "the tiny model found nothing: the thumbnails would not be tested"
    page = folder / "report.html"
    argv = ["report", "--db", url, "--table-format", "html", "--out", str(page), "--set", f"report.timezone={ZONE}", "--top", "4"]
    assert main(argv) == 0
    return page, url


def line_rates_by_sqlite(url: str) -> dict[str, str]:
    """Per line, the share of scored frames with an operating detection, as the page prints it; counted without the store's code."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        rows = connection.execute(
            "SELECT c.line, count(*), sum(EXISTS (SELECT 1 FROM detections d WHERE d.image_id = s.image_id "
            "AND d.model_version_id = s.model_version_id AND d.operating)) FROM image_scores s JOIN sources c ON c.id = s.source_id "
            "GROUP BY c.line"
        ).fetchall()
    return {line: f"{100 * defective / scored:.1f}%" for line, scored, defective in rows}


def column(page, table: str, index: int, visible_only: bool = False) -> list[str]:
    rows = f"#{table} tbody tr" + (":not([hidden])" if visible_only else "")
    return page.eval_on_selector_all(rows, f"rows => rows.map(r => r.cells[{index}].textContent.trim())")


def test_the_report_renders_sorts_and_filters_in_chromium(report_page: tuple[Path, str], tmp_path: Path) -> None:
    path, url = report_page
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.set_default_timeout(20_000)
        page.on("request", lambda request: requests.append(request.url))
        try:
            page.goto(path.as_uri())
            page.wait_for_load_state("load")

            charts = page.locator("img.chart")
            assert charts.count() == 3
            for i in range(3):
                box = charts.nth(i).bounding_box()
                assert charts.nth(i).evaluate("img => img.complete && img.naturalWidth") > 0 and box["width"] > 300 and box["height"] > 100
            thumbs = page.locator("img.thumb")
            assert 1 <= thumbs.count() <= 4
            for i in range(thumbs.count()):
                assert thumbs.nth(i).evaluate("img => img.complete && img.naturalWidth") > 0 and thumbs.nth(i).bounding_box()["width"] > 100

            cells = "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))"
            shown = {row[0]: row[3] for row in page.eval_on_selector_all("#per-line tbody tr", cells)}
            assert shown == line_rates_by_sqlite(url) and set(shown) == {"L1", "L2"}
            assert f"captured ({ZONE})" in page.locator("#detections thead").inner_text()

            confidence = page.locator("#detections thead th", has_text="confidence")
            confidence.click()
            ascending = [float(v) for v in column(page, "detections", 4)]
            assert ascending == sorted(ascending) and confidence.get_attribute("aria-sort") == "ascending"
            confidence.click()
            descending = [float(v) for v in column(page, "detections", 4)]
            assert descending == sorted(ascending, reverse=True)
            page.locator("#detections thead th", has_text="line").click()
            assert column(page, "detections", 1) == sorted(column(page, "detections", 1))

            lines = column(page, "detections", 1)
            page.locator('input[data-table="detections"]').fill("L2")
            visible = column(page, "detections", 1, visible_only=True)
            assert visible == [line for line in lines if line == "L2"] and 0 < len(visible) < len(lines)
            assert page.locator("#detections-count").inner_text() == f"{len(visible)} of {len(lines)} rows"
            page.locator('input[data-table="detections"]').fill("")
            assert len(column(page, "detections", 1, visible_only=True)) == len(lines)

            shot = tmp_path / "report.png"
            page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    assert [r for r in requests if not r.startswith("data:") and r != path.as_uri()] == []
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    if os.environ.get("INSPECT_UPDATE_SCREENSHOTS") == "1":
        target = REPO / "docs" / "screenshots" / "report.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)
