"""Shared test helpers: small labelled images written on the fly, and the real fabric samples."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import settings

# CI replays the same generated inputs every run (a red build is reproducible, never a lucky draw); a
# developer's run explores new ones, and hypothesis keeps any failure it finds in .hypothesis/ to replay.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REAL_FABRIC = Path(__file__).resolve().parents[1].parent / "shared" / "real_fabric"


def write_image(path: Path, width: int = 64, height: int = 48, seed: int = 0, rects: list[tuple[int, int, int, int]] = ()) -> Path:
    """A noisy grey image (unique per seed) with bright rectangles drawn at the given pixel boxes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in rects:
        pixels[y1:y2, x1:x2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    assert cv2.imwrite(str(path), pixels, params)
    return path


@pytest.fixture
def real_fabric() -> Path:
    if not REAL_FABRIC.is_dir():
        pytest.skip("../shared/real_fabric is not present on this machine")
    return REAL_FABRIC


@pytest.fixture(scope="session")
def random_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Florence-2 saved as a model folder (built once per session)."""
    from inspect_core.model.tiny_florence import build_tiny, save_pretrained
    from inspect_core.training.pretrain import vocabulary_corpus

    out = tmp_path_factory.mktemp("random_tiny")
    model, processor = build_tiny(vocabulary_corpus(0, 100))
    save_pretrained(model, processor, out)
    return out


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built Florence JSONL dataset of 10 synthetic 256 px images (6 train, 2 valid, 2 test)."""
    from inspect_core.config import AugmentSection, DatasetSection, SplitRatios
    from inspect_core.data.dataset_builder import build_dataset
    from inspect_core.data.importers import import_dataset
    from inspect_core.data.synthetic_fabric import write_voc_dataset

    root = tmp_path_factory.mktemp("small_dataset")
    write_voc_dataset(root / "source", count=10, seed=5, size=256)
    ratios = SplitRatios(train=0.6, valid=0.2, test=0.2)
    build_dataset(import_dataset(root / "source"), root / "built", DatasetSection(splits=ratios), AugmentSection())
    return root / "built"


POSTGRES_ADMIN_URL = os.environ.get("INSPECT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty results-store URL: a SQLite file, and a throw-away PostgreSQL database.

    The PostgreSQL case skips when no server answers at 127.0.0.1:5432 (override the admin URL with
    ``INSPECT_TEST_POSTGRES``).
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'results.db'}"
        return
    yield from _throwaway_postgres_database()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _throwaway_postgres_database()


def _throwaway_postgres_database() -> Iterator[str]:
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"inspect_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        admin.dispose()
        pytest.skip(f"no PostgreSQL server for the store tests ({POSTGRES_ADMIN_URL}): {error.orig}")
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
