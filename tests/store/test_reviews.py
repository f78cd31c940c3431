"""Reviews (issue 14): every action persists as its own row, model detections never change, a stale concurrent
review is refused with who and when, and the queue, precision and export reads agree with a plain-Python oracle
over the seeded frames (tests/store/review_seed.py)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from inspect_core.errors import UsageError
from inspect_core.model.calibration import UNCALIBRATED_THRESHOLD
from inspect_core.store import ReportFilter, ScoredImage, StoredDetection, create_store_engine, finish_run, open_store, start_run
from inspect_core.store import write_scored_batch as write_batch
from inspect_core.store.opening import downgrade, migrate
from inspect_core.store.reviews import (
    LEGACY_THRESHOLD,
    QUEUE_COLUMNS,
    ReviewAction,
    StaleReviewError,
    frame_detections,
    record_review,
    record_reviews,
    review_queue,
    reviewed_frames,
    reviewed_precision,
)
from tests.store.review_seed import DETECTIONS, IMAGES, LINES, RUNS, UTC, ReviewStore, operating, run_of, seed_review_store, threshold


@pytest.fixture
def store(store_url: str, tmp_path) -> ReviewStore:
    return seed_review_store(store_url, tmp_path)


def table(engine: sa.Engine, name: str, order: str = "id") -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(sa.text(f"SELECT * FROM {name} ORDER BY {order}")).all()]


def review_rows(engine: sa.Engine) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(sa.text("SELECT * FROM reviews ORDER BY id")).mappings().all()]


def test_review_tables_are_built_by_the_migration_exactly_as_modelled(store_url: str) -> None:
    engine = open_store(store_url)
    assert {"reviews", "review_frames"} <= set(SQLModel.metadata.tables)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []
        assert {"reviews", "review_frames"} <= set(sa.inspect(connection).get_table_names())


def test_the_legacy_threshold_is_the_uncalibrated_default() -> None:
    assert LEGACY_THRESHOLD == UNCALIBRATED_THRESHOLD


def test_each_action_persists_as_its_own_row_and_detections_never_change(store: ReviewStore) -> None:
    engine = store.engine
    detections_before, scores_before = table(engine, "detections"), table(engine, "image_scores")
    f1, m1 = store.image_ids["f1"], store.model_ids["m1"]
    ids = store.detection_ids("f1", "m1")
    hole, stain = ids["hole", 0.85], ids["stain", 0.2]
    first = record_review(engine, f1, m1, "ayse", "accept", seen_version=0, detection_id=hole)
    second = record_review(engine, f1, m1, "ayse", "relabel", seen_version=first.version, detection_id=stain, class_name=" knot ")
    third = record_review(engine, f1, m1, "bora", "add", seen_version=second.version, class_name="slub", box=(-0.5, 60, 40, 99.5))
    f2, stain2 = store.image_ids["f2"], store.detection_ids("f2", "m1")["stain", 0.7]
    reject = record_review(engine, f2, m1, "bora", "reject", seen_version=0, detection_id=stain2)
    f3 = store.image_ids["f3"]
    clean = record_review(engine, f3, m1, "cem", "clean", seen_version=0)
    assert (first.version, second.version, third.version, reject.version, clean.version) == (1, 2, 3, 1, 1)

    rows = review_rows(engine)
    got = [(r["image_id"], r["model_version_id"], r["frame_version"], r["reviewer"], r["action"], r["detection_id"], r["model_class"],
            r["class_name"]) for r in rows]  # fmt: skip
    assert got == [
        (f1, m1, 1, "ayse", "accept", hole, "hole", "hole"),
        (f1, m1, 2, "ayse", "relabel", stain, "stain", "knot"),
        (f1, m1, 3, "bora", "add", None, None, "slub"),
        (f2, m1, 1, "bora", "reject", stain2, "stain", None),
        (f3, m1, 1, "cem", "clean", None, None, None),
    ]
    assert [r["id"] for r in rows] == [*first.review_ids, *second.review_ids, *third.review_ids, *reject.review_ids, *clean.review_ids]
    drawn = rows[2]  # clipped by the 1 px rounding tolerance, normalised by the image size
    assert (drawn["x1"], drawn["y1"], drawn["x2"], drawn["y2"]) == (0.0, 60.0, 40.0, 99.5)
    assert (drawn["nx1"], drawn["ny1"], drawn["nx2"], drawn["ny2"]) == pytest.approx((0.0, 0.6, 0.2, 0.995))
    assert (rows[0]["x1"], rows[0]["y2"], rows[0]["model_confidence"]) == (10.0, 40.0, pytest.approx(0.85))  # the judged box, copied
    assert all(r["reviewed_at"] is not None for r in rows)
    versions = {(r[0], r[1]): (r[2], r[3]) for r in table(engine, "review_frames", "image_id")}
    assert versions == {(f1, m1): (3, "bora"), (f2, m1): (1, "bora"), (f3, m1): (1, "cem")}
    assert table(engine, "detections") == detections_before and table(engine, "image_scores") == scores_before


def test_verdicts_drawn_boxes_and_status_follow_the_log(store: ReviewStore) -> None:
    engine, f4, m1 = store.engine, store.image_ids["f4"], store.model_ids["m1"]
    ids = store.detection_ids("f4", "m1")
    hole, knot = ids["hole", 0.62], ids["knot", 0.95]  # the hole is under hole's 0.8 threshold: not operating
    frame = frame_detections(engine, f4, m1)
    assert (frame.status, frame.version, frame.undecided, frame.clean) == ("unreviewed", 0, 1, False)
    assert list(frame.detections.detection_id) == [knot, hole]  # most confident first
    assert list(frame.detections.threshold) == [0.5, 0.8] and list(frame.detections.operating) == [True, False]
    v = record_review(engine, f4, m1, "ayse", "add", seen_version=0, class_name="hole", box=(0, 0, 10, 10))
    drawn_id = v.review_ids[0]
    assert frame_detections(engine, f4, m1).status == "partial"  # the knot is still undecided
    both = [ReviewAction("accept", detection_id=knot), ReviewAction("relabel", added_review_id=drawn_id, class_name="stain")]
    v = record_reviews(engine, f4, m1, "ayse", both, v.version)
    frame = frame_detections(engine, f4, m1)
    assert (frame.status, frame.version, frame.undecided) == ("complete", 2, 0)
    assert frame.detections.set_index("detection_id").verdict.to_dict() == {knot: "accept", hole: None}
    assert list(zip(frame.drawn.review_id, frame.drawn.class_name)) == [(drawn_id, "stain")]
    v = record_review(engine, f4, m1, "bora", "clean", seen_version=v.version)
    frame = frame_detections(engine, f4, m1)
    assert frame.clean and frame.drawn.empty and set(frame.detections.verdict) == {"reject"}
    v = record_review(engine, f4, m1, "bora", "accept", seen_version=v.version, detection_id=hole)  # after clean: stands
    frame = frame_detections(engine, f4, m1)
    assert not frame.clean and frame.detections.set_index("detection_id").verdict.to_dict() == {knot: "reject", hole: "accept"}
    assert list(frame.history.action) == ["add", "accept", "relabel", "clean", "accept"]
    assert list(frame.history.frame_version) == [1, 2, 2, 3, 4]
    [exported] = [f for f in reviewed_frames(engine) if f.image_id == f4]
    assert exported.status == "complete" and [(b.label, b.box) for b in exported.boxes] == [("hole", (5.0, 5.0, 25.0, 25.0))]


def test_a_drawn_box_rejected_is_gone_and_the_final_boxes_are_exactly_the_reviewed_ones(store: ReviewStore) -> None:
    engine, m1, m2 = store.engine, store.model_ids["m1"], store.model_ids["m2"]
    f1 = store.image_ids["f1"]
    ids = store.detection_ids("f1", "m1")
    v = record_reviews(engine, f1, m1, "ayse", [ReviewAction("reject", detection_id=ids["hole", 0.85]),
                                                ReviewAction("add", class_name="knot", box=(60, 10, 90, 30)),
                                                ReviewAction("add", class_name="slub", box=(1, 1, 9, 9))], 0)  # fmt: skip
    record_review(engine, f1, m1, "ayse", "reject", seen_version=v.version, added_review_id=v.review_ids[2])
    f5 = store.image_ids["f5"]
    record_review(engine, f5, m2, "cem", "relabel", seen_version=0, detection_id=store.detection_ids("f5", "m2")["stain", 0.9],
                  class_name="oil")  # fmt: skip
    final = {(f.image_id, f.model_version_id): (f.status, [(b.label, b.box) for b in f.boxes]) for f in reviewed_frames(engine)}
    # f1/m1: the hole rejected, the stain (0.2, under 0.5) not operating so not a box, one drawn box kept
    assert final == {(f1, m1): ("complete", [("knot", (60.0, 10.0, 90.0, 30.0))]),
                     (f5, m2): ("complete", [("oil", (60.0, 20.0, 140.0, 90.0))])}  # fmt: skip
    later = datetime.now(UTC) + timedelta(hours=1)
    assert reviewed_frames(engine, reviewed_after=later) == []
    assert [f.image_id for f in reviewed_frames(engine, model="m2")] == [f5]
    assert [f.image_id for f in reviewed_frames(engine, since=IMAGES["f5"][1])] == [f5]


def test_a_stale_review_is_refused_with_who_and_when_and_the_first_write_stays(store: ReviewStore) -> None:
    first_engine, second_engine = store.engine, create_store_engine(store.url)  # two reviewers, two connections pools
    f2, m1 = store.image_ids["f2"], store.model_ids["m1"]
    stain = store.detection_ids("f2", "m1")["stain", 0.7]
    seen_by_both = frame_detections(second_engine, f2, m1).version
    record_review(first_engine, f2, m1, "ayse", "accept", seen_version=seen_by_both, detection_id=stain)
    with pytest.raises(StaleReviewError, match=r"changed by ayse at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC .*version 1.*version 0") as stale:
        record_review(second_engine, f2, m1, "bora", "reject", seen_version=seen_by_both, detection_id=stain)
    assert isinstance(stale.value, UsageError) and stale.value.changed_by == "ayse" and stale.value.version == 1
    assert [(r["reviewer"], r["action"]) for r in review_rows(first_engine)] == [("ayse", "accept")]
    reloaded = frame_detections(second_engine, f2, m1)
    assert reloaded.version == 1 and reloaded.detections.verdict.tolist() == ["accept"]
    record_review(second_engine, f2, m1, "bora", "reject", seen_version=reloaded.version, detection_id=stain)  # decided again: stored
    assert frame_detections(first_engine, f2, m1).detections.verdict.tolist() == ["reject"]
    with pytest.raises(StaleReviewError, match="changed by bora"):
        record_review(first_engine, f2, m1, "ayse", "accept", seen_version=1, detection_id=stain)
    second_engine.dispose()


@pytest.mark.parametrize("seen", [0, 1])
def test_of_simultaneous_writes_on_one_version_exactly_one_wins(store: ReviewStore, seen: int) -> None:
    f3, m1 = store.image_ids["f3"], store.model_ids["m1"]
    if seen:
        record_review(store.engine, f3, m1, "setup", "clean", seen_version=0)
    engines = [create_store_engine(store.url) for _ in range(4)]
    start, outcomes = threading.Barrier(len(engines)), []

    def write(engine: sa.Engine, name: str) -> None:
        start.wait()
        try:
            record_review(engine, f3, m1, name, "add", seen_version=seen, class_name="hole", box=(1, 1, 20, 20))
            outcomes.append(("stored", name))
        except StaleReviewError as error:
            outcomes.append(("stale", error.changed_by))

    threads = [threading.Thread(target=write, args=(e, f"r{i}")) for i, e in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = [name for kind, name in outcomes if kind == "stored"]
    assert len(stored) == 1 and sorted(kind for kind, _ in outcomes) == ["stale", "stale", "stale", "stored"]
    assert {by for kind, by in outcomes if kind == "stale"} == set(stored)  # every refusal names the winner
    adds = [r for r in review_rows(store.engine) if r["action"] == "add"]
    assert [r["reviewer"] for r in adds] == stored and adds[0]["frame_version"] == seen + 1
    for engine in engines:
        engine.dispose()


def expected_queue(flt: ReportFilter, reviewed: set[tuple[str, str]] = frozenset()) -> list[tuple[str, str, float | None]]:
    """The queue computed from the seed: (image, model, margin) in order."""
    frames = []
    for (image, model), found in DETECTIONS.items():
        camera, captured = IMAGES[image]
        if (flt.line and LINES[camera] != flt.line) or (flt.camera and camera != flt.camera) or (flt.model and model != flt.model):
            continue
        if (flt.since and captured < flt.since) or (flt.until and captured >= flt.until):
            continue
        kept = [(c, conf) for c, conf, _ in found if (flt.class_name is None or c == flt.class_name)
                and (flt.min_confidence is None or conf >= flt.min_confidence)]  # fmt: skip
        if flt.class_name is not None and not kept:
            continue
        margin = min((abs(conf - threshold(run_of(image, model), c)) for c, conf in kept), default=None)
        frames.append((image, model, margin, captured))
    frames.sort(key=lambda f: ((f[0], f[1]) in reviewed, f[2] is None, round(f[2] or 0, 9), -f[3].timestamp(), -int(f[0][1:])))
    return [(image, model, margin) for image, model, margin, _ in frames]


def queue_rows(store: ReviewStore, flt: ReportFilter, **kwargs: object) -> list[tuple[str, str, float | None]]:
    names = {v: k for k, v in store.image_ids.items()}
    models = {v: k for k, v in store.model_ids.items()}
    frame = review_queue(store.engine, flt, **kwargs)
    assert list(frame.columns) == QUEUE_COLUMNS
    return [(names[i], models[m], None if margin != margin else margin)
            for i, m, margin in zip(frame.image_id, frame.model_version_id, frame.margin)]  # fmt: skip


FILTERS = [
    ReportFilter(),
    ReportFilter(line="line-A"),
    ReportFilter(camera="cam-2"),
    ReportFilter(class_name="hole"),
    ReportFilter(model="m2"),
    ReportFilter(min_confidence=0.5),
    ReportFilter(since=datetime(2026, 11, 1, 9, 0, tzinfo=UTC), until=datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),
]


def test_the_queue_puts_the_frames_nearest_their_thresholds_first_for_every_filter(store: ReviewStore) -> None:
    for flt in FILTERS:
        got, want = queue_rows(store, flt, limit=None), expected_queue(flt)
        assert [(i, m) for i, m, _ in got] == [(i, m) for i, m, _ in want], flt
        assert [g for _, _, g in got] == pytest.approx([w for _, _, w in want], nan_ok=True), flt
    # f7 (run 4) and f1 (run 1) use m1's usual thresholds, f6 (run 3) another recipe's, f1 of m2 the legacy 0.3
    margins = {(i, m): g for i, m, g in queue_rows(store, ReportFilter(), limit=None)}
    assert margins["f6", "m1"] == pytest.approx(0.06) and margins["f7", "m1"] == pytest.approx(0.1)
    assert margins["f1", "m2"] == pytest.approx(0.02) and margins["f3", "m1"] is None


def test_reviewed_frames_go_behind_and_pages_add_up(store: ReviewStore) -> None:
    m1 = store.model_ids["m1"]
    record_review(store.engine, store.image_ids["f6"], m1, "ayse", "clean", seen_version=0)
    want = expected_queue(ReportFilter(), reviewed={("f6", "m1")})
    assert [r[:2] for r in queue_rows(store, ReportFilter(), limit=None)] == [w[:2] for w in want] and want[-1][:2] == ("f6", "m1")
    pages = [row for offset in range(0, 9, 3) for row in queue_rows(store, ReportFilter(), limit=3, offset=offset)]
    assert [r[:2] for r in pages] == [w[:2] for w in want]
    assert [r[:2] for r in queue_rows(store, ReportFilter(), limit=None, reviewed=True)] == [("f6", "m1")]
    assert ("f6", "m1") not in [r[:2] for r in queue_rows(store, ReportFilter(), limit=None, reviewed=False)]
    queue = review_queue(store.engine, ReportFilter(), limit=None, reviewed=True)
    assert queue.review_version.tolist() == [1] and queue.reviewed_by.tolist() == ["ayse"]


def test_reviewed_precision_counts_each_reviewed_operating_detection_once_by_its_current_verdict(store: ReviewStore) -> None:
    engine, m1, m2 = store.engine, store.model_ids["m1"], store.model_ids["m2"]
    img, hole = store.image_ids, store.detection_ids("f1", "m1")["hole", 0.85]
    v = record_review(engine, img["f1"], m1, "ayse", "reject", seen_version=0, detection_id=hole)
    record_review(engine, img["f1"], m1, "ayse", "accept", seen_version=v.version, detection_id=hole)  # changed their mind
    record_review(engine, img["f1"], m2, "ayse", "accept", seen_version=0, detection_id=store.detection_ids("f1", "m2")["hole", 0.32])
    record_review(engine, img["f7"], m1, "bora", "clean", seen_version=0)  # rejects its hole
    knot = store.detection_ids("f4", "m1")["knot", 0.95]
    record_review(engine, img["f4"], m1, "bora", "relabel", seen_version=0, detection_id=knot, class_name="slub")
    record_review(engine, img["f2"], m1, "bora", "accept", seen_version=0, detection_id=store.detection_ids("f2", "m1")["stain", 0.7])
    got = reviewed_precision(engine, ReportFilter()).set_index("class_name")
    assert got.loc["hole", ["reviewed", "accepted", "rejected"]].tolist() == [3, 2, 1]
    assert got.loc["hole", "precision"] == pytest.approx(2 / 3)
    assert got.loc["knot", ["reviewed", "accepted", "relabelled", "precision"]].tolist() == [1, 0, 1, 0.0]
    assert got.loc["stain", ["reviewed", "accepted", "precision"]].tolist() == [1, 1, 1.0]
    assert list(got.index) == ["hole", "knot", "stain"]
    only_m2 = reviewed_precision(engine, ReportFilter(model="m2"))
    assert only_m2.to_dict("records") == [{"class_name": "hole", "reviewed": 1, "accepted": 1, "relabelled": 0, "rejected": 0,
                                           "precision": 1.0}]  # fmt: skip
    assert reviewed_precision(engine, ReportFilter(line="line-B")).class_name.tolist() == ["knot", "stain"]


def test_a_rescored_frame_needs_review_again_and_a_replaced_box_is_a_stale_review(store: ReviewStore) -> None:
    engine, f2, m1 = store.engine, store.image_ids["f2"], store.model_ids["m1"]
    old = store.detection_ids("f2", "m1")["stain", 0.7]
    version = record_review(engine, f2, m1, "ayse", "accept", seen_version=0, detection_id=old).version
    assert frame_detections(engine, f2, m1).status == "complete"
    run = start_run(engine, m1, "cfg2", images_total=1, thresholds={"default": 0.5, "classes": {}, "store_floor": 0.01,
                                                                       "calibrated": True})  # fmt: skip
    camera, captured = IMAGES["f2"]
    again = ScoredImage(store.shas["f2"], str(store.frames / "f2.png"), 200, 100, captured, None,
                        [StoredDetection("stain", 0.66, (21.0, 30.0, 61.0, 70.0), operating=True)])  # fmt: skip
    assert write_batch(engine, run, m1, [again], rescore=True) == 1
    finish_run(engine, run, "completed")
    frame = frame_detections(engine, f2, m1)
    assert frame.status == "partial" and frame.detections.verdict.tolist() == [None]
    assert list(frame.history.detection_id) == [old]  # the review of the replaced box stays in the log
    with pytest.raises(StaleReviewError, match=f"detection {old} was replaced when run {run} rescored"):
        record_review(engine, f2, m1, "ayse", "reject", seen_version=version, detection_id=old)


def test_the_review_tables_downgrade_when_empty_and_refuse_to_drop_reviews(store: ReviewStore) -> None:
    engine = store.engine
    downgrade(engine, "0006")
    with engine.connect() as connection:
        assert "reviews" not in sa.inspect(connection).get_table_names()
    migrate(engine)
    record_review(engine, store.image_ids["f3"], store.model_ids["m1"], "ayse", "clean", seen_version=0)
    with pytest.raises(RuntimeError, match="holds 1 review"):
        downgrade(engine, "0006")
    assert len(review_rows(engine)) == 1


def test_operating_flags_of_the_seed_follow_the_recorded_thresholds(store: ReviewStore) -> None:
    """The seed's own oracle agrees with what scoring stored: the queue's margins rest on it."""
    with store.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT image_id, model_version_id, class_name, confidence, operating FROM detections")).all()
    names, models = {v: k for k, v in store.image_ids.items()}, {v: k for k, v in store.model_ids.items()}
    assert len(rows) == sum(len(v) for v in DETECTIONS.values()) and len(RUNS) == 4
    for image_id, model_id, name, conf, flag in rows:
        assert bool(flag) == operating(names[image_id], models[model_id], name, conf)
