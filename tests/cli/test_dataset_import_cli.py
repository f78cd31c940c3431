"""``dataset build`` with a plant's export (issue 15): --class-map, --data-yaml, linked splits, --split/--resplit, warnings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inspect_core.cli import main
from inspect_core.cli.dataset import _shares
from inspect_core.config import ConfigError, SplitRatios, load_recipe
from inspect_core.errors import UsageError
from tests.data.importers.test_plant_exports import DATA_YAML, ONE_BASED, export


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The exit code, stdout and stderr (line breaks folded) of ``inspect-core ARGS``."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


def build(capsys: pytest.CaptureFixture[str], src: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "dataset", "build", "--images", str(src), "--out", str(out), "--json", *extra)


def objects(summary: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for split in summary["splits"].values():
        for name, count in split["objects"].items():
            counts[name] = counts.get(name, 0) + count
    return counts


def test_a_one_based_export_fails_clearly_without_the_flag_and_imports_with_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src, out = export(tmp_path / "export"), tmp_path / "out"
    for extra in ((), ("--skip-invalid",)):
        code, _out, err = build(capsys, src, out, *extra)
        assert code == 3 and "--class-map '1:cut,2:hole'" in err, err
        assert not out.exists()
    code, stdout, err = build(capsys, src, out, "--class-map", "1:cut,2:hole")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["classes"] == ["cut", "hole"]
    rows = [c for images in ONE_BASED.values() for ids in images for c in ids]
    assert objects(summary) == {"cut": rows.count(1), "hole": rows.count(2)}
    assert json.loads((out / "dataset.json").read_text())["classes"] == ["cut", "hole"]


def test_a_class_map_file_and_a_bad_map(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = export(tmp_path / "export")
    mapping = tmp_path / "map.yaml"
    mapping.write_text("1: cut\n2: hole\n")
    assert build(capsys, src, tmp_path / "out", "--class-map", str(mapping))[0] == 0
    code, _out, err = build(capsys, src, tmp_path / "out2", "--class-map", "cut")
    assert code == 2 and "--class-map cut: no such file" in err
    code, _out, err = build(capsys, src, tmp_path / "out3", "--class-map", "1:cut")
    assert code == 3 and "line 1" in err and "id 2" in err and "not in the class map" in err


def test_data_yaml_in_a_sibling_config_folder_and_the_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = export(tmp_path / "plant" / "export", {"train": [[0]], "valid": [[1]]}, data_yaml=None)
    code, _out, err = build(capsys, src, tmp_path / "out")
    assert code == 3 and "cannot detect the label format" in err and "--data-yaml" in err
    elsewhere = tmp_path / "names.yaml"
    elsewhere.write_text(DATA_YAML)
    code, stdout, err = build(capsys, src, tmp_path / "out", "--data-yaml", str(elsewhere))
    assert code == 0 and json.loads(stdout)["classes"] == ["cut", "hole"], err
    (tmp_path / "plant" / "config").mkdir()
    (tmp_path / "plant" / "config" / "data.yaml").write_text(DATA_YAML)
    code, stdout, err = build(capsys, src, tmp_path / "out", "--overwrite")
    assert code == 0 and objects(json.loads(stdout)) == {"cut": 1, "hole": 1}, err


def test_linked_split_folders_build(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    nas = export(tmp_path / "nas", {"train": [[1], [0]], "valid": [[0]], "test": [[1]]}, data_yaml=None)
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.yaml").write_text(DATA_YAML)
    for split in ("train", "valid", "test"):
        os.symlink(nas / split, src / split)
    code, stdout, err = build(capsys, src, tmp_path / "out")
    assert code == 0, err
    assert {s: v["source_images"] for s, v in json.loads(stdout)["splits"].items()} == {"train": 2, "valid": 1, "test": 1}


def test_a_source_without_images_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "data.yaml").write_text(DATA_YAML)
    code, _out, err = build(capsys, tmp_path / "src", tmp_path / "out")
    assert code == 3 and "no image imported" in err


def test_split_shares_on_the_real_set(capsys: pytest.CaptureFixture[str], real_fabric: Path, tmp_path: Path) -> None:
    source = real_fabric / "roboflow_fabric_yolo"  # flat: every image is split by the shares
    code, stdout, err = build(capsys, source, tmp_path / "out", "--split", "0.5,0.25,0.25")
    assert code == 0, err
    counts = {s: v["source_images"] for s, v in json.loads(stdout)["splits"].items()}
    assert sum(counts.values()) == 22 and 5 <= counts["valid"] <= 6 and 5 <= counts["test"] <= 6
    assert build(capsys, source, tmp_path / "bad", "--split", "0.5,0.5")[0] == 2


def test_resplit_on_the_real_set_linked_in_as_one_train_folder(
    capsys: pytest.CaptureFixture[str], real_fabric: Path, tmp_path: Path
) -> None:
    """The real photos linked in as a whole train folder (by path, never copied): kept as train they leave valid and test empty,
    with a warning; --resplit spreads them by --split."""
    source = real_fabric / "roboflow_fabric_yolo"
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(source, src / "train")
    names = ("--data-yaml", str(source / "data.yaml"))
    code, _out, err = run(capsys, "dataset", "build", "--images", str(src), "--out", str(tmp_path / "kept"), *names)  # a table, no --json
    assert code == 0, err
    kept = json.loads((tmp_path / "kept" / "dataset.json").read_text())
    assert {s: v["source_images"] for s, v in kept["splits"].items()} == {"train": 22, "valid": 0, "test": 0}
    assert "warning: valid has 0 source image(s)" in err and "warning: test has 0 source image(s)" in err
    assert any(w.startswith("valid has 0 source image(s)") for w in kept["warnings"])
    code, stdout, err = build(capsys, src, tmp_path / "resplit", *names, "--resplit", "--split", "0.6,0.2,0.2")
    assert code == 0, err
    summary = json.loads(stdout)
    counts = {s: v["source_images"] for s, v in summary["splits"].items()}
    assert sum(counts.values()) == 22 and counts["valid"] >= 4 and counts["test"] >= 4
    assert "warning" not in err and summary["warnings"]  # --json: the warnings (4 valid images) are in the summary only


def test_split_shares_go_through_the_recipe() -> None:
    assert load_recipe(None, overrides={"dataset.splits": _shares(" 0.7, 0.1,0.2")}).dataset.splits == SplitRatios(
        train=0.7, valid=0.1, test=0.2
    )
    with pytest.raises(UsageError, match="--split 0.7,0.3: expected three shares"):
        _shares("0.7,0.3")
    for bad, fragment in [("0.7,0.2,0.2", "must be 1.0"), ("a,b,c", "dataset.splits.train")]:
        with pytest.raises(ConfigError, match=fragment):
            load_recipe(None, overrides={"dataset.splits": _shares(bad)})


def test_help_shows_the_new_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _err = run(capsys, "dataset", "build", "--help")
    assert code == 0
    for option in ("--class-map", "--data-yaml", "--split", "--resplit", "--skip-invalid", "--augment"):
        assert option in stdout
