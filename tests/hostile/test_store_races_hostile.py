"""Hostile cases of scorers racing on one results store: two workers of one Prefect pool handed the same images,
registering the same new model, or rescoring the same images.

The flow's claim on an image is its ``image_scores`` row (unique per image and model version); the race is
forced with a barrier, and the store is then counted with plain SQL: one score row per image, each image's
detections once, the day counts equal to the detections.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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


def at_once(*calls: Callable[[], object], seconds: float = 120) -> list[object]:
    """Run ``calls`` in threads at the same time; each one's result, or the exception it raised."""
    results: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as error:  # returned to the test, which asserts on it
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds)
    return results


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

    def score(batch: list[ScoredImage]) -> Callable[[], int]:
        return lambda: write_scored_batch(engine, start_run(engine, model.id, "cfg", len(batch)), model.id, batch)

    written = dict(zip("ab", at_once(score(first), score(second))))
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
    runs = [start_run(engine, model.id, "cfg", 3) for _ in range(2)]

    def rescore(run: int, detections: int) -> Callable[[], int]:
        batch = [scored(i, source, detections) for i in (1, 2, 3)]
        return lambda: write_scored_batch(engine, run, model.id, batch, rescore=True)

    written = dict(zip(runs, at_once(rescore(runs[0], 1), rescore(runs[1], 3))))
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


@pytest.mark.injected_fault
def test_two_score_runs_racing_for_the_same_frames_report_what_each_stored(
    postgres_url: str, tmp_path: Path, random_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What each score run reports (scored, skipped, defects per class) adds up to what the store holds.

    Two runs (``pipeline.score``, what the CLI and every flow shard call) over the same four frames,
    forced to race: the images one run lost count as skipped in its summary, not as scored, and their
    defects are not in its per-class counts; the store, counted with plain SQL, holds each image once.
    """
    from inspect_core import pipeline
    from inspect_core.config import InspectConfig
    from inspect_core.inference import scoring
    from tests.inference.test_poses import LeftEyeDetector, blob_frame

    frames = [tmp_path / "frames" / f"f{i}.png" for i in range(4)]
    for index, frame in enumerate(frames):
        blob_frame(frame, (20 + 10 * index, 30, 60 + 10 * index, 70))  # each frame: one defect the model finds
    monkeypatch.setattr(scoring, "load_detector", lambda *_args, **_kwargs: LeftEyeDetector())
    config = InspectConfig(store={"url": postgres_url}, score={"num_workers": 0, "default_threshold": 0.3})
    from inspect_core.ingest.folder import FolderWatcher

    registered = FolderWatcher(tmp_path / "frames", open_store(postgres_url), "cam-1", "L1", settle_seconds=0).poll_once().registered
    assert len(registered) == 4  # ingested first, as the flow's frames are
    force_the_race(monkeypatch)
    a, b = at_once(*[lambda: pipeline.score(config, frames, model=str(random_tiny_dir))] * 2)
    assert not isinstance(a, BaseException) and not isinstance(b, BaseException), (a, b)
    assert a.scored + b.scored == 4 and a.skipped + b.skipped == 4, (a, b)
    assert a.per_class.get("hole", 0) + b.per_class.get("hole", 0) == 4  # one defect per frame, counted by the run that stored it
    engine = sa.create_engine(postgres_url)
    with engine.connect() as connection:
        per_image = connection.execute(sa.text("select count(*), count(distinct image_id) from image_scores")).one()
        runs = dict(connection.execute(sa.text("select id, images_scored + images_skipped from scoring_runs where images_total = 4")).all())
        defects = connection.execute(sa.text("select count(*) from detections where operating")).scalar_one()
    engine.dispose()
    assert tuple(per_image) == (4, 4) and defects == 4
    assert sorted(runs.values()) == [4, 4]  # each run accounts for every frame it was given


@pytest.mark.injected_fault
def test_scorers_starting_together_on_a_new_model_register_it_once(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flow runs on a pool start together on a freshly promoted model: both find it unregistered, both insert.

    Forced: each registration waits at a barrier between its lookup and its insert. The loser used to
    fail with a UniqueViolation on the version's name; now both get the one registered version.
    """
    engine = open_store(postgres_url)
    folder = model_dir(tmp_path, "champion", "weights")
    meet = threading.Barrier(2, timeout=30)

    class MeetingSession(writes.Session):
        def add(self, instance: object, _warn: bool = True) -> None:
            meet.wait()
            super().add(instance, _warn)

    monkeypatch.setattr(writes, "Session", MeetingSession)
    versions = dict(zip("ab", at_once(*[lambda: register_model(engine, folder, base_model="tiny").id] * 2, seconds=60)))
    assert versions["a"] == versions["b"] and isinstance(versions["a"], int), versions
    with engine.connect() as connection:
        assert connection.execute(sa.text("select count(*) from model_versions")).scalar_one() == 1
