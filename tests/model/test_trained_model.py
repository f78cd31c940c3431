from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoProcessor, Florence2ForConditionalGeneration

from inspect_core.config import LoraSection
from inspect_core.model.lora import apply_strategy
from inspect_core.model.trained_model import load_trained, merge_checkpoint, save_checkpoint
from inspect_core.training.batches import encode_batch


def test_checkpoint_round_trip_and_merge(random_tiny_dir: Path, tmp_path: Path) -> None:
    processor = AutoProcessor.from_pretrained(random_tiny_dir)
    model = apply_strategy(Florence2ForConditionalGeneration.from_pretrained(random_tiny_dir), LoraSection(init="gaussian")).eval()
    save_checkpoint(model, processor, tmp_path / "ckpt", str(random_tiny_dir), "lora")
    inputs = encode_batch(processor, [np.zeros((64, 64, 3), np.uint8)], ["<OD>"], ["hole<loc_1><loc_2><loc_3><loc_4>"])
    with torch.no_grad():
        expected = model(**inputs).logits
        loaded, _ = load_trained(tmp_path / "ckpt")
        assert isinstance(loaded, PeftModel)
        assert torch.allclose(loaded.eval()(**inputs).logits, expected, atol=1e-5)
        merge_checkpoint(tmp_path / "ckpt", tmp_path / "merged")
        assert (tmp_path / "merged" / "model.safetensors").is_file()
        merged, _ = load_trained(tmp_path / "merged")
        assert isinstance(merged, Florence2ForConditionalGeneration)
        assert torch.allclose(merged.eval()(**inputs).logits, expected, atol=1e-4)
