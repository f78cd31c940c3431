"""Pretraining the embedded tiny model: the command, its checkpoints and card, continuing a run, soft targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from typer.testing import CliRunner

from inspect_core.cli import app, main
from inspect_core.data.synthetic_fabric import EVALUATION_SEEDS
from inspect_core.model.factory import load_florence
from inspect_core.model.tiny_florence import TINY_IMAGE_SIZE
from inspect_core.training.batches import IGNORE_INDEX
from inspect_core.training.loop import StopReason
from inspect_core.training.pretrain import (
    PretrainSettings,
    pretrain_tiny,
    sequence_loss,
    synthetic_images,
    training_sizes,
    write_model_card,
)

runner = CliRunner()


def test_pretrain_command_saves_a_plain_florence2_with_metrics_and_a_card(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    args = ["pretrain-tiny", "--out", str(out), "--steps", "4", "--batch-size", "2", "--eval-every", "2", "--eval-images", "3", "--json",
            "--randomised-fraction", "0.5"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "step 2 (" in result.stderr and "[hole=" in result.stderr  # per-class AP on each evaluation line
    assert [line.split(" (")[0] for line in result.stderr.splitlines() if "/4 (" in line] == [f"step {n}/4" for n in (1, 2, 3, 4)]
    assert [entry["step"] for entry in summary["history"]] == [2, 4]
    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    assert metrics["settings"]["eval_images"] == 3 and metrics["best"]["map50"] == summary["best_map50"]
    card = (out / "README.md").read_text()
    assert "--steps 4 --batch-size 2" in card and "--eval-images 3" in card
    assert metrics["settings"]["randomised_fraction"] == 0.5 and "--randomised-fraction 0.5" in card  # the card's command runs
    model, processor = load_florence(str(out))  # a plain Florence-2: no auxiliary head was saved
    assert type(model).__name__ == "Florence2ForConditionalGeneration"
    assert not any("cell" in name for name in model.state_dict())
    inputs = processor(text=["<OD>"], images=[torch.zeros(3, 256, 256, dtype=torch.uint8).numpy().transpose(1, 2, 0)], return_tensors="pt")
    assert model.generate(**inputs, max_new_tokens=4).shape[1] > 1


@pytest.mark.parametrize("seed", sorted(EVALUATION_SEEDS))
def test_pretraining_refuses_a_seed_that_draws_evaluation_images(tmp_path: Path, seed: int, capsys) -> None:
    # Candidates 2 and 4 of tiny-randomised were pretrained with --seed 7: the demo's own images (sample_data).
    out = tmp_path / "tiny"
    assert main(["pretrain-tiny", "--out", str(out), "--steps", "1", "--batch-size", "1", "--seed", str(seed)]) == 2  # a usage error
    said = " ".join(capsys.readouterr().err.split())
    assert f"--seed {seed} draws {EVALUATION_SEEDS[seed]}" in said and "choose another seed" in said
    assert not (out / "model.safetensors").exists()


def test_a_continued_run_starts_from_the_saved_weights_and_keeps_its_lineage(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    pretrain_tiny(first, PretrainSettings(steps=2, batch_size=2, eval_every=2, eval_images=2, seed=1))
    steps_seen: list[int] = []
    settings = PretrainSettings(steps=2, batch_size=2, lr=1e-9, eval_every=2, eval_images=2, seed=2, init_from=str(first))
    pretrain_tiny(second, settings, progress=steps_seen.append)
    assert steps_seen == [1, 2]
    before, after = (load_florence(str(d))[0].state_dict() for d in (first, second))
    assert max((before[k] - after[k]).abs().max().item() for k in before) < 1e-4  # lr ~0: still the first run's weights
    metrics = json.loads((second / "pretrain_metrics.json").read_text())
    assert metrics["continued_from"]["settings"]["seed"] == 1
    third = tmp_path / "third"
    pretrain_tiny(third, PretrainSettings(steps=1, batch_size=2, eval_every=1, eval_images=2, seed=3, init_from=str(second)))
    write_model_card(third)
    card = (third / "README.md").read_text()  # every run of the chain, earliest first
    assert card.index("--seed 1") < card.index(f"--init-from {first}") < card.index(f"--init-from {second}")
    assert card.count("then continued with") == 2


def test_soft_location_targets_charge_a_near_miss_less_than_a_far_one() -> None:
    vocab, loc_ids = 20, torch.arange(10, 20)  # ids 10..19 are location bins 0..9
    loc_bin = torch.full((vocab,), -1)
    loc_bin[loc_ids] = torch.arange(10)
    labels = torch.tensor([[15, IGNORE_INDEX]])

    def loss_when_predicting(token: int, sigma: float) -> float:
        logits = torch.full((1, 2, vocab), -10.0)
        logits[0, :, token] = 10.0
        return sequence_loss(logits, labels, loc_bin, loc_ids, sigma).item()

    near, far, exact = (loss_when_predicting(t, sigma=1.0) for t in (16, 19, 15))
    assert exact < near < far
    assert loss_when_predicting(16, sigma=0.0) == loss_when_predicting(19, sigma=0.0)  # hard targets: every miss costs the same


def test_multi_scale_batches_render_larger_frames_with_labels_in_their_pixels() -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert training_sizes(rng, 8, 0.0) == [TINY_IMAGE_SIZE] * 8
    assert rng.bit_generator.state == state  # without multi-scale the task-mix stream is as before
    larger = training_sizes(rng, 64, 1.0)
    assert all(288 <= size <= 512 and size % 32 == 0 for size in larger) and len(set(larger)) > 3
    ((pixels, annotated),) = synthetic_images(5, 3, 1, sizes=[448])
    assert pixels.shape[:2] == (448, 448) and (annotated.width, annotated.height) == (448, 448)
    assert all(0 <= v <= 448 for obj in annotated.objects for v in obj.box)


def _old_pretrain_lr(step: int, settings: PretrainSettings) -> float:
    """The rate the hand-set pretraining loop used at ``step`` (0-based) before it shared the trainer's scheduler."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    anneal_start = settings.steps * (1 - settings.anneal_fraction)
    if step < anneal_start:
        return settings.lr
    return settings.lr * max(0.0, (settings.steps - step) / max(settings.steps - anneal_start, 1))


