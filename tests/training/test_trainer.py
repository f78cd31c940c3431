import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoProcessor, Florence2ForConditionalGeneration

from inspect_core.config import InspectConfig, LoraSection, ModelSection, TrainSection
from inspect_core.training.batches import encode_batch
from inspect_core.training.data import FlorenceTaskDataset
from inspect_core.training.loop import StopReason
from inspect_core.training.trainer import checkpoint_vision_blocks, train


def _config(model_dir: Path, **train_options: object) -> InspectConfig:
    options = {"epochs": 2, "batch_size": 4, "lr": 2e-3, "max_new_tokens": 8, "seed": 3} | train_options
    return InspectConfig(
        model=ModelSection(name=str(model_dir), image_size=256), lora=LoraSection(r=4, alpha=8), train=TrainSection(**options)
    )


def test_a_run_writes_checkpoints_metrics_and_curve(random_tiny_dir: Path, small_dataset: Path, tmp_path: Path) -> None:
    result = train(_config(random_tiny_dir), small_dataset, tmp_path / "run")
    assert result.stopped == "completed" and result.epochs_run == 2 and result.metric_name == "map50"
    assert result.stopped is StopReason.EPOCHS_DONE and result.non_finite is None
    for folder in ("best", "latest"):
        assert (tmp_path / "run" / folder / "adapter_model.safetensors").is_file()
        assert (tmp_path / "run" / folder / "inspect_model.json").is_file()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2] and metrics["stopped"] == "completed"
    assert metrics["history"][1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 1000
    with pytest.raises(FileExistsError, match="--resume"):
        train(_config(random_tiny_dir), small_dataset, tmp_path / "run")


def test_resume_after_a_kill_reaches_the_same_result(random_tiny_dir: Path, small_dataset: Path, tmp_path: Path) -> None:
    config = _config(random_tiny_dir, epochs=2)
    straight = train(config, small_dataset, tmp_path / "straight")

    def killed_after_first_epoch(entry: dict) -> None:
        if entry["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, small_dataset, tmp_path / "resumed", on_epoch=killed_after_first_epoch)
    resumed = train(config, small_dataset, tmp_path / "resumed", resume=True)
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in straight.history], rel=1e-6)
    assert resumed.best_epoch == straight.best_epoch
    a = load_file(tmp_path / "straight/latest/adapter_model.safetensors")
    b = load_file(tmp_path / "resumed/latest/adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_early_stopping(random_tiny_dir: Path, small_dataset: Path, tmp_path: Path) -> None:
    result = train(_config(random_tiny_dir, epochs=5, lr=1e-12, early_stopping_patience=2), small_dataset, tmp_path / "run")
    # Nothing changes at this rate: every epoch ties, best/ moves to the later one, the patience still runs out.
    assert result.stopped.startswith("early-stopping") and result.epochs_run == 3 and result.best_epoch == 3
    assert result.stopped is StopReason.EARLY_STOPPING and result.stop_detail == "no map50 gain in 2 epochs"


def test_non_finite_loss_stops_and_keeps_best(random_tiny_dir: Path, small_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    import inspect_core.training.trainer as trainer_module

    real_load = trainer_module.load_model
    calls = {"n": 0}

    def poison(module, _inputs, output):  # the output head starts emitting NaN in the second epoch
        calls["n"] += 1
        return output * float("nan") if module.training and calls["n"] > 6 else output

    def load_with_poison(section):
        model, processor = real_load(section)
        model.lm_head.register_forward_hook(poison)
        return model, processor

    monkeypatch.setattr(trainer_module, "load_model", load_with_poison)
    result = train(_config(random_tiny_dir, epochs=3), small_dataset, tmp_path / "run")
    assert result.stopped.startswith("non-finite loss") and result.epochs_run == 1
    assert (tmp_path / "run" / "best" / "adapter_model.safetensors").is_file()
    # One optimizer step per batch of 4 training records: the first batch of epoch 2 follows a full epoch of steps.
    step = math.ceil(len(FlorenceTaskDataset(small_dataset, "train")) / 4) + 1
    assert result.stopped is StopReason.NON_FINITE and result.non_finite is not None
    assert (result.non_finite.step, result.non_finite.epoch, result.non_finite.batch) == (step, 2, 1)
    assert math.isnan(result.non_finite.value) and f"at step {step} (epoch 2, batch 1)" in result.stop_detail
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stopped"] == "non-finite loss" and metrics["non_finite"]["value"] == "nan"


def test_vision_checkpointing_keeps_gradients_identical(random_tiny_dir: Path) -> None:
    processor = AutoProcessor.from_pretrained(random_tiny_dir)
    inputs = encode_batch(
        processor, [np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)], ["<OD>"], ["hole<loc_1><loc_2><loc_3><loc_4>"]
    )
    grads = []
    for checkpointed in (False, True):
        model = Florence2ForConditionalGeneration.from_pretrained(random_tiny_dir)
        if checkpointed:
            assert checkpoint_vision_blocks(model) == 5
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        model(**inputs).loss.backward()
        grads.append(model.model.vision_tower.convs[0].conv.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_the_train_command_fails_on_a_non_finite_loss_after_printing_where(
    random_tiny_dir: Path, small_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    import yaml
    from typer.testing import CliRunner

    import inspect_core.training.trainer as trainer_module
    from inspect_core.cli import app

    real_load = trainer_module.load_model

    def load_broken(section):  # NaN from the first training batch on
        model, processor = real_load(section)
        model.lm_head.register_forward_hook(lambda module, _i, output: output * float("nan") if module.training else output)
        return model, processor

    monkeypatch.setattr(trainer_module, "load_model", load_broken)
    recipe = {"model": {"name": str(random_tiny_dir)}, "lora": {"r": 4, "alpha": 8}, "train": {"epochs": 1, "batch_size": 4}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    args = ["--config", str(tmp_path / "recipe.yaml"), "--dataset", str(small_dataset), "--out", str(tmp_path / "run"), "--json"]
    outcome = CliRunner().invoke(app, ["train", *args])
    assert outcome.exit_code == 1, outcome.output
    summary = json.loads(outcome.stdout)
    assert summary["stopped"] == "non-finite loss" and summary["epochs_run"] == 0 and summary["best_epoch"] is None
    assert summary["non_finite"] == {"step": 1, "epoch": 1, "batch": 1, "value": "nan"}
    assert "training stopped: loss nan at step 1 (epoch 1, batch 1)" in outcome.stderr
