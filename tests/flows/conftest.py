"""Flow tests share one temporary Prefect server (``prefect_test_harness``) for the whole session: it takes ~10-20 s to start."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_data" / "fabric_voc"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def shared_store_url(tmp_path: Path) -> Iterator[str]:
    """A throw-away PostgreSQL database (what several scoring machines share) when a server answers, else a SQLite file."""
    from tests.conftest import _throwaway_postgres_database

    database = _throwaway_postgres_database()
    try:
        url = next(database)
    except pytest.skip.Exception:
        yield f"sqlite:///{tmp_path / 'results.db'}"
        return
    try:
        yield url
    finally:
        database.close()  # drops the database


def copy_samples(folder: Path, count: int, labels: bool = False) -> list[Path]:
    """The first ``count`` committed sample images (with their VOC XML when ``labels``) copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    images = sorted(SAMPLE.glob("*.jpg"))[:count]
    for image in images:
        shutil.copy(image, folder)
        if labels:
            shutil.copy(image.with_suffix(".xml"), folder)
    return [folder / image.name for image in images]


def fast_recipe(path: Path, **sections: dict) -> Path:
    """The demo recipe made quick for tests: short generations, threshold 0 (the tiny model is unsure), no loader workers."""
    import yaml

    recipe = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    recipe["score"] = {"batch_size": 4, "num_workers": 0, "max_new_tokens": 24, "default_threshold": 0.0}
    for name, values in sections.items():
        recipe[name] = recipe.get(name, {}) | values
    path.write_text(yaml.safe_dump(recipe))
    return path