def test_pretraining_runs_at_the_learning_rates_it_always_did(tmp_path: Path) -> None:
    settings = PretrainSettings(steps=8, batch_size=1, lr=1e-3, warmup_steps=3, anneal_fraction=0.25, eval_every=100, eval_images=1, seed=4)
    rates: list[float] = []  # what each optimizer step actually ran at
    handle = register_optimizer_step_pre_hook(lambda optimizer, _args, _kwargs: rates.append(optimizer.param_groups[0]["lr"]))
    try:
        result = pretrain_tiny(tmp_path / "tiny", settings)
    finally:
        handle.remove()
    assert result.stopped is StopReason.MAX_STEPS and result.steps == 8 and [e["step"] for e in result.history] == [8]
    expected = [_old_pretrain_lr(step, settings) for step in range(8)]  # warmup 1/3, 2/3, then the peak, then the anneal
    assert expected[:3] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3]) and expected[-1] == pytest.approx(1e-3 / 2)
    assert rates == pytest.approx(expected, rel=1e-12)
    assert result.history[-1]["lr"] == pytest.approx(expected[-1], rel=1e-12)  # the log reports the rate the step used


def test_a_spent_time_limit_stops_pretraining_annealed_and_scored(tmp_path: Path) -> None:
    settings = PretrainSettings(steps=8, batch_size=1, lr=1e-3, warmup_steps=0, eval_every=100, eval_images=1, seed=4, time_limit_s=1e-9)
    result = pretrain_tiny(tmp_path / "tiny", settings)
    assert result.stopped is StopReason.TIME_LIMIT and result.steps == 1
    (entry,) = result.history  # scored once, at the step where time ran out
    assert entry["step"] == 1 and entry["lr"] == pytest.approx(_old_pretrain_lr(7, settings))  # the schedule's last step: annealed
    assert (tmp_path / "tiny" / "model.safetensors").is_file()


def test_a_non_finite_loss_stops_pretraining_keeps_the_best_model_and_fails_the_command(tmp_path: Path, monkeypatch) -> None:
    import inspect_core.training.pretrain as pretrain_module

    real_build = pretrain_module.build_tiny
    calls = {"training": 0}

    def poison(module, _inputs, output):  # the output head emits NaN from the third training step on
        if module.training:
            calls["training"] += 1
        return output * float("nan") if module.training and calls["training"] > 2 else output

    def build_with_poison(*args, **kwargs):
        model, processor = real_build(*args, **kwargs)
        model.lm_head.register_forward_hook(poison)
        return model, processor

    monkeypatch.setattr(pretrain_module, "build_tiny", build_with_poison)
    out = tmp_path / "tiny"
    args = ["pretrain-tiny", "--out", str(out), "--steps", "6", "--batch-size", "2", "--eval-every", "2", "--eval-images", "1", "--json"]
    outcome = runner.invoke(app, args)
    assert outcome.exit_code == 1, outcome.output
    summary = json.loads(outcome.stdout)
    assert summary["stopped"] == "non-finite loss" and summary["steps"] == 2
    assert summary["non_finite"] == {"step": 3, "epoch": 1, "batch": 3, "value": "nan"}
    assert [entry["step"] for entry in summary["history"]] == [2]  # no evaluation after the loss broke
    assert "training stopped: loss nan at step 3" in outcome.stderr and f"kept in {out}" in outcome.stderr
    assert json.loads((out / "pretrain_metrics.json").read_text())["best"]["step"] == 2 and (out / "README.md").is_file()
