"""The running app for the browser tests: ``inspect-core app`` started once per session over a store the tiny model filled."""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.app.stores import ScoredStore, scored_store
from tests.flows.servers import free_port, start, stop

STARTUP_SECONDS = 180  # torch, transformers and gradio imports on a busy 2-core machine: ~25 s measured, 7x margin


@dataclass(frozen=True)
class ServedApp:
    url: str
    store: ScoredStore
    folder: Path
    log: Path

    @property
    def labelled(self) -> Path:
        return self.folder / "labelled"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """The command line's app on a free port over eight sample frames scored on two lines (L1, L2)."""
    import time

    folder = tmp_path_factory.mktemp("app")
    store = scored_store(folder)
    port = free_port()
    log = folder / "app.log"
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("INSPECT_APP_USER", None)
    env.pop("INSPECT_APP_PASSWORD", None)
    command = [str(Path(sys.executable).parent / "inspect-core"), "app", "--db", store.url, "--config", str(store.recipe),
               "--port", str(port), "--labelled-root", str(folder / "labelled")]  # fmt: skip
    process = start(command, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answers(url + "/"):
            if process.poll() is not None:
                pytest.fail(f"inspect-core app exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"inspect-core app not answering after {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield ServedApp(url, store, folder, log)
    finally:
        stop(process)
