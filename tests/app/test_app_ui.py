"""The app in a real (headless Debian) chromium: Try a frame, the Dashboard's per-line chart, the frames behind a bar.

One ``inspect-core app`` process for the session (``served_app``: eight sample frames scored by the tiny model
on lines L1 and L2). Figures on the page are checked against the store read on its own (SQL) and against
``inspect-core report --json``. Screenshots of each page go to docs/screenshots/ for the README. Skipped
when chromium (``apt-get install chromium``) or Python Playwright is missing; the browser is never downloaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspect_app.try_page import TABLE_COLUMNS
from inspect_core.cli import main
from inspect_core.inference.predict import load_image, load_predictor
from tests.app.conftest import ServedApp
from tests.flows.conftest import REPO, SAMPLE

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = REPO / "docs" / "screenshots"
CLASS_COLUMNS = ["class", "detections", "mean_confidence", "max_confidence"]

# ~1.5 min on a busy 2-core machine: scoring the store, starting the app (torch, gradio), the model's first load.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install chromium)")]
playwright_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")
sync_playwright = playwright_api.sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, served_app: ServedApp, request: pytest.FixtureRequest) -> Iterator:
    """A fresh page on the app; its last view is saved as ``<test>-last.png`` beside the app's log, pass or fail."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(served_app.url)
    try:
        yield page
    finally:
        page.screenshot(path=served_app.folder / f"{request.node.name}-last.png", full_page=True)
        context.close()


def table_rows(page, selector: str, headers: list[str]) -> list[list[str]]:
    """A Gradio Dataframe's body as rows of cell text: what follows its header cells, ``len(headers)`` cells a row."""
    cells = [c.strip() for c in page.locator(selector).inner_text().split("\n") if c.strip()]
    start = next(i for i in range(len(cells)) if cells[i : i + len(headers)] == headers) + len(headers)
    body = cells[start:]
    return [body[i : i + len(headers)] for i in range(0, len(body) - len(body) % len(headers), len(headers))]


def detect(page, expected_summary: str) -> None:
    page.locator("#try-run").click()
    page.get_by_text(expected_summary).first.wait_for()


def pick(page, label: str) -> None:
    page.locator("#try-pick input").click()
    page.get_by_role("option", name=label, exact=True).click()


def test_try_a_sample_frame_shows_its_boxes_and_detections_table(page, served_app: ServedApp) -> None:
    pick(page, "sample fabric_00000.jpg")
    detect(page, "fabric_00000.jpg: 384x384")
    summary = page.locator("#try-summary").inner_text()
    shown = table_rows(page, "#try-table", TABLE_COLUMNS)
    # the engine itself, with the recipe the app runs with (every box kept: default_threshold 0)
    expected = load_predictor("tiny", settings=served_app.store.config.score).predict([load_image(SAMPLE / "fabric_00000.jpg")], "od")[0]
    assert len(expected.detections) > 0
    assert f"{len(expected.detections)} box(es) at operating thresholds" in summary
    assert [(row[0], float(row[1])) for row in shown] == [(d.label, round(d.score, 3)) for d in expected.detections]
    drawn = page.locator("#try-image img").first
    drawn.wait_for()
    assert "/gradio_api/file=" in drawn.get_attribute("src")  # a picture the app rendered, from its private folder
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "try.png", full_page=True)


def test_grounding_with_a_phrase_returns_boxes(page) -> None:
    pick(page, "sample fabric_00000.jpg")
    page.locator("#try-task").get_by_label("<CAPTION_TO_PHRASE_GROUNDING>").check()
    page.locator("#try-phrase").locator("textarea, input").first.fill("a hole")
    detect(page, "fabric_00000.jpg: 384x384")
    assert len(table_rows(page, "#try-table", TABLE_COLUMNS)) > 0
    assert page.locator("#try-caption").locator("textarea, input").first.input_value().strip()


def test_an_upload_that_is_not_an_image_is_a_message_and_the_app_goes_on(page, served_app: ServedApp) -> None:
    fake = served_app.folder / "notes.png"
    fake.write_text("shift notes, not a picture")
    page.locator("#try-upload input[type=file]").set_input_files(str(fake))
    page.locator("#try-upload").get_by_text("notes.png").wait_for()
    page.locator("#try-run").click()
    page.get_by_text("upload notes.png: cannot decode image notes.png: not an image file").first.wait_for()
    page.locator("#try-upload button[aria-label='Clear']").first.click()
    pick(page, "sample fabric_00001.jpg")
    detect(page, "fabric_00001.jpg: 384x384")  # the same server answers the next frame


