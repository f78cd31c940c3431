"""The Review and Export pages' work without a browser, over the seeded store; each write checked in the tables themselves."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from inspect_app.context import AppContext
from inspect_app.dashboard import Filters, dashboard_data
from inspect_app.export import batch_folder, export, plan, summary
from inspect_app.review import FrameView, ShownBox, edits_to_actions, load_frame, queue, save, verdict_actions
from inspect_app.review_page import reviewer_name
from inspect_core.config import load_recipe
from inspect_core.data.importers import import_dataset
from inspect_core.errors import BadInputError, UsageError
from inspect_core.store.browse import model_versions, recent_images
from inspect_core.store.reviews import ReviewAction
from tests.conftest import write_image
from tests.store.seeded import SCORES, Store, seed_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return seed_store(f"sqlite:///{tmp_path / 'results.db'}", tmp_path)


@pytest.fixture
def ctx(store: Store, tmp_path: Path) -> AppContext:
    return AppContext(store.engine, load_recipe(None, []), samples=None, labelled_root=tmp_path / "labelled")


def frame_key(ctx: AppContext, image: str, model: str) -> tuple[int, int]:
    images = {
        Path(p).stem: int(i) for i, p in zip(recent_images(ctx.engine, 100)["image_id"], recent_images(ctx.engine, 100)["image_path"])
    }
    models = {v.name: int(v.id) for v in model_versions(ctx.engine)}
    return images[image], models[model]


def reviews_in_sql(store: Store) -> list[tuple]:
    with sa.create_engine(store.url).connect() as connection:
        return connection.exec_driver_sql(
            "SELECT reviewer, action, detection_id, added_review_id, class_name, x1, y1, x2, y2 FROM reviews ORDER BY id"
        ).all()


def test_a_frame_for_review_shows_its_standing_boxes(ctx: AppContext) -> None:
    view = load_frame(ctx, *frame_key(ctx, "a", "fabric-v1"))
    assert view.pixels.shape == (100, 200, 3) and view.scale == 1.0 and view.version == 0
    assert sorted((b.label, b.box) for b in view.shown) == sorted((c, tuple(map(float, box))) for c, _, box in SCORES["a", "fabric-v1"])
    assert list(view.table["verdict"]) == ["undecided", "undecided"]
    assert list(view.table["confidence"]) == [0.9, 0.4]  # most confident first
    assert {"hole", "stain", "knot"} <= set(view.classes)
    value = view.annotator_value()
    assert value["image"] is view.pixels and len(value["boxes"]) == 2 and all(len(b["color"]) == 3 for b in value["boxes"])
    assert "a.png" in view.title and "line-A" in view.title and "unreviewed" in view.title


def test_a_frame_whose_file_is_gone_is_a_clear_error(ctx: AppContext) -> None:
    with pytest.raises(BadInputError, match="gone.png"):
        load_frame(ctx, *frame_key(ctx, "gone", "fabric-v2"))


def test_accept_reject_relabel_each_persist(ctx: AppContext, store: Store) -> None:
    view = load_frame(ctx, *frame_key(ctx, "a", "fabric-v1"))
    hole, stain = (int(view.table.loc[view.table["class"] == c, "detection_id"].iloc[0]) for c in ("hole", "stain"))
    saved = save(ctx, view, "ana", verdict_actions(view, "accept", [hole]))
    assert saved.view.version == 1 and not saved.stale and "1 accept" in saved.message
    saved = save(ctx, saved.view, "ana", verdict_actions(saved.view, "relabel", [stain], "knot"))
    assert list(saved.view.table["verdict"]) == ["accept", "relabel"] and list(saved.view.table["reviewed_class"]) == ["hole", "knot"]
    saved = save(ctx, saved.view, "ben", verdict_actions(saved.view, "reject", [stain]))
    assert "complete" in saved.view.title
    assert [(r[0], r[1], r[2], r[4]) for r in reviews_in_sql(store)] == [
        ("ana", "accept", hole, "hole"), ("ana", "relabel", stain, "knot"), ("ben", "reject", stain, None)
    ]  # fmt: skip


def test_verdicts_that_cannot_be_made(ctx: AppContext) -> None:
    view = load_frame(ctx, *frame_key(ctx, "a", "fabric-v1"))
    for args, message in ((("reject", []), "choose a box"), (("relabel", [view.table["detection_id"][0]], " "), "needs the new class"),
                          (("accept", [999_999]), "not boxes of this frame"), (("approve", []), "accept, reject or relabel")):  # fmt: skip
        with pytest.raises(UsageError, match=message):
            verdict_actions(view, *args)
    assert [a.detection_id for a in verdict_actions(view, "accept", [])] == list(view.table["detection_id"])  # every undecided one


def _view(scale: float = 1.0) -> FrameView:
    import numpy as np
    import pandas as pd

    shown = (ShownBox("hole", (10.0, 10.0, 50.0, 40.0), detection_id=1, model_class="hole"),
             ShownBox("knot", (100.0, 20.0, 150.0, 60.0), detection_id=2, model_class="stain"),
             ShownBox("tear", (60.0, 60.0, 90.0, 90.0), added_review_id=7))  # fmt: skip
    return FrameView(1, 1, 3, np.zeros((100, 200, 3), np.uint8), scale, shown, pd.DataFrame(), "", ["hole", "knot", "stain", "tear"])


def _returned(view: FrameView, moves: dict[int, tuple], labels: dict[int, str], dropped: set[int], added: list[dict]) -> list[dict]:
    boxes = []
    for i, b in enumerate(view.shown):
        if i in dropped:
            continue
        x1, y1, x2, y2 = moves.get(i, tuple(round(v * view.scale) for v in b.box))
        boxes.append({"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2, "label": labels.get(i, b.label)})
    return boxes + added


def test_annotator_edits_become_review_actions() -> None:
    view = _view()
    assert edits_to_actions(view, _returned(view, {}, {}, set(), [])) == []  # untouched: nothing to say
    actions = edits_to_actions(view, _returned(view, {}, {0: "stain", 1: "stain"}, {2}, [
        {"xmin": 5, "ymin": 70, "xmax": 30, "ymax": 95, "label": "hole"}]))  # fmt: skip
    assert actions == [
        ReviewAction("relabel", detection_id=1, class_name="stain"),
        ReviewAction("accept", detection_id=2),  # relabelled back to the model's own class
        ReviewAction("reject", added_review_id=7),
        ReviewAction("add", class_name="hole", box=(5.0, 70.0, 30.0, 95.0)),
    ]
    moved = edits_to_actions(view, _returned(view, {0: (20, 10, 60, 40)}, {}, set(), []))
    assert moved == [ReviewAction("reject", detection_id=1), ReviewAction("add", class_name="hole", box=(20.0, 10.0, 60.0, 40.0))]
    with pytest.raises(UsageError, match="drawn box has no class"):
        edits_to_actions(view, _returned(view, {}, {}, set(), [{"xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9, "label": ""}]))


def test_edits_on_a_shrunk_frame_map_back_to_image_pixels() -> None:
    view = _view(scale=0.25)  # a large frame sent at a quarter of its size
    actions = edits_to_actions(view, _returned(view, {}, {}, set(), [{"xmin": 10, "ymin": 5, "xmax": 20, "ymax": 15, "label": "tear"}]))
    assert actions == [ReviewAction("add", class_name="tear", box=(40.0, 20.0, 80.0, 60.0))]


def test_a_large_frame_is_shrunk_for_the_browser(ctx: AppContext, store: Store) -> None:
    write_image(store.frames / "b.png", width=4000, height=400, seed=9)  # the file grew since scoring (same store row)
    view = load_frame(ctx, *frame_key(ctx, "b", "fabric-v1"))
    assert view.scale == pytest.approx(0.4) and view.pixels.shape == (160, 1600, 3)
    box = view.annotator_value()["boxes"][0]
    assert (box["xmin"], box["xmax"]) == pytest.approx((20 * 0.4, 60 * 0.4))


def test_a_stale_write_is_refused_and_the_frame_reloaded(ctx: AppContext, store: Store) -> None:
    key = frame_key(ctx, "d", "fabric-v2")
    first, second = load_frame(ctx, *key), load_frame(ctx, *key)  # two reviewers open the same frame
    assert not save(ctx, first, "ana", [ReviewAction("clean")]).stale
    before = reviews_in_sql(store)
    refused = save(ctx, second, "ben", verdict_actions(second, "accept", []))
    assert refused.stale and "Not saved" in refused.message and "ana" in refused.message
    assert reviews_in_sql(store) == before  # the first write stays, nothing of the second was stored
    assert refused.view.version == 1 and "clean" in refused.view.title  # reloaded: ben now sees ana's verdict


def test_queue_puts_unreviewed_frames_first_and_follows_the_filter(ctx: AppContext) -> None:
    everything = queue(ctx, Filters(), "all")
    assert len(everything) == len(SCORES)
    view = load_frame(ctx, *frame_key(ctx, "e", "fabric-v2"))
    save(ctx, view, "ana", verdict_actions(view, "accept", []))
    to_review = queue(ctx, Filters(), "to review")
    assert len(to_review) == len(SCORES) - 1 and "e.png" not in set(to_review["image"])
    assert list(queue(ctx, Filters(), "reviewed")["image"]) == ["e.png"]
    assert list(queue(ctx, Filters(), "all")["image"])[-1] == "e.png"  # reviewed after unreviewed
    assert set(queue(ctx, Filters(line="line-A"), "all")["line"]) == {"line-A"}
    with pytest.raises(UsageError, match="show"):
        queue(ctx, Filters(), "some")


def test_reviewed_precision_reaches_the_dashboard(ctx: AppContext) -> None:
    view = load_frame(ctx, *frame_key(ctx, "a", "fabric-v1"))
    hole, stain = (int(view.table.loc[view.table["class"] == c, "detection_id"].iloc[0]) for c in ("hole", "stain"))
    save(ctx, view, "ana", [ReviewAction("accept", detection_id=hole), ReviewAction("reject", detection_id=stain)])
    precision = dashboard_data(ctx, Filters()).precision.set_index("class")
    assert precision.loc["hole", "precision"] == 1.0 and precision.loc["stain", "precision"] == 0.0


def test_export_writes_a_voc_batch_with_exactly_the_reviewed_boxes(ctx: AppContext, store: Store) -> None:
    with sa.create_engine(store.url).begin() as connection:  # the seed's hashes are of names; the export checks file contents
        for image in store.frames.glob("*.png"):
            real = hashlib.sha256(image.read_bytes()).hexdigest()
            connection.exec_driver_sql("UPDATE images SET sha256 = ? WHERE path = ?", (real, str(image)))
    view = load_frame(ctx, *frame_key(ctx, "a", "fabric-v1"))
    hole, stain = (int(view.table.loc[view.table["class"] == c, "detection_id"].iloc[0]) for c in ("hole", "stain"))
    save(ctx, view, "ana", [ReviewAction("accept", detection_id=hole), ReviewAction("relabel", detection_id=stain, class_name="knot"),
                            ReviewAction("add", class_name="tear", box=(150.5, 60.25, 190.0, 95.0))])  # fmt: skip
    clean = load_frame(ctx, *frame_key(ctx, "e", "fabric-v2"))
    save(ctx, clean, "ben", [ReviewAction("clean")])
    partial = load_frame(ctx, *frame_key(ctx, "d", "fabric-v2"))
    save(ctx, partial, "ben", verdict_actions(partial, "accept", [int(partial.table["detection_id"].iloc[0])]))
    planned = plan(ctx, "2026-11-21")
    assert (planned.complete, planned.partial) == (2, 1) and planned.out == ctx.labelled_root / "2026-11-21"
    assert planned.command.startswith("inspect-core review export --db sqlite:///") and planned.command.endswith(
        "--out " + str(planned.out)
    )
    windowed = plan(ctx, "2026-11-21", since="2026-11-02", model="(all)")
    assert windowed.command.endswith("--since 2026-11-02T00:00:00+00:00") and windowed.complete == 1  # only e: a and d are earlier
    result = export(ctx, "2026-11-21")
    assert result.frames == 2 and result.clean_frames == 1 and "Wrote 2 frame(s)" in summary(result)
    imported = {Path(i.image_path).name.split("-")[0]: i for i in import_dataset(planned.out, "voc").images}
    assert sorted((o.label, o.box) for o in imported["a"].objects) == [
        ("hole", (10.0, 10.0, 50.0, 40.0)), ("knot", (100.0, 20.0, 150.0, 60.0)), ("tear", (150.5, 60.25, 190.0, 95.0))
    ]  # fmt: skip
    assert imported["e"].objects == ()  # marked clean: a negative example
    with pytest.raises(UsageError, match="exists"):
        export(ctx, "2026-11-21")
    assert export(ctx, "2026-11-21", overwrite=True).frames == 2


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", "", "x" * 101, "/etc", "2026 11 21"])
def test_batch_names_stay_inside_the_labelled_root(ctx: AppContext, name: str) -> None:
    with pytest.raises(UsageError, match="batch name"):
        batch_folder(ctx, name)


def test_the_reviewer_is_the_login_when_there_is_one() -> None:
    assert reviewer_name("ana", None) == "ana"
    assert reviewer_name("someone else", SimpleNamespace(username="qe")) == "qe"
    assert reviewer_name(" ben ", SimpleNamespace(username=None)) == "ben"
    with pytest.raises(UsageError, match="enter your name"):
        reviewer_name("  ", SimpleNamespace(username=None))
