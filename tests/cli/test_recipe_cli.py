"""`--set key.path=value` on every command with --config, and `inspect-core config show`."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from inspect_core.cli import app
from inspect_core.config import InspectConfig, load_recipe
from tests.conftest import write_image
from tests.data.test_dataset_builder import _voc_set

runner = CliRunner()
DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
COMMANDS_WITH_CONFIG = [
    ["score"], ["train"], ["evaluate"], ["merge"], ["export", "onnx"], ["dataset", "build"], ["ingest", "folder"], ["ingest", "camera"],
    ["config", "show"], ["demo"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS_WITH_CONFIG, ids=" ".join)
def test_every_command_with_config_takes_set(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--config" in result.output and "--set" in result.output


def test_config_show_prints_the_merged_recipe() -> None:
    result = runner.invoke(app, ["config", "show", "--config", str(DEMO), "--set", "train.lr=5e-5", "--set", "model.image_size=512"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown == load_recipe(DEMO, ["train.lr=5e-5", "model.image_size=512"]).model_dump(mode="json")
    assert shown["train"]["lr"] == 5e-5 and shown["model"]["image_size"] == 512 and shown["train"]["epochs"] == 3  # 3: from the file
    defaults = runner.invoke(app, ["config", "show", "--json"])
    assert json.loads(defaults.output) == InspectConfig().model_dump(mode="json")


def test_unknown_set_key_exits_2_with_a_suggestion() -> None:
    result = runner.invoke(app, ["config", "show", "--config", str(DEMO), "--set", "score.batchsize=4"])
    assert result.exit_code == 2
    assert "score.batchsize: unknown key; did you mean score.batch_size?" in " ".join(result.output.split())


def test_dataset_build_applies_set_and_flags_win(tmp_path: Path) -> None:
    src = _voc_set(tmp_path / "src", 12)
    args = ["dataset", "build", "--images", str(src), "--out", str(tmp_path / "out"), "--json",
            "--set", "dataset.tasks=[od]", "--set", "dataset.order=interleaved", "--order", "sequential"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["tasks"] == ["od"] and summary["order"] == "sequential"  # --set applied; the flag laid over it


def test_score_reads_model_image_size_from_set(tmp_path: Path) -> None:
    from inspect_core.model.factory import EMBEDDED_MODEL_DIR
    from inspect_core.store import open_store, register_model

    for seed in range(2):
        write_image(tmp_path / "images" / f"{seed}.png", 96, 96, seed=seed)
    db = f"sqlite:///{tmp_path / 'results.db'}"
    args = ["score", "--images", str(tmp_path / "images"), "--config", str(DEMO), "--set", f"store.url={db}",
            "--set", "model.image_size=128", "--set", "score.max_new_tokens=8", "--set", "score.num_workers=0", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scored"] == 2, result.output  # into store.url from --set
    # 128 px is not the size the model was saved with (256): a version of its own, recording the size
    version = register_model(open_store(db), EMBEDDED_MODEL_DIR, base_model="tiny", variant="image_size=128")
    assert version.metrics["image_size"] == 128 and json.loads(result.stdout)["model_version"] == version.name


def test_demo_out_moves_every_output_and_an_explicit_set_still_wins(tmp_path: Path) -> None:
    from inspect_core.cli.demo import _out_settings
    from inspect_core.cli.recipe_options import recipe

    out = tmp_path / "a folder: with a colon"  # JSON-quoted, the path stays one YAML string
    moved = recipe(DEMO, _out_settings(out))
    assert moved.dataset.output == out / "dataset" and moved.train.output_dir == out / "train"
    assert moved.store.url == f"sqlite:///{out / 'results.db'}"
    kept = recipe(DEMO, _out_settings(out) + ["store.url=postgresql://127.0.0.1/test"])
    assert kept.store.url == "postgresql://127.0.0.1/test" and kept.dataset.output == out / "dataset"
    assert recipe(DEMO, _out_settings(None)) == load_recipe(DEMO, [])  # without --out: the recipe's runs/demo/...
    help_text = runner.invoke(app, ["demo", "--help"], terminal_width=200).output
    assert "--out" in help_text and "inspect-core demo --out runs/demo-tiny-randomised" in " ".join(help_text.split())
