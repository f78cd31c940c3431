"""Hostile cases of reviews and their export (issue 14): reviewer input that must be refused with its field named,
text full of SQL and markup, random action sequences against an independent model of the rules, a database that
drops out mid-review, a disk that fills mid-export, and image files swapped under the store's feet.

Row counts and contents are read with plain SQL (not the review code): a refused review leaves no row, a failed
write leaves the frame's version where it was.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspect_core.cli import main
from inspect_core.config import DatasetSection
from inspect_core.data.exporters import write_voc_batch
from inspect_core.data.sources import import_sources
from inspect_core.errors import UsageError
from inspect_core.store import StoreUnavailableError
from inspect_core.store.reviews import ReviewAction, StaleReviewError, frame_detections, record_review, record_reviews, reviewed_frames
from tests.conftest import write_image
from tests.hostile.mounts import tmpfs
from tests.store.review_seed import HEIGHT, WIDTH, ReviewStore, seed_review_store

INJECTION = "x'); DROP TABLE reviews; --"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> ReviewStore:
    root = tmp_path_factory.mktemp("review_store")
    return seed_review_store(f"sqlite:///{root / 'results.db'}", root)


def reset(store: ReviewStore) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM reviews"))
        connection.execute(sa.text("DELETE FROM review_frames"))


def counts(store: ReviewStore) -> tuple[int, int, list[tuple]]:
    with store.engine.connect() as connection:
        reviews = connection.execute(sa.text("SELECT count(*) FROM reviews")).scalar_one()
        frames = connection.execute(sa.text("SELECT count(*) FROM review_frames")).scalar_one()
        detections = [tuple(r) for r in connection.execute(sa.text("SELECT * FROM detections ORDER BY id")).all()]
    return reviews, frames, detections


def _knot(store: ReviewStore) -> int:
    return store.detection_ids("f4", "m1")["knot", 0.95]


BAD = [  # (what the reviewer sent, words the refusal must hold)
    (dict(action="approve"), "review action 'approve': use one of accept"),
    (dict(action="accept"), "needs exactly one of detection_id"),
    (dict(action="accept", detection_id=True), "detection_id must be a whole number"),
    (dict(action="accept", detection_id=-1), "detection_id must be a whole number"),
    (dict(action="accept", detection_id=2**70), "detection_id must be a whole number"),
    (dict(action="accept", detection_id=10**9), "is not a detection of image"),
    (dict(action="accept", detection_id="other-frame"), "is not a detection of image"),  # replaced below by f1's hole
    (dict(action="relabel", detection_id="knot", class_name="knot"), "already 'knot'; accept it instead"),
    (dict(action="relabel", detection_id="knot", class_name="<loc_5>"), "class '<loc_5>'"),
    (dict(action="relabel", detection_id="knot", class_name="hole\nstain"), "printable"),
    (dict(action="relabel", detection_id="knot", class_name=""), "must be 1 to 200 printable characters"),
    (dict(action="relabel", detection_id="knot", class_name="x" * 201), "must be 1 to 200 printable characters"),
    (dict(action="relabel", detection_id="knot", class_name=7), "must be text"),
    (dict(action="reject", detection_id="knot", class_name="hole"), "reject takes no class_name"),
    (dict(action="add", class_name="hole"), "add needs a box"),
    (dict(action="add", class_name="hole", box=(0, 0, 10)), "box must be (x1, y1, x2, y2)"),
    (dict(action="add", class_name="hole", box=(0, 0, math.nan, 10)), "not a finite number"),
    (dict(action="add", class_name="hole", box=(0, 0, "ten", 10)), "not a number"),
    (dict(action="add", class_name="hole", box=(0, 0, WIDTH + 5, 10)), "lies outside the 200x100 image"),
    (dict(action="add", class_name="hole", box=(50, 10, 40, 20)), "zero or negative area"),
    (dict(action="add", class_name="hole", box=(1, 1, 5, 5), detection_id="knot"), "add takes no detection_id"),
    (dict(action="clean", class_name="hole"), "clean takes no class_name"),
    (dict(action="accept", added_review_id=1), "a drawn box is the reviewer's own"),
    (dict(action="reject", added_review_id=10**9), "is not a box drawn on image"),
]


@pytest.mark.hostile_input
@pytest.mark.parametrize(("sent", "words"), BAD, ids=[f"{i}-{s['action']}" for i, (s, _) in enumerate(BAD)])
def test_bad_review_input_is_refused_naming_the_field_and_nothing_is_stored(seeded: ReviewStore, sent: dict, words: str) -> None:
    reset(seeded)
    targets = {"knot": _knot(seeded), "other-frame": seeded.detection_ids("f1", "m1")["hole", 0.85]}
    sent = {k: targets.get(v, v) if k == "detection_id" and isinstance(v, str) else v for k, v in sent.items()}
    before = counts(seeded)
    with pytest.raises(UsageError) as refused:
        record_reviews(seeded.engine, seeded.image_ids["f4"], seeded.model_ids["m1"], "ayse", [ReviewAction(**sent)], 0)
    assert words in str(refused.value) and not isinstance(refused.value, StaleReviewError)
    assert counts(seeded) == before


@pytest.mark.hostile_input
@pytest.mark.parametrize(
    ("reviewer", "image", "model", "seen", "words"),
    [("", "f4", "m1", 0, "reviewer '' must be 1 to 200 printable characters"), ("a\x00b", "f4", "m1", 0, "printable"),
     ("  ", "f4", "m1", 0, "printable"), ("ayse", "f4", "m2", 0, "has not been scored by model version"),
     ("ayse", "f4", "m1", -1, "seen_version must be a whole number"),
     ("ayse", "f4", "m1", 5, "is at version 0; the write carried version 5")],
    ids=["empty-name", "nul-in-name", "blank-name", "frame-not-scored-by-model", "negative-version", "version-from-the-future"],
)  # fmt: skip
def test_bad_reviewers_frames_and_versions_are_refused(seeded: ReviewStore, reviewer: str, image: str, model: str, seen: int,
                                                       words: str) -> None:  # fmt: skip
    reset(seeded)
    before = counts(seeded)
    with pytest.raises(UsageError, match=re.escape(words)) as refused:
        record_review(seeded.engine, seeded.image_ids[image], seeded.model_ids[model], reviewer, "clean", seen_version=seen)
    assert not isinstance(refused.value, StaleReviewError)  # nobody else wrote: not a concurrency refusal
    assert counts(seeded) == before


@pytest.mark.hostile_input
def test_text_full_of_sql_and_unicode_is_stored_and_exported_literally(seeded: ReviewStore, tmp_path: Path) -> None:
    reset(seeded)
    f4, m1 = seeded.image_ids["f4"], seeded.model_ids["m1"]
    actions = [ReviewAction("relabel", detection_id=_knot(seeded), class_name=INJECTION),
               ReviewAction("add", class_name="délavé 汚れ", box=(1.5, 2.25, 30, 40))]  # fmt: skip
    record_reviews(seeded.engine, f4, m1, INJECTION, actions, 0)
    with seeded.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT reviewer, class_name FROM reviews ORDER BY id")).all()
    assert [tuple(r) for r in stored] == [(INJECTION, INJECTION), (INJECTION, "délavé 汚れ")]
    result = write_voc_batch([f for f in reviewed_frames(seeded.engine) if f.image_id == f4], tmp_path / "batch")
    [image] = import_sources(tmp_path / "batch", DatasetSection(format="voc")).images
    want = [(INJECTION, (120.0, 40.0, 180.0, 90.0)), ("délavé 汚れ", (1.5, 2.25, 30.0, 40.0))]
    assert sorted((o.label, o.box) for o in image.objects) == sorted(want)
    assert result.frames == 1


CLASSES = ("hole", "knot", "oil")
ACTION = st.one_of(
    st.tuples(st.sampled_from(["accept", "reject"]), st.sampled_from(["knot", "hole"])),
    st.tuples(st.just("relabel"), st.sampled_from(["knot", "hole"]), st.sampled_from(CLASSES)),
    st.tuples(st.just("add"), st.sampled_from(CLASSES), st.integers(0, 150), st.integers(0, 60)),
    st.tuples(st.sampled_from(["reject-drawn", "relabel-drawn"]), st.integers(0, 5), st.sampled_from(CLASSES)),
    st.tuples(st.just("clean")),
)


class Oracle:
    """The review rules as a reviewer reads them, applied step by step (the code folds the log by id instead)."""

    def __init__(self, model_classes: dict[str, str], operating: set[str]) -> None:
        self.model_classes, self.operating = model_classes, operating
        self.verdicts: dict[str, tuple[str, str | None]] = {}
        self.drawn: dict[int, str] = {}  # add's position in the sequence -> class; gone when rejected or cleaned
        self.adds: list[int] = []  # every add so far, standing or not
        self.cleaned = False

    def apply(self, step: tuple) -> bool:
        """Apply one step; False where the code must refuse it (and change nothing)."""
        kind = step[0]
        if kind in ("accept", "reject"):
            self.verdicts[step[1]] = (kind, self.model_classes[step[1]] if kind == "accept" else None)
        elif kind == "relabel":
            if step[2] == self.model_classes[step[1]]:
                return False
            self.verdicts[step[1]] = ("relabel", step[2])
        elif kind == "add":
            self.adds.append(len(self.adds))
            self.drawn[self.adds[-1]] = step[1]
        elif kind in ("reject-drawn", "relabel-drawn"):
            if step[1] >= len(self.adds):
                return False
            if step[1] in self.drawn:
                if kind == "reject-drawn":
                    del self.drawn[step[1]]
                else:
                    self.drawn[step[1]] = step[2]
        else:
            self.cleaned = True
            self.verdicts = {name: ("reject", None) for name in self.model_classes}
            self.drawn = {}
        return True

    @property
    def status(self) -> str:
        return "complete" if self.cleaned or self.operating <= set(self.verdicts) else "partial"


@pytest.mark.hostile_input(examples=30)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(ACTION, min_size=1, max_size=8))
def test_any_sequence_of_actions_ends_where_the_rules_say(seeded: ReviewStore, steps: list[tuple]) -> None:
    reset(seeded)
    engine, f4, m1 = seeded.engine, seeded.image_ids["f4"], seeded.model_ids["m1"]
    ids = {"knot": _knot(seeded), "hole": seeded.detection_ids("f4", "m1")["hole", 0.62]}
    oracle, version, add_ids = Oracle({"knot": "knot", "hole": "hole"}, {"knot"}), 0, []
    for step in steps:
        kind = step[0]
        if kind in ("accept", "reject"):
            action = ReviewAction(kind, detection_id=ids[step[1]])
        elif kind == "relabel":
            action = ReviewAction("relabel", detection_id=ids[step[1]], class_name=step[2])
        elif kind == "add":
            action = ReviewAction("add", class_name=step[1], box=(step[2], step[3], step[2] + 20, step[3] + 20))
        elif kind in ("reject-drawn", "relabel-drawn"):
            target = add_ids[step[1]] if step[1] < len(add_ids) else 10**9
            action = ReviewAction(kind.split("-")[0], added_review_id=target, class_name=step[2] if kind == "relabel-drawn" else None)
        else:
            action = ReviewAction("clean")
        allowed = oracle.apply(step)
        if not allowed:
            with pytest.raises(UsageError):
                record_reviews(engine, f4, m1, "fuzz", [action], version)
            continue
        written = record_reviews(engine, f4, m1, "fuzz", [action], version)
        version = written.version
        if kind == "add":
            add_ids.append(written.review_ids[0])
    frame = frame_detections(engine, f4, m1)
    names = {v: k for k, v in ids.items()}
    got = {names[d]: (v, c) for d, v, c in zip(frame.detections.detection_id, frame.detections.verdict, frame.detections.reviewed_class)
           if v is not None}  # fmt: skip
    assert got == oracle.verdicts
    assert sorted(zip(frame.drawn.review_id, frame.drawn.class_name)) == sorted((add_ids[i], c) for i, c in oracle.drawn.items())
    assert frame.version == version and (frame.status == oracle.status or version == 0)


@pytest.mark.injected_fault
def test_a_database_down_through_a_review_stores_nothing_and_a_short_outage_stores_it_once(
    seeded: ReviewStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("inspect_core.store.engine.RETRY_BASE_DELAY_S", 0.001)
    reset(seeded)
    failures = {"left": 10**6}

    def fail(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO REVIEWS") and failures["left"] > 0:
            failures["left"] -= 1
            raise sa.exc.OperationalError(statement, {}, Exception("server closed the connection unexpectedly"))

    sa.event.listen(seeded.engine, "before_cursor_execute", fail)
    try:
        before = counts(seeded)
        with pytest.raises(StoreUnavailableError, match="recording a review of image .* failed 5 times"):
            record_review(seeded.engine, seeded.image_ids["f4"], seeded.model_ids["m1"], "ayse", "accept", seen_version=0,
                          detection_id=_knot(seeded))  # fmt: skip
        assert counts(seeded) == before  # the version claimed in the same transaction was rolled back with it
        failures["left"] = 2
        written = record_review(seeded.engine, seeded.image_ids["f4"], seeded.model_ids["m1"], "ayse", "accept", seen_version=0,
                                detection_id=_knot(seeded))  # fmt: skip
    finally:
        sa.event.remove(seeded.engine, "before_cursor_execute", fail)
    assert written.version == 1 and counts(seeded)[:2] == (1, 1)


@pytest.mark.injected_fault
def test_a_disk_full_mid_export_fails_clearly_and_leaves_no_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = seed_review_store(f"sqlite:///{tmp_path / 'results.db'}", tmp_path)
    for name in ("f1", "f2", "f3", "f5", "f6"):
        model = "m2" if name == "f5" else "m1"
        record_review(store.engine, store.image_ids[name], store.model_ids[model], "ayse", "clean", seen_version=0)
    with tmpfs(tmp_path / "disk", "96k") as disk:  # room for one or two 60 kB frames, not five
        code = main(["review", "export", "--db", store.url, "--out", str(disk / "labelled" / "2026-11-21"), "--copy"])
        err = capsys.readouterr().err
        assert code == 1 and "No space left on device" in err and "nothing was exported" in err
        assert list((disk / "labelled").iterdir()) == []  # no batch, no staging folder for the nightly to find


@pytest.mark.hostile_input
@pytest.mark.parametrize("swap", ["symlink-to-a-text-file", "another-image", "a-folder", "truncated"])
def test_an_image_swapped_after_scoring_is_never_exported_under_its_labels(tmp_path: Path, swap: str) -> None:
    store = seed_review_store(f"sqlite:///{tmp_path / 'results.db'}", tmp_path)
    record_review(store.engine, store.image_ids["f2"], store.model_ids["m1"], "ayse", "clean", seen_version=0)
    record_review(store.engine, store.image_ids["f3"], store.model_ids["m1"], "ayse", "clean", seen_version=0)
    target = store.frames / "f2.png"
    if swap == "symlink-to-a-text-file":
        (tmp_path / "secret.png").write_text("root:x:0:0\n")
        target.unlink()
        os.symlink(tmp_path / "secret.png", target)
    elif swap == "another-image":
        write_image(target, width=WIDTH, height=HEIGHT, seed=1234)
    elif swap == "a-folder":
        target.unlink()
        target.mkdir()
    else:
        target.write_bytes(target.read_bytes()[:200])
    result = write_voc_batch(reviewed_frames(store.engine), tmp_path / "batch")
    assert [Path(image).name for image, _why in result.skipped] == ["f2.png"]
    assert [p.name.split("-")[0] for p in (tmp_path / "batch").iterdir() if p.suffix == ".png"] == ["f3"]


@pytest.mark.hostile_input
def test_an_export_never_follows_a_path_outside_the_store(seeded: ReviewStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--out naming the store's own folder of frames (the labelled root look-alike) or a file is refused, nothing touched."""
    reset(seeded)
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", seeded.frames.parent):
        code = main(["review", "export", "--db", seeded.url, "--out", str(out), "--overwrite"])
        assert code == 2 and "Traceback" not in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "x" and (seeded.frames / "f1.png").is_file()