def _line_rates_in_sql(url: str) -> dict[str, tuple[int, int]]:
    """Per line: scored frames and frames with an operating defect, counted straight from the tables."""
    with sa.create_engine(url).connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT s.line, count(*), sum(EXISTS (SELECT 1 FROM detections d WHERE d.image_id = i.image_id "
            "AND d.model_version_id = i.model_version_id AND d.operating)) "
            "FROM image_scores i JOIN sources s ON s.id = i.source_id GROUP BY s.line"
        ).all()
    return {line: (int(scored), int(defective)) for line, scored, defective in rows}


def open_dashboard(page) -> None:
    page.get_by_role("tab", name="Dashboard").click()
    page.locator("#dash-per-line svg [role='graphics-symbol'][aria-label^='line: ']").first.wait_for()


def test_dashboard_per_line_chart_shows_the_stores_lines_and_rates(page, served_app: ServedApp, capsys: pytest.CaptureFixture) -> None:
    open_dashboard(page)
    bars = page.locator("#dash-per-line svg [role='graphics-symbol'][aria-label^='line: ']")
    shown = {}
    for i in range(bars.count()):
        fields = dict(part.split(": ", 1) for part in bars.nth(i).get_attribute("aria-label").split("; "))
        shown[fields["line"]] = (int(fields["images_scored"]), int(fields["images_with_defects"]), fields["defect_rate"])
    stored = _line_rates_in_sql(served_app.store.url)
    assert set(shown) == set(stored) == {"L1", "L2"}
    for line, (scored, defective) in stored.items():
        assert shown[line] == (scored, defective, f"{round(100 * defective / scored)}%")
    # the per-class table is what `inspect-core report --json` counts
    assert main(["report", "--db", served_app.store.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    classes = {row[0]: int(row[1]) for row in table_rows(page, "#dash-classes-table", CLASS_COLUMNS)}
    assert classes == report["per_class"] and sum(classes.values()) == report["detections"]
    note = page.locator("#dash-note").inner_text()
    total = sum(s for s, _ in stored.values())
    assert re.search(rf"{total} frame\(s\) scored, {sum(d for _, d in stored.values())} with defects", note)
    assert "Europe/Berlin" in note
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "dashboard.png", full_page=True)


def test_choosing_a_bar_lists_the_frames_behind_it(page, served_app: ServedApp) -> None:
    open_dashboard(page)
    bar = page.locator("#dash-per-line svg [role='graphics-symbol'][aria-label^='line: L1;']")
    box = bar.bounding_box()
    y = box["y"] + box["height"] - 5
    page.mouse.move(box["x"] + 3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 3, y, steps=8)  # a brush across the bar: Gradio's select on a chart
    page.mouse.up()
    page.get_by_text("Frames behind line L1").first.wait_for()
    with sa.create_engine(served_app.store.url).connect() as connection:
        names = connection.exec_driver_sql(
            "SELECT DISTINCT m.path FROM detections d JOIN images m ON m.id = d.image_id JOIN sources s ON s.id = d.source_id "
            "WHERE s.line = 'L1' AND d.operating"
        ).scalars().all()  # fmt: skip
    expected = sorted(Path(p).name for p in names)
    assert page.locator("#dash-frames-title").inner_text().startswith(f"Frames behind line L1: {len(expected)}")
    listed = sorted(re.findall(r"fabric_\d+\.jpg", page.locator("#dash-frames-table").inner_text()))
    assert listed == expected
    thumbnails = page.locator("#dash-frames img")
    thumbnails.first.wait_for()
    assert thumbnails.count() == len(expected)
    source = thumbnails.first.get_attribute("src")
    assert "/gradio_api/file=" in source and not any(Path(p).name in source for p in names)  # rendered, not the frame's file
    assert page.request.get(source).status == 200
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "dashboard-frames.png", full_page=True)


# -- Review and Export ----------------------------------------------------------------------------------------------


def _sql(url: str, statement: str, *args) -> list[tuple]:
    with sa.create_engine(url).connect() as connection:
        return [tuple(r) for r in connection.exec_driver_sql(statement, args).all()]


def _busiest_frame(url: str) -> tuple[int, str, list[tuple[int, str]]]:
    """The frame with the most operating detections: its image id, file name and (detection id, class), most confident first."""
    image_id, path = _sql(url, "SELECT d.image_id, i.path FROM detections d JOIN images i ON i.id = d.image_id WHERE d.operating "
                               "GROUP BY d.image_id, i.path ORDER BY count(*) DESC, d.image_id LIMIT 1")[0]  # fmt: skip
    boxes = _sql(url, "SELECT id, class_name FROM detections WHERE image_id = ? AND operating ORDER BY confidence DESC, id", image_id)
    return int(image_id), Path(path).name, [(int(i), c) for i, c in boxes]


def _last_review(url: str) -> tuple:
    return _sql(url, "SELECT reviewer, action, detection_id, class_name, image_id FROM reviews ORDER BY id DESC LIMIT 1")[0]


def _choose_box(page, detection_id: int) -> None:
    page.locator("#review-detections").get_by_text(str(detection_id), exact=True).filter(visible=True).first.click()
    page.locator("#review-chosen").get_by_text(f"box {detection_id}").wait_for()


def _saved(page, what: str) -> None:
    page.locator("#review-status").get_by_text(what).first.wait_for()


def open_review(page, reviewer: str) -> None:
    page.get_by_role("tab", name="Review").click()
    page.locator("#review-reviewer").locator("textarea, input").first.fill(reviewer)
    page.locator("#review-load").click()


def test_review_accept_reject_relabel_draw_and_clean_each_persist(page, served_app: ServedApp) -> None:
    url = served_app.store.url
    image_id, name, boxes = _busiest_frame(url)
    assert len(boxes) >= 3, boxes
    open_review(page, "ana")
    page.locator("#review-queue").get_by_text(name, exact=True).filter(visible=True).first.click()
    page.locator("#review-title").get_by_text(f"{name} ·").wait_for()
    (first, _), (second, _), (third, third_class) = boxes[:3]

    _choose_box(page, first)
    page.locator("#review-accept").click()
    _saved(page, "Saved (1 accept) as version 1 by ana")
    assert _last_review(url) == ("ana", "accept", first, dict(boxes)[first], image_id)

    _choose_box(page, second)
    page.locator("#review-reject").click()
    _saved(page, "as version 2")
    assert _last_review(url) == ("ana", "reject", second, None, image_id)

    new_class = next(c for c in ("hole", "stain", "knot") if c != third_class)
    _choose_box(page, third)
    page.locator("#review-new-class input").click()
    page.get_by_role("option", name=new_class, exact=True).click()
    page.locator("#review-relabel").click()
    _saved(page, "as version 3")
    assert _last_review(url) == ("ana", "relabel", third, new_class, image_id)

    page.locator("#review-annotator button[aria-label='Create box']").click()
    canvas = page.locator("#review-annotator canvas").first.bounding_box()
    x, y = canvas["x"] + canvas["width"] / 2 - 40, canvas["y"] + canvas["height"] * 0.7
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 50, y + 40, steps=6)
    page.mouse.up()
    modal = page.locator("#review-annotator #model-box-edit")
    modal.locator("input[aria-label='Label']").click()
    page.get_by_role("option", name="hole", exact=True).click()
    modal.get_by_role("button", name="OK").click()
    page.locator("#review-save-boxes").click()
    _saved(page, "Saved (1 add) as version 4")
    added = _sql(url, "SELECT class_name, x1, y1, x2, y2 FROM reviews WHERE action = 'add' AND image_id = ?", image_id)
    assert len(added) == 1 and 0 <= added[0][1] < added[0][3] <= 384 and 0 <= added[0][2] < added[0][4] <= 384
    assert added[0][3] - added[0][1] == pytest.approx(50, abs=3)  # the drag, in image pixels (shown at scale 1)

    page.locator("#review-accept-rest").click()
    _saved(page, "as version 5")
    assert "complete" in page.locator("#review-title").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "review.png", full_page=True)

    page.locator("#review-next").click()
    page.locator("#review-title").get_by_text("version 0").wait_for()
    page.locator("#review-clean").click()
    _saved(page, "Saved (1 clean) as version 1 by ana")
    reviewer, action, detection, _class, clean_image = _last_review(url)
    assert (reviewer, action, detection) == ("ana", "clean", None) and clean_image != image_id
    # model detections are never changed by a review
    assert len(_sql(url, "SELECT id FROM detections WHERE image_id = ? AND operating", image_id)) == len(boxes)


