"""The dashboard's data and selections over the seeded store, against the seed counted in plain Python."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from inspect_app.context import AppContext
from inspect_app.dashboard import (
    NO_LINE,
    Filters,
    bucket_window,
    clock_for,
    dashboard_data,
    frames_behind,
    parse_confidence,
    report_filter,
    selection,
)
from inspect_core.config import load_recipe
from inspect_core.errors import UsageError
from inspect_core.store import defect_rate_per_line
from inspect_core.store.plant_clock import plant_clock
from tests.store.seeded import IMAGES, LINES, SCORES, Store, seed_store

BERLIN = plant_clock("Europe/Berlin")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return seed_store(f"sqlite:///{tmp_path / 'results.db'}", tmp_path)


@pytest.fixture
def ctx(store: Store) -> AppContext:
    config = load_recipe(None, ["report.timezone=Europe/Berlin", "report.shifts=[{name: A, start: '06:00'}, {name: B, start: '18:00'}]"])
    return AppContext(store.engine, config, samples=None)


def _scorings(line: str | None = None, model: str | None = None) -> list[tuple[str, str, int]]:
    """(image, model, detections) of every scoring in the seed on ``line``."""
    return [(image, m, len(found)) for (image, m), found in SCORES.items()
            if (line is None or LINES[IMAGES[image][0]] == line) and (model is None or m == model)]  # fmt: skip


def test_per_line_rates_match_the_seed(ctx: AppContext) -> None:
    data = dashboard_data(ctx, Filters())
    for row in data.per_line.itertuples():
        scorings = _scorings(row.line)
        assert (row.images_scored, row.images_with_defects) == (len(scorings), sum(n > 0 for _, _, n in scorings))
        assert row.defect_rate == pytest.approx(row.images_with_defects / row.images_scored)
    assert sorted(data.per_line["line"]) == sorted(set(LINES.values()))
    assert data.classes.set_index("class")["detections"].to_dict() == {
        cls: sum(1 for found in SCORES.values() for c, _, _ in found if c == cls) for cls in {c for f in SCORES.values() for c, _, _ in f}
    }
    assert data.histogram["detections"].sum() == sum(len(found) for found in SCORES.values())
    assert "Europe/Berlin" in data.note and "7 frame(s) scored, 6 with defects" in data.note


@pytest.mark.parametrize(
    "flt",
    [Filters(), Filters(class_name="hole"), Filters(min_confidence=0.6), Filters(line="line-A", bucket="shift"),
     Filters(since="2026-11-01T10:30", until="2026-11-02T09:00", bucket="shift")],
)  # fmt: skip
def test_the_per_line_rates_added_up_from_buckets_are_the_stores_per_line_report(ctx: AppContext, flt: Filters) -> None:
    """The dashboard adds its per-line chart up from the time buckets; the store's own per-line query is the oracle."""
    clock = clock_for(ctx, flt)
    rf = report_filter(flt, clock)
    want = defect_rate_per_line(ctx.engine, rf)
    want["line"] = want["line"].fillna(NO_LINE)
    got = dashboard_data(ctx, flt).per_line
    columns = ["line", "images_scored", "images_with_defects", "defect_rate"]
    assert sorted(map(tuple, got[columns].to_numpy().tolist())) == sorted(map(tuple, want[columns].to_numpy().tolist()))
    assert len(got) > 0


def test_time_buckets_are_plant_days_and_shifts(ctx: AppContext) -> None:
    days = dashboard_data(ctx, Filters(bucket="day"))
    assert days.buckets == ["2026-11-01", "2026-11-02"]  # every capture is 08:00-12:00 UTC: the same Berlin day
    per_day = days.defects_over_time.groupby("bucket")["detections"].sum().to_dict()
    assert per_day == {
        day: sum(len(found) for (image, _), found in SCORES.items() if IMAGES[image][1].astimezone(BERLIN.zone).date().isoformat() == day)
        for day in days.buckets
    }
    shifts = dashboard_data(ctx, Filters(bucket="shift"))
    # Berlin is UTC+1 in November: 08:00 UTC is 09:00 local, in shift A (06:00-18:00); a 07:00 UTC capture (d) is 08:00, also A
    assert shifts.buckets == ["2026-11-01 A", "2026-11-02 A"]


def test_a_filter_narrows_every_chart(ctx: AppContext) -> None:
    data = dashboard_data(ctx, Filters(line="line-A", model="fabric-v2"))
    assert list(data.per_line["line"]) == ["line-A"]
    assert int(data.per_line["images_scored"].iloc[0]) == len(_scorings("line-A", "fabric-v2"))
    assert data.histogram["detections"].sum() == sum(n for _, _, n in _scorings("line-A", "fabric-v2"))


