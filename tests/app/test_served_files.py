"""What the running app serves over HTTP: no file by path from the file system, only what it rendered into its private folder.

The app runs in this process over the seeded store (no model is loaded: nothing here asks for a frame).
Gradio's file route (``/gradio_api/file=<path>``) is asked for a system file, a registered frame, a real but
unregistered image, relative and traversing paths: all refused. A file in the app's private folder is
served, so the refusals are about where a file is, not a broken route.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inspect_app.context import SAMPLES, AppContext
from inspect_app.security import prepare_environment
from inspect_app.server import serve
from inspect_core.config import load_recipe
from tests.flows.servers import free_port
from tests.store.seeded import Store, seed_store

GRADIO_VARIABLES = ("GRADIO_ANALYTICS_ENABLED", "GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE", "DO_NOT_TRACK")


@dataclass(frozen=True)
class Running:
    url: str
    uploads: Path
    store: Store


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("served")
    store = seed_store(f"sqlite:///{folder / 'results.db'}", folder)
    saved = {name: os.environ.get(name) for name in GRADIO_VARIABLES}
    uploads = prepare_environment()
    port = free_port()
    blocks = serve(AppContext(store.engine, load_recipe(None, []), samples=SAMPLES), "127.0.0.1", port, block=False, uploads=uploads)
    try:
        yield Running(f"http://127.0.0.1:{port}", uploads, store)
    finally:
        blocks.close()
        shutil.rmtree(uploads, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def file_route(running: Running, path: str | Path) -> str:
    return f"{running.url}/gradio_api/file={path}"


def test_the_app_answers_and_serves_its_own_private_folder(running: Running) -> None:
    assert status(running.url + "/") == 200
    rendered = running.uploads / "rendered.png"
    rendered.write_bytes((SAMPLES / "fabric_00000.jpg").read_bytes())
    assert status(file_route(running, rendered)) == 200


@pytest.mark.parametrize(
    "which", ["system file", "registered frame", "unregistered sample", "relative sample", "traversal", "encoded traversal"]
)
def test_no_path_outside_the_private_folder_is_served(running: Running, which: str) -> None:
    frame = running.store.frames / "a.png"
    assert frame.is_file() and Path("/etc/passwd").is_file()  # each exists: a refusal is not a 'not found'
    path = {
        "system file": "/etc/passwd",
        "registered frame": str(frame),  # in the store, yet never served by path: the app sends rendered pictures
        "unregistered sample": str(SAMPLES / "fabric_00000.jpg"),
        "relative sample": "sample_data/fabric_voc/fabric_00000.jpg",
        "traversal": f"{running.uploads}/../../etc/passwd",
        "encoded traversal": f"{running.uploads}/%2e%2e/%2e%2e/etc/passwd",
    }[which]
    assert status(file_route(running, path)) in (403, 404)
    assert "GRADIO_TEMP_DIR" in os.environ and str(running.uploads) == os.environ["GRADIO_TEMP_DIR"]


def test_a_login_guards_every_route(running: Running) -> None:
    """With credentials configured (any non-local bind requires them) nothing is served before logging in."""
    store = running.store
    port = free_port()
    blocks = serve(AppContext(store.engine, load_recipe(None, []), samples=None), "127.0.0.1", port, [("qe", "long-enough")], block=False,
                   uploads=running.uploads)  # fmt: skip
    try:
        rendered = running.uploads / "rendered.png"
        rendered.write_bytes(b"\x89PNG")
        assert status(f"http://127.0.0.1:{port}/gradio_api/file={rendered}") == 401
        assert status(f"http://127.0.0.1:{port}/config") == 401
        assert status(f"http://127.0.0.1:{port}/") == 200  # the login page
    finally:
        blocks.close()
