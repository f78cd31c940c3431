"""The app's reads (inspect_core.store.browse) over the seeded store, checked against the seed itself (plain Python)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from inspect_core.store import ReportFilter, defect_rate_per_line, promote_model
from inspect_core.store.browse import filter_choices, frames, image_file, model_versions, recent_images
from tests.store.seeded import IMAGES, LINES, SCORES, UTC, Store, expected, seed_store


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Store:
    return seed_store(store_url, tmp_path)


def test_model_versions_newest_first_and_filter_choices(store: Store) -> None:
    versions = model_versions(store.engine)
    assert [v.name for v in versions] == ["fabric-v2", "fabric-v1"]  # registered in this order
    promote_model(store.engine, versions[1].id)
    assert [v.promoted_at is not None for v in model_versions(store.engine)] == [False, True]
    choices = filter_choices(store.engine)
    assert choices.lines == sorted(set(LINES.values()))
    assert choices.cameras == sorted(LINES)
    assert choices.classes == sorted({cls for found in SCORES.values() for cls, _, _ in found})
    assert choices.models == ["fabric-v1", "fabric-v2"]


def test_an_image_file_is_found_by_id_only_for_registered_images(store: Store) -> None:
    recent = recent_images(store.engine, limit=10)
    assert list(recent["image_path"].map(lambda p: Path(p).stem)) == sorted(IMAGES, key=lambda n: IMAGES[n][1], reverse=True)
    newest = recent.iloc[0]
    assert image_file(store.engine, int(newest.image_id)) == newest.image_path
    assert (newest.camera, newest.line) == ("cam-2", "line-B")
    assert image_file(store.engine, 10_000) is None
    assert len(recent_images(store.engine, limit=2)) == 2


FILTERS = [
    ReportFilter(),
    ReportFilter(line="line-B"),
    ReportFilter(class_name="hole"),
    ReportFilter(model="fabric-v2", min_confidence=0.8),
    ReportFilter(since=datetime(2026, 11, 1, 9, tzinfo=UTC), until=datetime(2026, 11, 2, 8, tzinfo=UTC)),
]


@pytest.mark.parametrize("flt", FILTERS, ids=str)
def test_frames_are_the_frames_with_matching_detections_newest_first(store: Store, flt: ReportFilter) -> None:
    rows = expected(flt)
    found = frames(store.engine, flt, limit=100)
    got = zip(found.image_path.map(lambda p: Path(p).stem), found.model, found.class_name, found.confidence.round(6))
    assert sorted(got) == sorted((r.image, r.model, r.class_name, round(r.confidence, 6)) for r in rows)
    order = list(dict.fromkeys(zip(found.image_path.map(lambda p: Path(p).stem), found.model)))
    times = [IMAGES[image][1] for image, _ in order]
    assert times == sorted(times, reverse=True)
    assert found[["nx1", "ny1", "nx2", "ny2"]].apply(lambda c: c.between(0, 1)).all().all()


def test_frames_behind_a_line_bar_are_the_ones_the_bar_counts(store: Store) -> None:
    rates = defect_rate_per_line(store.engine, ReportFilter()).set_index("line")
    for line in LINES.values():
        found = frames(store.engine, ReportFilter(line=line), limit=100)
        pairs = set(zip(found.image_id, found.model_version_id))
        assert len(pairs) == rates.loc[line, "images_with_defects"]


def test_frames_limit_and_confidence_range(store: Store) -> None:
    newest_two = frames(store.engine, ReportFilter(), limit=2)
    assert list(dict.fromkeys(newest_two.image_path.map(lambda p: Path(p).stem))) == ["gone", "e"]
    high = frames(store.engine, ReportFilter(), limit=100, confidence=(0.9, 1.0 + 1e-9))
    assert sorted(high.confidence.round(6)) == [0.9, 0.95, 0.99]
    middle = frames(store.engine, ReportFilter(), limit=100, confidence=(0.5, 0.8))  # upper bound exclusive: 0.8 is out
    assert sorted(middle.confidence.round(6)) == [0.55, 0.7]
