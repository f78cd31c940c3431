"""One command-line dialect: --out for outputs, --images for image inputs, format names that say what they
format, required inputs required, defaults and an example in every --help, no `<bool>` after a flag, and
the old spellings still working (with a warning) for one release."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest
import typer.main
from typer.testing import CliRunner

from inspect_core.cli import app
from tests.conftest import write_image
from tests.data.test_dataset_builder import _voc_set
from tests.ingest.test_camera_ingest import CLIP

runner = CliRunner()
DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
OLD_SPELLINGS = ("--output", "--source", "--folder")


def _leaves(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if hasattr(command, "commands"):  # a group (typer vendors click: no isinstance check against click's classes)
        return [leaf for name, sub in command.commands.items() for leaf in _leaves(sub, (*path, name))]
    return [path]


COMMANDS = _leaves(typer.main.get_command(app))


def _option(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")


def test_the_walk_sees_every_command() -> None:
    assert {("predict",), ("score",), ("train",), ("dataset", "build"), ("ingest", "folder"), ("ingest", "camera")} <= set(COMMANDS)
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_help_speaks_one_dialect(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "<bool>" not in text  # flags take no value
    for old in OLD_SPELLINGS:
        assert not _option(old).search(text), f"{old} shown in {' '.join(path)} --help"
    assert not _option("--format").search(text), "a --format must say what it formats (--label-format, --image-format)"
    assert f"Example: inspect-core {' '.join(path)}" in text  # an example of this very command
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    visible = {opt for p in command.params if not getattr(p, "hidden", False) for opt in (*p.opts, *p.secondary_opts)}
    assert not visible & set(OLD_SPELLINGS)


def test_flags_show_no_type_but_valued_options_do() -> None:
    result = runner.invoke(app, ["score", "--help"], env={"COLUMNS": "250"})
    rows = {
        next(t for t in line.split() if t.startswith("--")): line for line in result.output.splitlines() if "│" in line and " --" in line
    }
    assert "<" not in rows["--rescore"] and "<" not in rows["--json"] and "<" not in rows["--tile"]
    assert "<float range>" in rows["--threshold"] and "<str>" in rows["--images"]  # the fix hides only what flags never take


def test_recipe_backed_options_show_the_default_they_run_with() -> None:
    text = " ".join(runner.invoke(app, ["dataset", "build", "--help"], env={"COLUMNS": "250"}).output.split())
    assert "[default: (auto, recipe dataset.format)]" in text and "[default: (runs/dataset, recipe dataset.output)]" in text
    assert "[default: (false, recipe augment.offline)]" in text
    text = " ".join(runner.invoke(app, ["score", "--help"], env={"COLUMNS": "250"}).output.split())
    assert "[default: (sqlite:///runs/results.db, recipe store.url)]" in text and "[default: (tiny, recipe model.name)]" in text


def test_old_spellings_of_dataset_build_still_work_with_a_warning(tmp_path: Path) -> None:
    src = _voc_set(tmp_path / "src", 8)
    result = runner.invoke(app, ["dataset", "build", "--source", str(src), "--format", "voc", "--out", str(tmp_path / "old"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source_format"] == "voc" and json.loads(result.stdout)["source"] == str(src)
    err = " ".join(result.stderr.split())
    assert "--source is deprecated, use --images" in err and "--format is deprecated, use --label-format" in err
    new = runner.invoke(app, ["dataset", "build", "--images", str(src), "--label-format", "voc", "--out", str(tmp_path / "new"), "--json"])
    assert new.exit_code == 0 and "deprecated" not in new.stderr
    assert json.loads(new.stdout)["splits"] == json.loads(result.stdout)["splits"] | {}  # the same build either way
    both = runner.invoke(app, ["dataset", "build", "--images", str(src), "--source", str(tmp_path), "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "--images and --source are the same option" in " ".join(both.stderr.split())


def test_old_spelling_of_ingest_folder_still_works_with_a_warning(tmp_path: Path) -> None:
    write_image(tmp_path / "inbox" / "a.png", seed=3)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["ingest", "folder", "--folder", str(tmp_path / "inbox"), "--db", db, "--once", "--settle-seconds", "0", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["registered"]) == 1
    assert "--folder is deprecated, use --images" in " ".join(result.stderr.split())


def test_old_spellings_of_ingest_camera_still_work_with_a_warning(tmp_path: Path) -> None:
    clip = tmp_path / "loom.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for frame in CLIP:
        writer.write(frame)
    writer.release()
    args = [
        "ingest",
        "camera",
        "--source",
        str(clip),
        "--format",
        "jpg",
        "--out",
        str(tmp_path / "frames"),
        "--every-frames",
        "1",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "frames").iterdir())
    assert json.loads(result.stdout)["written"] == len(written) > 0 and all(p.suffix == ".jpg" for p in written)
    err = " ".join(result.stderr.split())
    assert "--source is deprecated, use --camera-source" in err and "--format is deprecated, use --image-format" in err


def test_old_spelling_of_train_output_still_works_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Path] = {}

    def fake_training(config: object, dataset: Path, output: Path, resume: bool) -> SimpleNamespace:
        seen["output"] = output
        return SimpleNamespace(as_dict=lambda: {}, stopped=SimpleNamespace(diverged=False), stop_detail="")

    monkeypatch.setattr("inspect_core.cli.training.run_training", fake_training)
    result = runner.invoke(app, ["train", "--config", str(DEMO), "--output", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert seen["output"] == tmp_path / "run" and "--output is deprecated, use --out" in " ".join(result.stderr.split())
    result = runner.invoke(app, ["train", "--config", str(DEMO), "--out", str(tmp_path / "run2"), "--json"])
    assert result.exit_code == 0 and seen["output"] == tmp_path / "run2" and "deprecated" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["dataset", "build"], "--images is required (or dataset.source"),
        (["ingest", "folder", "--once"], "--images is required (or ingest.folder"),
        (["ingest", "camera", "--max-frames", "1"], "--camera-source is required (or ingest.camera_source"),
    ],
    ids=" ".join,
)
def test_required_inputs_are_required(argv: list[str], option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a silent default would have built, watched or written here
    result = runner.invoke(app, argv)
    assert result.exit_code == 2 and option in " ".join(result.stderr.split()), result.output
    assert list(tmp_path.iterdir()) == []


def test_a_recipe_source_counts_as_given(tmp_path: Path) -> None:
    src = _voc_set(tmp_path / "src", 8)
    result = runner.invoke(app, ["dataset", "build", "--set", f"dataset.source={src}", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"] == str(src)
