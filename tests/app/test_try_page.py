"""The Try page's work without a browser: the tiny model on picked and uploaded frames, checks on uploads, nothing stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspect_app.context import SAMPLES, AppContext
from inspect_app.try_page import TABLE_COLUMNS, needs_tiles, try_frame
from inspect_core.config import load_recipe
from inspect_core.errors import BadInputError, UsageError
from inspect_core.inference.predict import load_image
from inspect_core.store import ReportFilter, class_summary, promote_model
from inspect_core.store.browse import model_versions, recent_images
from tests.conftest import write_image
from tests.hostile.scoring_helpers import png_of_size
from tests.store.seeded import Store, seed_store

QUICK = ["score.max_new_tokens=40", "score.num_workers=0"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return seed_store(f"sqlite:///{tmp_path / 'results.db'}", tmp_path)


@pytest.fixture
def ctx(store: Store) -> AppContext:
    return AppContext(store.engine, load_recipe(None, QUICK), model="tiny")


def _try(ctx: AppContext, **given) -> object:
    fields = {"upload": None, "picked": None, "task": "<OD>", "phrase": None, "operating": False, "threshold": 0.0,
              "model": "--model tiny"} | given  # fmt: skip
    return try_frame(ctx, **fields)


def test_line_scan_strips_are_tiled() -> None:
    assert needs_tiles(4096, 256) and needs_tiles(256, 4096) and needs_tiles(768, 256)
    assert not needs_tiles(1024, 768) and not needs_tiles(700, 256)
    assert needs_tiles(512, 512, always=True)


def test_a_sample_frame_gets_the_models_boxes_drawn_and_tabled(ctx: AppContext) -> None:
    before = (class_summary(ctx.engine, ReportFilter()), len(model_versions(ctx.engine)), len(recent_images(ctx.engine)))
    result = _try(ctx, picked="sample:fabric_00000.jpg")
    pixels = load_image(SAMPLES / "fabric_00000.jpg")
    expected = ctx.predictor("--model tiny").predict([pixels], "od", None, 0.0)[0]  # the engine itself, called directly
    assert list(result.table.columns) == TABLE_COLUMNS
    assert len(expected.detections) > 0 and len(result.table) == len(expected.detections)
    assert list(result.table["class"]) == [d.label for d in expected.detections]
    assert result.table["confidence"].tolist() == [round(d.score, 3) for d in expected.detections]
    assert result.image.shape == pixels.shape and not np.array_equal(result.image, pixels)  # boxes drawn on a copy
    x1, y1, x2, y2 = (int(round(v)) for v in expected.detections[0].box)
    assert not np.array_equal(result.image[y1, x1:x2], pixels[y1, x1:x2])  # on the first box's top edge
    assert result.text == ""
    assert "fabric_00000.jpg: 384x384" in result.summary and "confidence >= 0.00" in result.summary and " s" in result.summary
    after = (class_summary(ctx.engine, ReportFilter()), len(model_versions(ctx.engine)), len(recent_images(ctx.engine)))
    assert after[0].equals(before[0]) and after[1:] == before[1:]  # nothing written to the store
    strict = _try(ctx, picked="sample:fabric_00000.jpg", threshold=1.0)
    assert strict.table.empty  # the slider keeps only boxes at or above it


def test_text_tasks_show_their_caption(ctx: AppContext) -> None:
    dense = _try(ctx, picked="sample:fabric_00000.jpg", task="<DENSE_REGION_CAPTION>")
    assert dense.text and len(dense.table) > 0
    grounded = _try(ctx, picked="sample:fabric_00000.jpg", task="<CAPTION_TO_PHRASE_GROUNDING>", phrase="a hole")
    assert len(grounded.table) > 0 and grounded.text


def test_a_registered_frame_is_picked_by_its_store_id(ctx: AppContext, store: Store) -> None:
    newest = recent_images(ctx.engine, 1).iloc[0]  # 'gone' was never written: picking it is a clear error
    with pytest.raises(BadInputError, match="gone.png"):
        _try(ctx, picked=f"store:{newest.image_id}")
    second = recent_images(ctx.engine, 2).iloc[1]
    result = _try(ctx, picked=f"store:{second.image_id}")
    assert "e.png: 200x100" in result.summary


def test_a_line_scan_strip_upload_is_tiled(ctx: AppContext, tmp_path: Path) -> None:
    strip = write_image(tmp_path / "strip.png", width=1024, height=128, seed=5, rects=[(300, 40, 340, 80)])
    result = _try(ctx, upload=str(strip))
    assert "strip.png: 1024x128, tiled" in result.summary
    assert result.image.shape == (128, 1024, 3)
    assert all(0 <= x <= 1024 and 0 <= y <= 128 for x, y in zip(result.table["x2"], result.table["y2"]))  # boxes in strip pixels


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("not an image at all"), "upload x.png: cannot decode image x.png: not an image file"),
        (lambda p: p.write_bytes(b""), "upload x.png: image x.png is an empty file"),
        (lambda p: png_of_size(p, 20_000, 20_000), "decompression bomb"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "upload x.png: cannot decode image x.png"),
    ],
    ids=["text", "empty", "bomb", "truncated"],
)
def test_bad_uploads_are_refused_with_a_clear_message(ctx: AppContext, tmp_path: Path, make, message: str) -> None:
    upload = tmp_path / "x.png"
    make(upload)
    with pytest.raises(BadInputError, match=message):
        _try(ctx, upload=str(upload))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "upload an image or pick one first"),
        ({"picked": "sample:fabric_00000.jpg", "task": "<CAPTION>"}, "pick one of <OD>"),
        ({"picked": "sample:fabric_00000.jpg", "task": "<CAPTION_TO_PHRASE_GROUNDING>", "phrase": "  "}, "needs a phrase"),
        ({"picked": "sample:fabric_00000.jpg", "model": "/etc"}, "not one the app offers"),
        ({"picked": "sample:../../etc/passwd"}, "not one the app offers"),
        ({"picked": "/etc/passwd"}, "not one the app offers"),
        ({"picked": "store:999999"}, "not one the app offers"),
        ({"picked": "store:1 OR 1=1"}, "not one the app offers"),
    ],
)
def test_requests_the_app_did_not_offer_are_refused(ctx: AppContext, given: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _try(ctx, **given)


def test_model_choices_offer_the_given_model_then_the_champion_then_the_registry(store: Store) -> None:
    config = load_recipe(None, QUICK)
    versions = {v.name: v for v in model_versions(store.engine)}
    assert list(AppContext(store.engine, config).model_choices()) == ["fabric-v2", "fabric-v1", "recipe model (tiny)"]
    promote_model(store.engine, versions["fabric-v1"].id)
    choices = AppContext(store.engine, config, model="runs/best").model_choices()
    assert list(choices) == ["--model runs/best", "champion (fabric-v1)", "fabric-v2", "fabric-v1", "recipe model (tiny)"]
    assert choices["champion (fabric-v1)"] == versions["fabric-v1"].path
    assert next(iter(AppContext(store.engine, config, model="champion").model_choices())) == "champion (fabric-v1)"