def test_typed_times_are_plant_time_unless_they_say_otherwise() -> None:
    flt = report_filter(Filters(since="2026-11-01", until="2026-11-02T06:00"), BERLIN)
    assert flt.since == datetime(2026, 10, 31, 23, tzinfo=timezone.utc)
    assert flt.until == datetime(2026, 11, 2, 5, tzinfo=timezone.utc)
    assert report_filter(Filters(since="2026-11-01T00:00+00:00"), BERLIN).since == datetime(2026, 11, 1, tzinfo=timezone.utc)
    now = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
    assert report_filter(Filters(since="7d"), BERLIN, now).since == now - timedelta(days=7)
    assert report_filter(Filters(line="(all)", camera="", class_name="hole"), BERLIN).class_name == "hole"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (Filters(since="yesterday"), "since: not a time: 'yesterday'"),
        (Filters(since="2026-11-02", until="2026-11-01"), "is not before until"),
        (Filters(min_confidence=1.5), r"within \[0, 1\]"),
    ],
)
def test_bad_filter_fields_name_themselves(fields: Filters, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        report_filter(fields, BERLIN)


def test_min_confidence_field() -> None:
    assert parse_confidence("") is None and parse_confidence(None) is None and parse_confidence(" 0.5 ") == 0.5
    for bad in ("high", "2"):
        with pytest.raises(UsageError, match="min confidence"):
            parse_confidence(bad)


def test_bucket_windows_of_days_and_shifts() -> None:
    assert bucket_window(BERLIN, ["2026-11-01"]) == (
        datetime(2026, 10, 31, 23, tzinfo=timezone.utc),
        datetime(2026, 11, 1, 23, tzinfo=timezone.utc),
    )
    shifts = plant_clock("Europe/Berlin", [{"name": "A", "start": "06:00"}, {"name": "N", "start": "22:00"}], "shift")
    # the night shift started on 2026-03-28 ends at 06:00 local on the 29th, after the spring-forward jump (UTC+2 by then)
    start, end = bucket_window(shifts, ["2026-03-28 N"])
    assert (start, end) == (datetime(2026, 3, 28, 21, tzinfo=timezone.utc), datetime(2026, 3, 29, 4, tzinfo=timezone.utc))
    assert bucket_window(shifts, ["2026-03-28 A", "2026-03-28 N"])[0] == datetime(2026, 3, 28, 5, tzinfo=timezone.utc)
    for bad in ("2026-11-01 X", "L1"):
        with pytest.raises(UsageError, match="bucket"):
            bucket_window(shifts, [bad])


def _listed(found) -> set[tuple[str, str]]:
    return {(Path(row.image).stem, row.model) for row in found.table.itertuples()}


def test_frames_behind_a_line_bar(ctx: AppContext) -> None:
    found = frames_behind(ctx, Filters(), "line", ["line-B"])
    assert _listed(found) == {(image, model) for image, model, n in _scorings("line-B") if n}
    assert found.title.startswith("Frames behind line line-B: 3")
    assert len(found.gallery) == 3
    pictures = {caption.split(" · ")[0]: pixels for pixels, caption in found.gallery}
    assert pictures["gone.png"].std() < 30  # the file was never written: a grey tile saying so, not a crash
    assert pictures["b.png"].shape[1] == 200 and pictures["b.png"].std() > 5  # a real thumbnail (the 200 px frame, boxes drawn)


def test_frames_behind_time_buckets_and_confidence_bins(ctx: AppContext) -> None:
    day = frames_behind(ctx, Filters(), "time", ["2026-11-01"])
    assert _listed(day) == {(image, model) for (image, model), found in SCORES.items() if found and IMAGES[image][1].day == 1}
    top = frames_behind(ctx, Filters(), "histogram", ["0.90", "0.95"])
    assert _listed(top) == {(image, model) for (image, model), found in SCORES.items() if any(c >= 0.9 for _, c, _ in found)}
    assert top.title.startswith("Frames behind confidence 0.90 to 1.00")
    # the filter still applies: line-A's frames of that day only
    assert _listed(frames_behind(ctx, Filters(line="line-A"), "time", ["2026-11-01"])) == {("a", "fabric-v1"), ("a", "fabric-v2")}


def test_selections_that_cannot_be_listed(ctx: AppContext) -> None:
    for chart, chosen, message in (("line", [], "nothing chosen"), ("line", ["line-A", "line-B"], "one line at a time"),
                                   ("line", [NO_LINE], "without a line"), ("histogram", ["high"], "not confidence bins"),
                                   ("pie", ["x"], "unknown chart")):  # fmt: skip
        with pytest.raises(UsageError, match=message):
            selection(ctx, Filters(), chart, chosen)


def test_a_window_narrowed_by_a_bucket_stays_inside_the_filter(ctx: AppContext) -> None:
    flt, _, _ = selection(ctx, Filters(since="2026-11-01T10:00+00:00"), "time", ["2026-11-01"])
    assert flt.since == datetime(2026, 11, 1, 10, tzinfo=timezone.utc) and flt.until == datetime(2026, 11, 1, 23, tzinfo=timezone.utc)
