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


def force_the_race(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers meet after registering their images, then each holds its transaction 2 s after its
    detections: the second reads the store before the first commits, whichever thread runs first."""
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
    force_the_race(monkeypatch)
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


@pytest.mark.injected_fault
def test_two_rescorings_of_the_same_images_at_once_keep_one_current_scoring(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``score --rescore`` started twice over the same images: the later one supersedes the earlier, nothing doubles.

    Without a lock both moved the first scoring's detections to history (same ids: an IntegrityError), or
    the second left the first's new detections beside its own (the image's defects counted twice).
    """
    engine = open_store(postgres_url)
    source = ensure_source(engine, "cam-1", "line-A")
    model = register_model(engine, model_dir(tmp_path, "m", "a"), base_model="tiny")
    batch = [scored(i, source, detections=2) for i in (1, 2, 3)]
    assert write_scored_batch(engine, start_run(engine, model.id, "cfg", 3), model.id, batch) == 3
    force_the_race(monkeypatch)
    written: dict[int, int | BaseException] = {}
    runs = [start_run(engine, model.id, "cfg", 3) for _ in range(2)]

    def rescore(run: int, detections: int) -> None:
        try:
            written[run] = write_scored_batch(engine, run, model.id, [scored(i, source, detections) for i in (1, 2, 3)], rescore=True)
        except BaseException as error:  # reported by the assertion below
            written[run] = error

    threads = [threading.Thread(target=rescore, args=(run, n)) for run, n in zip(runs, (1, 3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert written == {runs[0]: 3, runs[1]: 3}, written
    with engine.connect() as connection:
        current = connection.execute(sa.text("select run_id, count(*), sum(detections) from image_scores group by run_id")).all()
        by_run = dict(connection.execute(sa.text("select run_id, count(*) from detections group by run_id")).all())
        history = connection.execute(sa.text("select count(*) from superseded_detections")).scalar_one()
        day_total = connection.execute(sa.text("select sum(n) from detection_day_counts")).scalar_one()
    ((last_run, images, stored),) = current
    assert images == 3 and by_run == {last_run: stored} and stored in (3, 9)  # one run's detections, the later one's
    assert history == 6 + (12 - stored)  # the first scoring (6), then the earlier rescoring (3 + 9 - stored)
    assert day_total == stored
