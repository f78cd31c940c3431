"""The held-out generator family: independent code, labels that match what was drawn, a VOC set `dataset build` imports."""

from __future__ import annotations

import ast
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspect_core.cli import app
from inspect_core.data.annotations import check_box
from inspect_core.data.synth.heldout import CLASSES, generate_heldout
from inspect_core.data.synthetic_fabric import DEFECT_CLASSES, generate_sample
from tests.data.synth_oracle import BoxCheck, check_boxes

SYNTH = Path(__file__).resolve().parents[2] / "inspect_core" / "data" / "synth"
HELDOUT_MODULES = ("heldout", "heldout_cloth", "heldout_defects")  # under inspect_core.data.synth
PROJECT_GENERATORS = ("inspect_core.data.synthetic_fabric", *(f"inspect_core.data.synth.{m}" for m in (
    "cloth", "defects", "randomised", "random_cloth", "random_defects", "photo")))  # fmt: skip
SEED, SIZE, BATCH = 31, 256, 40


@pytest.fixture(scope="module")
def batch() -> list:
    return [generate_heldout(SEED, index, SIZE) for index in range(BATCH)]


def test_heldout_modules_import_nothing_of_the_project_generators() -> None:
    for name in HELDOUT_MODULES:
        tree = ast.parse((SYNTH / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        inside = {m for m in imported if m.startswith("inspect_core")}
        assert inside <= {"inspect_core.data.annotations", *(f"inspect_core.data.synth.{m}" for m in HELDOUT_MODULES)}, (name, inside)
    # And at run time: a fresh interpreter that generates a held-out image has loaded none of them.
    code = ("import sys; from inspect_core.data.synth.heldout import generate_heldout; generate_heldout(0, 0, 64); "
            "print(' '.join(m for m in sys.modules if m.startswith('inspect_core')))")  # fmt: skip
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "inspect_core.data.synth.heldout" in loaded
    assert not [m for m in loaded if m in PROJECT_GENERATORS]


def test_same_label_set_as_the_project() -> None:
    assert set(CLASSES) == set(DEFECT_CLASSES)


def test_deterministic_and_reached_through_generate_sample() -> None:
    first = generate_heldout(5, 9, 128)
    again = generate_sample(5, 9, 128, style="heldout")
    assert np.array_equal(first.image, again.image) and first.objects == again.objects and first.caption == again.caption
    assert not np.array_equal(first.image, generate_heldout(5, 10, 128).image)


def test_batch_covers_every_class_and_texture(batch: list) -> None:
    assert {o.label for s in batch for o in s.objects} == set(CLASSES)
    assert {s.texture for s in batch} == {"canvas", "felt", "knit", "cord"}
    assert any(not s.objects for s in batch)
    for sample in batch:
        assert sample.image.shape == (SIZE, SIZE, 3) and sample.image.dtype == np.uint8
        for obj in sample.objects:
            assert check_box(obj.box, SIZE, SIZE, "heldout", obj.label) == obj.box
            if obj.label == "broken_yarn":
                assert min(obj.box[2] - obj.box[0], obj.box[3] - obj.box[1]) >= 0.03 * SIZE - 1e-9


def test_boxes_match_the_pixels_that_changed(batch: list) -> None:
    result = BoxCheck()
    for index, sample in enumerate(batch):
        clean = generate_heldout(SEED, index, SIZE, max_defects=0)
        assert clean.objects == () and clean.texture == sample.texture
        check_boxes(sample.image, clean.image, sample.objects, 16, 12, f"image {index}", result)
    assert not result.problems, "\n".join(result.problems)
    assert {label for label, _iou in result.checked} == set(CLASSES) and len(result.checked) >= 30
    assert statistics.median(iou for _label, iou in result.checked) >= 0.7


def test_cli_writes_a_heldout_voc_set_that_dataset_build_imports(tmp_path: Path) -> None:
    runner = CliRunner()
    voc, built = tmp_path / "heldout_voc", tmp_path / "built"
    result = runner.invoke(app, ["dataset", "synth", "--style", "heldout", "--out", str(voc), "--count", "6", "--size", "128"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in voc.glob("*.xml")) == [f"heldout_{i:05d}.xml" for i in range(6)]
    assert b"inspect-core synthetic (heldout)" in (voc / "heldout_00000.xml").read_bytes()
    result = runner.invoke(app, ["dataset", "build", "--images", str(voc), "--out", str(built)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((built / "dataset.json").read_text())
    assert set(manifest["classes"]) <= set(CLASSES) and manifest["classes"]
    images = sum(len(list((built / split).glob("*.jpg"))) for split in ("train", "valid", "test") if (built / split).is_dir())
    assert images == 6


@pytest.mark.parametrize("args", [["--style", "woven"], ["--width", "1024"]])
def test_cli_rejects_bad_style_options_as_usage_errors(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(app, ["dataset", "synth", "--out", str(tmp_path / "x"), "--count", "1", "--size", "64", *args])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "x").exists()
