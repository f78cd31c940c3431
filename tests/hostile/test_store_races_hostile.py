"""Hostile cases of scorers racing on one results store: two workers of one Prefect pool handed the same images.

The flow's claim on an image is its ``image_scores`` row (unique per image and model version); the race is
forced with a barrier, and the store is then counted with plain SQL: one score row per image, each image's
detections once, the day counts equal to the detections.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspect_core.store import (
    ScoredImage,
    ensure_source,
    open_store,
    register_frames,
    register_model,
    start_run,
    write_scored_batch,
    writes,
)
from tests.store.test_results_store import model_dir, scored


@pytest.mark.injected_fault
def test_two_scorers_of_the_same_images_at_once_store_each_image_once(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers on one pool given overlapping images: both read them as unscored before either commits.

    Forced here: both transactions meet at a barrier after registering, then each holds its transaction
    open for 2 s while writing detections, so the second reads "unscored" before the first commits. The
    losing insert used to raise a UniqueViolation (a FAILED flow run in CI); now it skips what the other took.
    """
    engine = open_store(postgres_url)
    source = ensure_source(engine, "cam-1", "line-A")
    model = register_model(engine, model_dir(tmp_path, "m", "a"), base_model="tiny")
    first, second = [scored(i, source, detections=i % 3) for i in (1, 2, 3, 4)], [scored(i, source, detections=i % 3) for i in (6, 5, 4, 3)]
    register_frames(engine, first + second)  # registered by the ingest, as the flow's images are
    meet = threading.Barrier(2, timeout=30)
    register, insert = writes.register_images, writes.insert_detections

    def registering(*args, **kwargs):
        found = register(*args, **kwargs)
        meet.wait()
        return found

    def slow_insert(*args, **kwargs):
        insert(*args, **kwargs)
        time.sleep(2)

    monkeypatch.setattr(writes, "register_images", registering)
    monkeypatch.setattr(writes, "insert_detections", slow_insert)
    written: dict[str, int | BaseException] = {}

    def score(name: str, batch: list[ScoredImage]) -> None:
        try:
            written[name] = write_scored_batch(engine, start_run(engine, model.id, "cfg", len(batch)), model.id, batch)
        except BaseException as error:  # reported by the assertion below
            written[name] = error

    threads = [threading.Thread(target=score, args=(name, batch)) for name, batch in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(n, int) for n in written.values()), written
    assert sum(written.values()) == 6 and sorted(written.values()) in ([2, 4], [3, 3]), written  # the shared two went to one scorer
    with engine.connect() as connection:
        per_image = dict(connection.execute(sa.text("select image_id, count(*) from image_scores group by image_id")).all())
        detections = connection.execute(sa.text("select count(*) from detections")).scalar_one()
        day_total = connection.execute(sa.text("select sum(n) from detection_day_counts")).scalar_one()
    assert len(per_image) == 6 and set(per_image.values()) == {1}
    assert detections == day_total == sum(i % 3 for i in range(1, 7))  # each image's detections once
