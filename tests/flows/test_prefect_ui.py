"""The Prefect UI in a real (headless Debian) chromium: deployments with schedules, quick runs of score and pipeline.

The module starts one Prefect server on a free port and serves the deployments (``python -m
flows.serve``) against a temporary store holding three sample images. Each test triggers a quick run
from the UI, follows it to Completed and reads its artifacts on the run's page. Skipped when chromium
(``apt-get install chromium``) or Python Playwright is missing; the browser is never downloaded.
The screenshots land in the server's temporary folder (printed with ``-s``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from inspect_core.ingest.folder import FolderWatcher
from inspect_core.store import open_store
from tests.flows.conftest import SAMPLE, copy_samples
from tests.flows.servers import free_port, healthy, start, stop

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.schemas.objects import FlowRun

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# ~2 min on a busy 2-core machine: a server, the served deployments and flow-run processes all start from cold.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install chromium)")]
playwright_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")
sync_playwright, PlaywrightTimeoutError = playwright_api.sync_playwright, playwright_api.TimeoutError


def wait_until(check: Callable[[], bool], seconds: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {seconds} s:\n{log.read_text()[-3000:]}")


@dataclass(frozen=True)
class Served:
    ui: str
    api: str
    zones: dict[str, str]  # scheduled deployment name -> the time zone the server stored
    folder: Path  # logs, stores and screenshots


def prefect_client(api: str):
    """A synchronous Prefect client bound to ``api`` (the setting is read when the client is made)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        return get_client(sync_client=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A Prefect server on a free port serving the deployments over a store with three registered images."""
    folder = tmp_path_factory.mktemp("prefect-ui")
    store_url = f"sqlite:///{folder / 'results.db'}"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = os.environ | {
        "PREFECT_API_URL": api, "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_HOME": str(folder / "prefect-home"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{folder / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "INSPECT_STORE_URL": store_url, "INSPECT_TIMEZONE": "Europe/Berlin",
    }  # fmt: skip
    server_log, serve_log = folder / "server.log", folder / "serve.log"
    server = start([sys.executable, "-m", "prefect", "server", "start"], env, server_log)
    serving = None
    try:
        wait_until(lambda: healthy(api), 120, "Prefect server", server, server_log)
        serving = start([sys.executable, "-m", "flows.serve"], env, serve_log)
        wait_until(lambda: "being served" in serve_log.read_text(), 180, "deployments", serving, serve_log)
        zones = pause_schedules(api)
        # Registered only now: a scheduled score run whose 5-minute slot comes while the deployments are being
        # registered would otherwise score the three images before the quick run (a CI run on 2026-12-04 found
        # them already scored, its quick run created 11 s after the 10:05:00 slot).
        copy_samples(folder / "incoming", 3)
        FolderWatcher(folder / "incoming", open_store(store_url), "cam-1", "line-1", settle_seconds=0).poll_once()
        yield Served(api.removesuffix("/api"), api, zones, folder)
    finally:
        for process in (serving, server):
            if process is not None:
                stop(process)
    print(f"screenshots: {folder}")


def pause_schedules(api: str) -> dict[str, str]:
    """Keep scheduled runs (every 5 minutes) out of the tests, as one could take score's single concurrency slot first.

    Pausing deletes future auto-scheduled runs only: a run whose slot passed while the deployments were being
    registered is deleted if it has not started, and waited for if it has. Returns each scheduled deployment's
    time zone, as the server stored it.
    """
    zones: dict[str, str] = {}
    with prefect_client(api) as client:
        for deployment in client.read_deployments():
            client.pause_deployment(deployment.id)
            for schedule in deployment.schedules:
                zones[deployment.name] = schedule.schedule.timezone
        deadline = time.monotonic() + 120
        while unfinished := [run for run in client.read_flow_runs() if not run.state or not run.state.is_final()]:
            for run in unfinished:
                if run.state and run.state.is_scheduled():
                    client.delete_flow_run(run.id)
            assert time.monotonic() < deadline, f"runs started before the pause still unfinished: {[r.name for r in unfinished]}"
            time.sleep(1)
    return zones


def quick_run(page, served: Served, deployment: str, seconds: float = 240) -> None:
    """Run > Quick run on ``deployment`` ("flow/name") from its UI page, then open the run's page once it ended Completed.

    A run that ends otherwise (or runs past ``seconds``) fails the test with its state, message and the runner's log.
    """
    with prefect_client(served.api) as client:
        deployment_id = client.read_deployment_by_name(deployment).id
    page.goto(f"{served.ui}/deployments/deployment/{deployment_id}")
    toast = page.locator(".toast-flow-run-create__message").first  # "<run name> scheduled to start now"
    announced = None
    for attempt in range(2):  # once, on a first cold start, the server answered the create with an error toast
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Quick run").click()
        try:
            toast.wait_for(timeout=20_000)
            announced = toast.inner_text()
            break
        except PlaywrightTimeoutError:
            if newest_run(served, deployment_id) or attempt:  # created, though its toast never came: a second would be cancelled
                break
            page.reload()
    run = newest_run(served, deployment_id)
    assert run is not None, f"no quick run of {deployment} was created from the UI"
    assert announced is None or run.name in announced
    deadline = time.monotonic() + seconds
    with prefect_client(served.api) as client:
        while not (run.state and run.state.is_final()) and time.monotonic() < deadline:
            time.sleep(1)
            run = client.read_flow_run(run.id)
    if not (run.state and run.state.is_completed()):
        state = f"{run.state.name}: {run.state.message}" if run.state else "no state"
        log = (served.folder / "serve.log").read_text()[-4000:]
        pytest.fail(f"the quick run {run.name} of {deployment} ended {state!r} (or ran past {seconds} s); runner log:\n{log}")
    page.goto(f"{served.ui}/runs/flow-run/{run.id}")
    page.get_by_text(run.name, exact=True).first.wait_for()
    page.get_by_text("Completed", exact=True).first.wait_for()


def newest_run(served: Served, deployment_id: UUID) -> FlowRun | None:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with prefect_client(served.api) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    return runs[0] if runs else None


@pytest.fixture
def page(served: Served, request: pytest.FixtureRequest) -> Iterator:
    """A headless chromium page; its last view is saved as ``<test>-last.png`` beside the server's logs, pass or fail."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            page.screenshot(path=served.folder / f"{request.node.name}-last.png", full_page=True)
            browser.close()


def open_artifacts(page, keys: tuple[str, ...]) -> None:
    page.get_by_text("Artifacts", exact=True).first.click()
    for key in keys:
        page.get_by_text(key, exact=True).first.wait_for()


def test_ui_lists_the_deployments_with_their_schedules_in_the_plant_time_zone(served: Served, page) -> None:
    assert served.zones == dict.fromkeys(["continuous", "every-5-minutes", "nightly", "daily"], "Europe/Berlin")
    page.goto(f"{served.ui}/deployments")
    for name in ("continuous", "every-5-minutes", "nightly", "daily", "on-demand"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text("At 02:00 AM every day").wait_for()  # train/nightly
    page.get_by_text("At 06:00 AM every day").wait_for()  # report/daily
    page.screenshot(path=served.folder / "deployments.png", full_page=True)
    page.get_by_text("every-5-minutes", exact=True).click()
    page.get_by_text("Every 5 minutes").first.wait_for()


def test_a_quick_run_of_score_from_the_ui_completes_with_its_artifacts(served: Served, page) -> None:
    """Runs before the pipeline test, which then finds the three registered images as duplicates."""
    quick_run(page, served, "score/every-5-minutes")
    open_artifacts(page, ("scoring-progress", "defects-per-class", "scoring-summary"))
    page.screenshot(path=served.folder / "score-run-artifacts.png", full_page=True)
    page.get_by_text("scoring-summary", exact=True).first.click()
    page.get_by_text("Scoring with").first.wait_for()
    assert page.get_by_text(re.compile(r"^3$")).count() >= 1  # the three registered images scored
    page.screenshot(path=served.folder / "scoring-summary.png", full_page=True)


def test_a_quick_run_of_the_pipeline_ingests_the_sample_folder_scores_it_and_reports(served: Served, page) -> None:
    quick_run(page, served, "pipeline/on-demand")
    open_artifacts(page, ("pipeline-defects-per-class", "pipeline-summary"))
    page.get_by_text("pipeline-summary", exact=True).first.click()
    page.get_by_text("Pipeline", exact=True).first.wait_for()
    samples = len(list(SAMPLE.glob("*.jpg")))
    ingest = page.get_by_text(re.compile(r"ingest.*registered")).first.inner_text()
    registered, duplicates = (int(n) for n in re.findall(r"(\d+) (?:registered|duplicate)", ingest))
    assert registered + duplicates == samples  # every sample image is in the store, once (the three already there are duplicates)
    page.get_by_text(re.compile(r"\d+ defect\(s\) on \d+ of \d+ scored image")).first.wait_for()
    page.screenshot(path=served.folder / "pipeline-summary.png", full_page=True)
    # The figure a plant manager reads first: the defect rate of the recipe's line (cam-1 on line-1), never "(no line)".
    line, scored, defective, rate = page.get_by_role("row").filter(has_text="line-1").first.inner_text().split()
    assert page.get_by_text("(no line)").count() == 0
    # The store, counted on its own: frames scored on line-1, and frames with at least one detection at or above the
    # operating threshold (what the report calls defective; the detections below it are stored for thresholds after the fact).
    with sa.create_engine(f"sqlite:///{served.folder / 'results.db'}").connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT (SELECT count(*) FROM image_scores s JOIN sources c ON c.id = s.source_id WHERE c.line = 'line-1'),"
            " (SELECT count(DISTINCT d.image_id) FROM detections d JOIN sources c ON c.id = d.source_id"
            "  WHERE c.line = 'line-1' AND d.operating)"
        ).one()
    assert (line, int(scored), int(defective)) == ("line-1", samples, stored[1]) and stored[0] == samples
    assert rate == f"{100 * stored[1] / samples:.1f}%"
    # The report's charts render inline (data-URI <img> blocks the UI's sanitizer keeps); no file:// link, nothing wider than the page.
    charts = page.locator("img[src^='data:image/png;base64,']")
    assert charts.count() == 3
    for i in range(charts.count()):
        assert charts.nth(i).evaluate("img => img.complete && img.naturalWidth") > 0 and charts.nth(i).bounding_box()["width"] > 200
    assert "file://" not in page.content()
    assert page.evaluate("document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth") <= 1
