"""Save and load what training produces: an adapter (or full weights) with its processor.

A checkpoint folder holds the peft adapter (``adapter_model.safetensors``) or, for full fine-tuning,
the whole model; the processor; and ``inspect_model.json`` naming the base model, so evaluation,
merging and scoring can rebuild the model from the folder alone. A folder without
``inspect_model.json`` is a plain Florence-2 model (a merged model, or a base model).
"""

from __future__ import annotations

import json
from pathlib import Path

from peft import PeftModel
from torch import nn
from transformers import AutoProcessor, Florence2ForConditionalGeneration, Florence2Processor

from inspect_core.lora_adapters import merge_adapter
from inspect_core.model_factory import load_florence, resolve_model_source

MODEL_INFO = "inspect_model.json"


def save_checkpoint(model: nn.Module, processor: Florence2Processor, out: Path, base_model: str, strategy: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    kind = "adapter" if isinstance(model, PeftModel) else "full"
    (out / MODEL_INFO).write_text(json.dumps({"base_model": base_model, "strategy": strategy, "kind": kind}, indent=2) + "\n")


def resolve_trained_source(name: str) -> str:
    """A training checkpoint folder as it is; anything else as :func:`resolve_model_source` resolves it."""
    return name if (Path(name) / MODEL_INFO).is_file() else resolve_model_source(name)


def load_trained(path: Path | str) -> tuple[nn.Module, Florence2Processor]:
    """Model and processor from a checkpoint folder, a merged model folder, ``tiny`` or a hub id."""
    info_file = Path(path) / MODEL_INFO
    if not info_file.is_file():
        return load_florence(str(path))
    info = json.loads(info_file.read_text())
    if info["kind"] == "full":
        return load_florence(str(path))
    base, _ = load_florence(info["base_model"])
    processor = AutoProcessor.from_pretrained(path)
    return PeftModel.from_pretrained(base, path), processor


def merge_checkpoint(path: Path | str, out: Path) -> Path:
    """Merge a checkpoint's adapter into its base and save a plain Florence-2 (safetensors) for serving."""
    model, processor = load_trained(path)
    merged: Florence2ForConditionalGeneration = merge_adapter(model)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
