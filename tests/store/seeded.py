"""A results store seeded with known detections: the independent oracle of the report tests (store and reporting)."""


import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import Engine

from inspect_core.store import (
    ReportFilter,
    ScoredImage,
    StoredDetection,
    ensure_source,
    finish_run,
    open_store,
    register_model,
    start_run,
    write_scored_batch,
)
from tests.conftest import write_image

UTC = timezone.utc
LINES = {"cam-1": "line-A", "cam-2": "line-B"}
IMAGES = {  # name: camera, capture time; "gone" is scored but its file is never written
    "a": ("cam-1", datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),
    "b": ("cam-2", datetime(2026, 11, 1, 9, 30, tzinfo=UTC)),
    "c": ("cam-2", datetime(2026, 11, 1, 12, 0, tzinfo=UTC)),
    "d": ("cam-1", datetime(2026, 11, 2, 7, 0, tzinfo=UTC)),
    "e": ("cam-2", datetime(2026, 11, 2, 10, 0, tzinfo=UTC)),
    "gone": ("cam-2", datetime(2026, 11, 2, 11, 0, tzinfo=UTC)),
}
SCORES = {  # (image, model version): detections as (class, confidence, pixel box on a 200x100 image)
    ("a", "fabric-v1"): [("hole", 0.9, (10, 10, 50, 40)), ("stain", 0.4, (100, 20, 150, 60))],
    ("b", "fabric-v1"): [("hole", 0.7, (20, 30, 60, 70))],
    ("c", "fabric-v1"): [],
    ("a", "fabric-v2"): [("hole", 0.8, (12, 10, 52, 40))],
    ("d", "fabric-v2"): [("knot", 0.95, (30, 30, 90, 80)), ("hole", 0.55, (120, 10, 160, 50))],
    ("e", "fabric-v2"): [("stain", 0.85, (60, 20, 140, 90))],
    ("gone", "fabric-v2"): [("hole", 0.99, (5, 5, 40, 40))],
}
INJECTION = "x' OR '1'='1"


@dataclass(frozen=True)
class Row:
    image: str
    model: str
    class_name: str
    confidence: float

    @property
    def camera(self) -> str:
        return IMAGES[self.image][0]

    @property
    def captured_at(self) -> datetime:
        return IMAGES[self.image][1]


ALL_ROWS = [Row(image, model, cls, conf) for (image, model), found in SCORES.items() for cls, conf, _box in found]


def expected(flt: ReportFilter) -> list[Row]:
    """The filter applied in plain Python: what the SQL must return."""
    return [
        r
        for r in ALL_ROWS
        if (flt.since is None or r.captured_at >= flt.since)
        and (flt.until is None or r.captured_at < flt.until)
        and (flt.camera is None or r.camera == flt.camera)
        and (flt.line is None or LINES[r.camera] == flt.line)
        and (flt.class_name is None or r.class_name == flt.class_name)
        and (flt.model is None or r.model == flt.model)
        and (flt.min_confidence is None or r.confidence >= flt.min_confidence)
    ]


@dataclass(frozen=True)
class Store:
    url: str
    engine: Engine
    frames: Path


def model_and_run(engine: Engine, root: Path, name: str, images: int) -> tuple[int, int]:
    """A registered model version called ``name`` and a scoring run of it."""
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model": name}))
    version = register_model(engine, folder, base_model="tiny", name=name).id
    return version, start_run(engine, version, "cfg", images_total=images)


def seed_store(store_url: str, tmp_path: Path) -> Store:
    """A store with two cameras on two lines, two model versions and the detections of SCORES."""
    engine = open_store(store_url)
    frames = tmp_path / "frames"
    sources = {camera: ensure_source(engine, camera, line) for camera, line in LINES.items()}
    for name in ("a", "b", "c", "d", "e"):
        write_image(frames / f"{name}.png", width=200, height=100, seed=ord(name))
    for model in ("fabric-v1", "fabric-v2"):
        version, run = model_and_run(engine, tmp_path, model, images=4)
        batch = []
        for (image, scored_by), found in SCORES.items():
            camera, captured_at = IMAGES[image]
            detections = [StoredDetection(cls, conf, tuple(float(v) for v in box)) for cls, conf, box in found]
            sha = hashlib.sha256(image.encode()).hexdigest()
            if scored_by == model:
                batch.append(ScoredImage(sha, str(frames / f"{image}.png"), 200, 100, captured_at, sources[camera], detections))
        assert write_scored_batch(engine, run, version, batch) == len(batch)
        finish_run(engine, run, "completed")
    return Store(store_url, engine, frames)


