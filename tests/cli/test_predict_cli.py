"""`inspect-core predict`: real detections on the committed samples, annotated images, and no database at all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from inspect_core.cli import app
from tests.inference.test_predict import SAMPLES, iou, voc_boxes

runner = CliRunner()
FAST = ["--set", "score.max_new_tokens=64", "--precision", "fp32"]


@pytest.fixture
def no_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every way into the results store fails the test; the working directory is an empty tmp folder."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("predict opened the results store")

    for target in (
        "inspect_core.store.open_store",
        "inspect_core.store.opening.open_store",
        "inspect_core.store.engine.create_store_engine",
    ):
        monkeypatch.setattr(target, refuse)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_predict_writes_annotated_images_and_json_without_a_database(tmp_path: Path, no_store: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        for suffix in (".jpg", ".xml"):
            shutil.copy(SAMPLES / f"fabric_0000{i}{suffix}", frames / f"fabric_0000{i}{suffix}")
    out = tmp_path / "annotated"
    args = ["predict", "--model", "tiny", "--images", str(frames / "fabric_00000.jpg"), "--images", str(frames / "fabric_0000[12].jpg")]
    result = runner.invoke(app, [*args, "--threshold", "0.05", "--out", str(out), "--json", *FAST])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["task"] == "od" and report["thresholds"]["default"] == 0.05 and len(report["images"]) == 3
    matched = 0
    for row in report["images"]:
        source = Path(row["image"])
        labelled = voc_boxes(source.with_suffix(".xml"))
        matched += any(d["label"] == label and iou(d["box"], box) >= 0.5 for d in row["detections"] for label, box in labelled)
        annotated = Path(row["annotated"])
        assert annotated.parent == out and annotated.name == f"{source.stem}.png"
        drawn, original = cv2.imread(str(annotated)), cv2.imread(str(source))
        assert drawn.shape == original.shape
        changed = np.abs(drawn.astype(int) - original.astype(int)).sum(axis=2) > 60  # beyond the JPEG re-encoding noise
        assert changed.any() == bool(row["detections"])  # boxes drawn exactly where something was found
    assert matched >= 1  # a real detection on a labelled defect, not just any box
    assert not list(tmp_path.rglob("*.db*")) and not (no_store / "runs").exists()


def test_predict_prints_a_table_and_the_dense_caption(no_store: Path) -> None:
    image = str(SAMPLES / "fabric_00000.jpg")
    table = runner.invoke(app, ["predict", "--images", image, "--threshold", "0.05", *FAST], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "hole" in table.stdout and "fabric_00000.jpg" in table.stdout
    dense = runner.invoke(app, ["predict", "--images", image, "--task", "dense", "--threshold", "0", "--json", *FAST])
    assert dense.exit_code == 0, dense.output
    (row,) = json.loads(dense.stdout)["images"]
    assert row["text"] and "<loc_" not in row["text"] and row["annotated"] is None
    assert not list(no_store.iterdir())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "grounding"], "--task grounding needs --phrase"),
        (["--task", "caption"], "--task 'caption'"),
        (["--threshold", "2"], "--threshold"),
    ],
    ids=["grounding-without-phrase", "unknown-task", "threshold-range"],
)
def test_usage_errors_exit_2_before_loading_a_model(argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, no_store: Path) -> None:
    def no_model(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the model was loaded for a call that can only fail")

    monkeypatch.setattr("inspect_core.inference.predict.load_predictor", no_model)
    result = runner.invoke(app, ["predict", "--images", str(SAMPLES / "fabric_00000.jpg"), *argv])
    assert result.exit_code == 2 and message in " ".join(result.output.split())


def test_an_unusable_image_is_named_the_others_still_predicted_and_exit_is_3(tmp_path: Path, no_store: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(SAMPLES / "fabric_00000.jpg", frames / "good.jpg")
    (frames / "broken.png").write_text("not an image")
    result = runner.invoke(app, ["predict", "--images", str(frames), "--threshold", "0.05", "--json", *FAST])
    assert result.exit_code == 3
    rows = {Path(r["image"]).name: r for r in json.loads(result.stdout)["images"]}
    assert rows["good.jpg"]["detections"] and "not an image" in rows["broken.png"]["error"]
    assert "broken.png" in result.stderr
    missing = runner.invoke(app, ["predict", "--images", str(tmp_path / "nope"), *FAST])
    assert missing.exit_code == 2 and "nope" in missing.stderr


def test_a_model_folder_that_is_not_there_is_named(no_store: Path) -> None:
    result = runner.invoke(app, ["predict", "--images", str(SAMPLES / "fabric_00000.jpg"), "--model", "runs/nope/best"])
    assert result.exit_code == 2 and "model 'runs/nope/best': no such folder" in " ".join(result.stderr.split())
