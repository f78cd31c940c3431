"""The Prefect UI in a real (headless Debian) chromium: deployments with schedules, a quick run of score, its artifacts.

The test starts its own Prefect server on a free port and serves the deployments (``python -m
flows.serve``) against a temporary store holding three sample images. Skipped when chromium
(``apt-get install chromium``) or Python Playwright is missing; the browser is never downloaded.
The screenshots land in the test's tmp_path (printed with ``-s``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inspect_core.folder_ingest import FolderWatcher
from inspect_core.results_store import open_store
from tests.flows.conftest import REPO, copy_samples

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# ~2 min on a busy 2-core machine: a server, the served deployments and a flow-run process all start from cold.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install chromium)")]
playwright_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")
sync_playwright, PlaywrightTimeoutError = playwright_api.sync_playwright, playwright_api.TimeoutError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check: Callable[[], bool], seconds: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {seconds} s:\n{log.read_text()[-3000:]}")


def healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2):
            return True
    except OSError:
        return False


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A background process in its own session, so the whole group (flow-run children too) can be stopped."""
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A Prefect server on a free port serving the deployments over a store with three registered images.

    Yields the UI's URL and the schedules' time zones (deployment name -> zone).
    """
    store_url = f"sqlite:///{tmp_path / 'results.db'}"
    copy_samples(tmp_path / "incoming", 3)
    FolderWatcher(tmp_path / "incoming", open_store(store_url), "cam-1", "line-1", settle_seconds=0).poll_once()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = os.environ | {
        "PREFECT_API_URL": api, "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "INSPECT_STORE_URL": store_url, "INSPECT_TIMEZONE": "Europe/Berlin",
    }  # fmt: skip
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    server = start([sys.executable, "-m", "prefect", "server", "start"], env, server_log)
    serving = None
    try:
        wait_until(lambda: healthy(api), 120, "Prefect server", server, server_log)
        serving = start([sys.executable, "-m", "flows.serve"], env, serve_log)
        wait_until(lambda: "being served" in serve_log.read_text(), 180, "deployments", serving, serve_log)
        yield api.removesuffix("/api"), pause_schedules(api)
    finally:
        for process in (serving, server):
            if process is not None:
                stop(process)


def pause_schedules(api: str) -> dict[str, str]:
    """Keep scheduled runs (every 5 minutes) out of the test, as one could take score's single concurrency slot first.

    Pausing deletes future auto-scheduled runs only: a run whose slot passed while the deployments were being
    registered is deleted if it has not started, and waited for if it has. Returns each scheduled deployment's
    time zone, as the server stored it.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    zones: dict[str, str] = {}
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
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


def quick_run_name(api: str) -> str | None:
    """The name of a run of score/every-5-minutes, if the UI's click created one."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["every-5-minutes"])))
    return runs[0].name if runs else None


def wait_for_final_state(api: str, run_name: str, seconds: float, serve_log: Path) -> None:
    """The quick run (found by its name) ends Completed; otherwise fail with its state, message and the runner's log."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + seconds
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        while True:
            (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])))
            if (run.state and run.state.is_final()) or time.monotonic() > deadline:
                break
            time.sleep(1)
    if not (run.state and run.state.is_completed()):
        state = f"{run.state.name}: {run.state.message}" if run.state else "no state"
        pytest.fail(f"the quick run {run_name} ended {state!r} (or ran past {seconds} s); runner log:\n{serve_log.read_text()[-4000:]}")


def test_ui_shows_scheduled_deployments_and_a_quick_score_run_with_its_artifacts(
    served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    ui, zones = served
    assert zones == dict.fromkeys(["continuous", "every-5-minutes", "nightly", "daily"], "Europe/Berlin")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{ui}/deployments")
            for name in ("continuous", "every-5-minutes", "nightly", "daily", "on-demand"):
                page.get_by_text(name, exact=True).first.wait_for()
            page.get_by_text("At 02:00 AM every day").wait_for()  # train/nightly
            page.get_by_text("At 06:00 AM every day").wait_for()  # report/daily
            page.screenshot(path=tmp_path / "deployments.png", full_page=True)

            page.get_by_text("every-5-minutes", exact=True).click()
            page.get_by_text("Every 5 minutes").first.wait_for()
            announced = page.locator(".toast-flow-run-create__message").first  # "<run name> scheduled to start now"
            run_name = None
            for attempt in range(2):  # once, on a first cold start, the server answered the create with an error toast
                page.get_by_role("button", name="Run", exact=True).click()
                page.get_by_text("Quick run").click()
                try:
                    announced.wait_for(timeout=20_000)
                    run_name = announced.inner_text().split()[0]
                    break
                except PlaywrightTimeoutError:
                    run_name = quick_run_name(f"{ui}/api")  # created, though its toast never came: a second would be cancelled
                    if run_name or attempt:
                        break
                    page.reload()
            assert run_name, "no quick run of score was created from the UI"
            page.get_by_role("link", name=run_name, exact=True).first.click()  # the run in the deployment's run list
            page.wait_for_url(re.compile(r"/runs/flow-run/"))
            wait_for_final_state(f"{ui}/api", run_name, 240, tmp_path / "serve.log")
            page.reload()
            page.get_by_text("Completed", exact=True).first.wait_for()
            page.get_by_text("Artifacts", exact=True).first.click()
            for key in ("scoring-progress", "defects-per-class", "scoring-summary"):
                page.get_by_text(key, exact=True).first.wait_for()
            page.screenshot(path=tmp_path / "score-run-artifacts.png", full_page=True)
            page.get_by_text("scoring-summary", exact=True).first.click()
            page.get_by_text("Scoring with").first.wait_for()
            assert page.get_by_text(re.compile(r"^3$")).count() >= 1  # three images scored
            page.screenshot(path=tmp_path / "scoring-summary.png", full_page=True)
        except Exception:
            page.screenshot(path=tmp_path / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
    print(f"screenshots: {tmp_path}")
