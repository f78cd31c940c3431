"""Exit codes through the console script's entry (``inspect_core.cli.main``): 0 ok, 1 internal, 2 usage, 3 bad data."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspect_core.cli import main
from inspect_core.errors import BadInputError, ModelLoadError, UsageError, exit_code_for
from inspect_core.store import StoreUnavailableError
from tests.data.test_dataset_builder import _voc_set


def test_help_version_and_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("inspect-core ")
    assert main(["-h"]) == 0
    out = capsys.readouterr().out
    assert "Exit codes" in out and "3 bad input data" in " ".join(out.split())


@pytest.mark.parametrize(
    "argv",
    [["no-such-command"], ["dataset", "build", "--no-such-option"], ["score", "--images", "/nonexistent/frames"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_unknown_recipe_key_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  learning_rate: 0.1\n")
    assert main(["dataset", "build", "--config", str(recipe)]) == 2
    assert "train.learning_rate" in capsys.readouterr().err


def test_bad_labels_exit_3_and_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _voc_set(tmp_path / "src", 4)
    (src / "img_002.xml").write_text("<annotation><object><name>hole</name></annotation")
    assert main(["dataset", "build", "--images", str(src), "--out", str(tmp_path / "out")]) == 3
    assert "img_002.xml" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unexpected_error_is_internal_with_a_hint_and_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(path: Path) -> None:
        raise ValueError("boom inside the library")  # a bare ValueError is a bug, not the user's fault

    monkeypatch.setattr("inspect_core.cli.dataset.built_dataset_stats", broken)
    assert main(["dataset", "stats", str(tmp_path)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "internal error: ValueError: boom inside the library" in err and "--debug" in err and "Traceback" not in err
    assert main(["--debug", "dataset", "stats", str(tmp_path)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_error_classes_map_to_codes() -> None:
    assert exit_code_for(UsageError("x")) == 2
    assert exit_code_for(FileNotFoundError("x")) == 2
    assert exit_code_for(BadInputError("x")) == 3
    assert exit_code_for(ModelLoadError("x")) == 3
    assert exit_code_for(StoreUnavailableError("x")) == 1
    assert exit_code_for(ValueError("x")) == 1
    assert exit_code_for(KeyError("x")) == 1
