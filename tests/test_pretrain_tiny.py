"""Pretraining the embedded tiny model: the command, its checkpoints and card, continuing a run, soft targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from inspect_core.cli import app
from inspect_core.model_factory import load_florence
from inspect_core.pretrain_tiny import PretrainSettings, pretrain_tiny, sequence_loss, synthetic_images, training_sizes, write_model_card
from inspect_core.tiny_florence import TINY_IMAGE_SIZE
from inspect_core.training_batches import IGNORE_INDEX

runner = CliRunner()


def test_pretrain_command_saves_a_plain_florence2_with_metrics_and_a_card(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    args = ["pretrain-tiny", "--out", str(out), "--steps", "4", "--batch-size", "2", "--eval-every", "2", "--eval-images", "3", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "step 2 (" in result.stderr and "[hole=" in result.stderr  # per-class AP on each evaluation line
    assert [entry["step"] for entry in summary["history"]] == [2, 4]
    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    assert metrics["settings"]["eval_images"] == 3 and metrics["best"]["map50"] == summary["best_map50"]
    card = (out / "README.md").read_text()
    assert "--steps 4 --batch-size 2" in card and "--eval-images 3" in card
    model, processor = load_florence(str(out))  # a plain Florence-2: no auxiliary head was saved
    assert type(model).__name__ == "Florence2ForConditionalGeneration"
    assert not any("cell" in name for name in model.state_dict())
    inputs = processor(text=["<OD>"], images=[torch.zeros(3, 256, 256, dtype=torch.uint8).numpy().transpose(1, 2, 0)], return_tensors="pt")
    assert model.generate(**inputs, max_new_tokens=4).shape[1] > 1


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
