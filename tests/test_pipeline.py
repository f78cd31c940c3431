"""The pipeline's stages as library functions (inspect_core.pipeline): the ones the CLI, demo and flows share.

The demo end to end runs in tests/cli/test_cli.py (its figures); here each stage's own contract.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspect_core import pipeline
from inspect_core.config import InspectConfig, load_recipe
from inspect_core.data.sources import import_sources
from inspect_core.errors import UsageError
from inspect_core.store import ReportFilter, defect_rate_per_line, open_store
from tests.conftest import write_image
from tests.data.test_dataset_builder import _voc_set


def _recipe(tmp_path: Path, **sets: object) -> InspectConfig:
    return load_recipe(None, [], {"store.url": f"sqlite:///{tmp_path / 'results.db'}", **sets})


def test_nightly_batches_import_once_each_image(tmp_path: Path) -> None:
    first = _voc_set(tmp_path / "labelled" / "2026-11-30", 6)
    second = tmp_path / "labelled" / "2026-12-01"
    shutil.copytree(first, second)  # the same six frames labelled again, plus two new ones
    for name in ("img_001", "img_002"):
        (second / f"{name}.jpg").unlink()
        (second / f"{name}.xml").unlink()
    _voc_set(tmp_path / "extra", 8)
    for name in ("img_006", "img_007"):
        shutil.copy(tmp_path / "extra" / f"{name}.jpg", second / f"{name}.jpg")
        shutil.copy(tmp_path / "extra" / f"{name}.xml", second / f"{name}.xml")
    relabelled = second / "img_003.xml"  # re-reviewed the next day: a different class
    relabelled.write_text(relabelled.read_text().replace("<name>stain</name>", "<name>hole</name>"))
    assert "<name>hole</name>" in relabelled.read_text() and "<name>stain</name>" in (first / "img_003.xml").read_text()
    imported = import_sources([first, second], InspectConfig().dataset)
    assert len(imported.images) == 8  # 6 + 2 new; the 4 repeated frames are kept once
    assert len({image.sha256 for image in imported.images}) == 8
    [again] = [image for image in imported.images if image.image_path.stem == "img_003"]
    assert again.image_path.parent == second and {o.label for o in again.objects} == {"hole"}  # the later review wins


def test_build_stage_reads_the_recipe_and_reports_progress(tmp_path: Path) -> None:
    source = _voc_set(tmp_path / "src", 10)
    config = _recipe(tmp_path, **{"dataset.source": str(source), "dataset.output": str(tmp_path / "built"), "augment.offline": False})
    seen: dict[str, object] = {}
    hooks = pipeline.StageHooks(
        stage=lambda name: seen.setdefault("stage", name), imported=lambda result: seen.update(imported=len(result.images)),
        build_progress=lambda d, t: seen.update(done=d, total=t),
    )
    summary = pipeline.build(config, hooks=hooks)
    assert summary.output == tmp_path / "built" and (tmp_path / "built" / "dataset.json").is_file()
    assert sum(s.source_images for s in summary.splits.values()) == 10
    assert seen["stage"] == "build" and seen["imported"] == seen["done"] == seen["total"] == 10


def test_train_and_evaluate_refuse_a_folder_that_is_not_a_built_dataset(tmp_path: Path) -> None:
    config = _recipe(tmp_path, **{"dataset.output": str(tmp_path / "missing")})
    with pytest.raises(UsageError, match="not a built dataset; build it first"):
        pipeline.train(config)
    with pytest.raises(UsageError, match="not a built dataset"):
        pipeline.evaluate(config)


def test_score_stage_records_the_line_and_refuses_a_camera_without_one(tmp_path: Path) -> None:
    frames = [write_image(tmp_path / "frames" / f"f{i}.png", 64, 64, seed=i) for i in range(3)]
    config = _recipe(tmp_path, **{"score.num_workers": 0, "score.max_new_tokens": 16})
    with pytest.raises(UsageError, match="go together"):
        pipeline.score(config, frames, camera="cam-9")
    summary = pipeline.score(config, frames, camera="cam-9", line="L9")
    assert summary.scored == 3
    per_line = defect_rate_per_line(open_store(config.store.url), ReportFilter())
    assert per_line["line"].tolist() == ["L9"] and int(per_line["images_scored"].iloc[0]) == 3


def test_another_input_size_is_another_model_version_and_scores_again(tmp_path: Path) -> None:
    """Same weights at 128 px answer differently than at their saved 256 px: not 'already scored'."""
    from inspect_core.inference.scoring import register_model_dir
    from inspect_core.model.trained_model import resolve_trained_source
    from inspect_core.store import model_version

    frames = [write_image(tmp_path / "frames" / f"f{i}.png", 64, 64, seed=i) for i in range(2)]
    config = _recipe(tmp_path, **{"score.num_workers": 0, "score.max_new_tokens": 16})
    saved = pipeline.score(config, frames)
    again = pipeline.score(config, frames)
    smaller = pipeline.score(config.model_copy(update={"model": config.model.model_copy(update={"image_size": 128})}), frames)
    assert (saved.scored, again.scored, again.skipped, smaller.scored) == (2, 0, 2, 2)
    assert saved.model_version == again.model_version != smaller.model_version
    engine = open_store(config.store.url)
    tiny = str(resolve_trained_source("tiny"))
    ids = {size: register_model_dir(engine, tiny, size)[0] for size in (None, 256, 128)}  # finds the versions, creates none
    assert ids[None] == ids[256] != ids[128]
    assert (model_version(engine, ids[256]).metrics["image_size"], model_version(engine, ids[128]).metrics["image_size"]) == (256, 128)
