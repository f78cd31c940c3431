from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, Florence2ForConditionalGeneration

from inspect_core.config import LoraSection
from inspect_core.model.lora import apply_strategy, merge_adapter, trainable_parameters
from inspect_core.training.batches import encode_batch


def _model(path: Path) -> Florence2ForConditionalGeneration:
    return Florence2ForConditionalGeneration.from_pretrained(path)


def _backward(model, path: Path) -> None:
    processor = AutoProcessor.from_pretrained(path)
    inputs = encode_batch(processor, [np.zeros((64, 64, 3), np.uint8)], ["<OD>"], ["hole<loc_1><loc_2><loc_3><loc_4>"])
    model(**inputs).loss.backward()


def test_default_lora_adapts_the_vision_tower_too(random_tiny_dir: Path) -> None:
    model = apply_strategy(_model(random_tiny_dir), LoraSection())
    vision = [n for n, p in model.named_parameters() if p.requires_grad and "vision_tower" in n]
    assert vision and all("lora_" in n for n in vision)
    assert trainable_parameters(model, "language_model") > 0
    _backward(model, random_tiny_dir)
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "vision_tower" in n)


def test_freeze_vision_really_freezes_it(random_tiny_dir: Path) -> None:
    model = apply_strategy(_model(random_tiny_dir), LoraSection(strategy="freeze-vision"))
    assert trainable_parameters(model, "vision_tower") == 0
    assert trainable_parameters(model) > 0
    _backward(model, random_tiny_dir)
    assert all(p.grad is None for n, p in model.named_parameters() if "vision_tower" in n)


def test_lora_plus_vision_and_full(random_tiny_dir: Path) -> None:
    base = _model(random_tiny_dir)
    vision_total = sum(p.numel() for n, p in base.named_parameters() if "vision_tower" in n)
    plus = apply_strategy(_model(random_tiny_dir), LoraSection(strategy="lora+vision"))
    assert trainable_parameters(plus, "vision_tower") > vision_total  # base weights + adapters
    full = apply_strategy(_model(random_tiny_dir), LoraSection(strategy="full"))
    assert trainable_parameters(full) == sum(p.numel() for p in full.parameters())


@pytest.mark.parametrize("options", [{"rslora": True}, {"dora": True}, {"init": "gaussian"}, {"target_modules": ["q_proj", "v_proj"]}])
def test_every_knob_reaches_peft(random_tiny_dir: Path, options: dict) -> None:
    model = apply_strategy(_model(random_tiny_dir), LoraSection(r=4, alpha=8, **options))
    config = model.peft_config["default"]
    assert config.r == 4 and config.lora_alpha == 8
    if "rslora" in options:
        assert config.use_rslora
    if "dora" in options:
        assert config.use_dora
    if "target_modules" in options:
        assert {n.split(".")[-1] for n in config.target_modules} == {"q_proj", "v_proj"}


def test_merged_adapter_answers_like_the_adapter(random_tiny_dir: Path) -> None:
    model = apply_strategy(_model(random_tiny_dir), LoraSection(init="gaussian"))
    processor = AutoProcessor.from_pretrained(random_tiny_dir)
    inputs = encode_batch(processor, [np.zeros((64, 64, 3), np.uint8)], ["<OD>"], ["hole<loc_1><loc_2><loc_3><loc_4>"])
    model.eval()
    with torch.no_grad():
        expected = model(**inputs).logits
        merged = merge_adapter(model)
        assert isinstance(merged, Florence2ForConditionalGeneration)
        assert torch.allclose(merged(**inputs).logits, expected, atol=1e-4)