def _reviewed_boxes_in_sql(url: str) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    """Per reviewed image file: (class, box) the reviews stand behind, from the tables (each box judged once in this test)."""
    found: dict[str, list] = {}
    frames = _sql(url, "SELECT DISTINCT r.image_id, i.path FROM reviews r JOIN images i ON i.id = r.image_id")
    for image_id, path in frames:
        rows = _sql(url, "SELECT action, class_name, x1, y1, x2, y2 FROM reviews WHERE image_id = ? ORDER BY id", image_id)
        if any(a == "clean" for a, *_ in rows):
            found[Path(path).name] = []
            continue
        found[Path(path).name] = sorted((c, tuple(box)) for a, c, *box in rows if a in ("accept", "relabel", "add"))
    return found


def test_export_writes_the_reviewed_frames_as_a_voc_batch(page, served_app: ServedApp) -> None:
    from inspect_core.data.importers import import_dataset

    expected = _reviewed_boxes_in_sql(served_app.store.url)
    assert len(expected) == 2, "runs after the review test: one reviewed frame, one marked clean"
    page.get_by_role("tab", name="Export").click()
    page.locator("#export-name").locator("textarea, input").first.fill("browser-batch")
    page.locator("#export-check").click()
    page.locator("#export-plan").get_by_text("2 completely reviewed frame(s)").wait_for()
    page.locator("#export-run").click()
    page.locator("#export-result").get_by_text("Wrote 2 frame(s)").wait_for()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "export.png", full_page=True)
    batch = served_app.labelled / "browser-batch"
    imported = import_dataset(batch, "voc")
    got = {re.sub(r"-[0-9a-f]{12}(\.\w+)$", r"\1", Path(i.image_path).name): sorted((o.label, o.box) for o in i.objects)
           for i in imported.images}  # fmt: skip
    assert got == {name: [(c, pytest.approx(b)) for c, b in boxes] for name, boxes in expected.items()}
