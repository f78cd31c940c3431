"""A results store seeded for the review tests: known frames, runs with known operating thresholds, real image files.

``FRAMES`` and ``RUNS`` are the oracle: the tests compute what the review queue, precision and export must
say from these plain values, never from the code under test.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inspect_core.store import (
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
WIDTH, HEIGHT = 200, 100
LINES = {"cam-1": "line-A", "cam-2": "line-B"}
IMAGES = {  # name: camera, capture time
    "f1": ("cam-1", datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),
    "f2": ("cam-2", datetime(2026, 11, 1, 9, 0, tzinfo=UTC)),
    "f3": ("cam-1", datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),
    "f4": ("cam-2", datetime(2026, 11, 1, 11, 0, tzinfo=UTC)),
    "f5": ("cam-1", datetime(2026, 11, 1, 12, 0, tzinfo=UTC)),
    "f6": ("cam-2", datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),
    "f7": ("cam-1", datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
}
A = {"default": 0.5, "classes": {"hole": 0.8}, "store_floor": 0.01, "calibrated": True}
B = {"default": 0.4, "classes": {}, "store_floor": 0.01, "calibrated": False}
# Runs in the order they are started (run ids 1..4): model, thresholds recorded (None: before thresholds were), frames scored.
RUNS = [
    ("m1", A, ["f1", "f2", "f3", "f4"]),
    ("m2", None, ["f1", "f5"]),
    ("m1", B, ["f6"]),
    ("m1", A, ["f7"]),
]
LEGACY = 0.3
DETECTIONS = {  # (image, model): (class, confidence, pixel box); operating = confidence >= its run's threshold
    ("f1", "m1"): [("hole", 0.85, (10, 10, 50, 40)), ("stain", 0.2, (100, 20, 150, 60))],
    ("f2", "m1"): [("stain", 0.7, (20, 30, 60, 70))],
    ("f3", "m1"): [],
    ("f4", "m1"): [("hole", 0.62, (5, 5, 25, 25)), ("knot", 0.95, (120, 40, 180, 90))],
    ("f1", "m2"): [("hole", 0.32, (12, 10, 52, 40))],
    ("f5", "m2"): [("stain", 0.9, (60, 20, 140, 90))],
    ("f6", "m1"): [("stain", 0.46, (30, 30, 90, 80))],
    ("f7", "m1"): [("hole", 0.9, (150, 10, 190, 50))],
}


def threshold(recorded: dict | None, class_name: str) -> float:
    if recorded is None:
        return LEGACY
    return recorded["classes"].get(class_name, recorded["default"])


def run_of(image: str, model: str) -> dict | None:
    return next(t for m, t, frames in RUNS if m == model and image in frames)


def operating(image: str, model: str, class_name: str, confidence: float) -> bool:
    return confidence >= threshold(run_of(image, model), class_name)


@dataclass(frozen=True)
class ReviewStore:
    url: str
    engine: Engine
    frames: Path
    image_ids: dict[str, int]
    model_ids: dict[str, int]
    shas: dict[str, str]

    def detection_ids(self, image: str, model: str) -> dict[tuple[str, float], int]:
        """(class, confidence) -> detection id of a frame, read with plain SQL (independent of the review code)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT id, class_name, confidence FROM detections WHERE image_id = :i AND model_version_id = :m"),
                {"i": self.image_ids[image], "m": self.model_ids[model]},
            ).all()
        return {(name, round(conf, 6)): int(i) for i, name, conf in rows}


def seed_review_store(store_url: str, tmp_path: Path) -> ReviewStore:
    """Two cameras on two lines, models m1 and m2, runs RUNS, detections DETECTIONS, real 200x100 PNGs."""
    engine = open_store(store_url)
    frames = tmp_path / "frames"
    sources = {camera: ensure_source(engine, camera, line) for camera, line in LINES.items()}
    shas = {}
    for name in IMAGES:
        path = write_image(frames / f"{name}.png", width=WIDTH, height=HEIGHT, seed=int(name[1:]))
        shas[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    models = {}
    for name in ("m1", "m2"):
        folder = tmp_path / "models" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"model": name}))
        models[name] = int(register_model(engine, folder, base_model="tiny", name=name).id)
    for model, recorded, images in RUNS:
        run = start_run(engine, models[model], "cfg", images_total=len(images), thresholds=recorded)
        batch = []
        for image in images:
            camera, captured_at = IMAGES[image]
            found = [StoredDetection(c, conf, tuple(float(v) for v in box), operating=operating(image, model, c, conf))
                     for c, conf, box in DETECTIONS[image, model]]  # fmt: skip
            batch.append(ScoredImage(shas[image], str(frames / f"{image}.png"), WIDTH, HEIGHT, captured_at, sources[camera], found))
        assert write_scored_batch(engine, run, models[model], batch) == len(batch)
        finish_run(engine, run, "completed")
    with engine.connect() as connection:
        ids = dict(connection.execute(sa.text("SELECT path, id FROM images")).all())
    image_ids = {name: int(ids[str(frames / f"{name}.png")]) for name in IMAGES}
    return ReviewStore(store_url, engine, frames, image_ids, models, shas)
