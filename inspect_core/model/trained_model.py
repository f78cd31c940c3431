"""Save and load what training produces: an adapter (or full weights) with its processor.

A checkpoint folder holds the peft adapter (``adapter_model.safetensors``) or, for full fine-tuning,
the whole model; the processor; and ``inspect_model.json`` naming the base model, so evaluation,
merging and scoring can rebuild the model from the folder alone. A folder without
``inspect_model.json`` is a plain Florence-2 model (a merged model, or a base model).

``inspect_model.json`` also pins the base model's hub commit (when it came from the hub), so an
adapter is always put back on the weights it was trained on, and records the input size trained at and
the dataset's classes (the vocabulary: scoring never stores another label as a defect class).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from peft import PeftModel
from torch import nn
from transformers import AutoProcessor, Florence2ForConditionalGeneration, Florence2Processor

from inspect_core.model.calibration import load_calibration
from inspect_core.model.factory import input_size, load_florence, resolve_model_source, size_processor
from inspect_core.model.lora import merge_adapter

MODEL_INFO = "inspect_model.json"


def save_checkpoint(
    model: nn.Module, processor: Florence2Processor, out: Path, base_model: str, strategy: str, classes: Sequence[str] | None = None
) -> None:
    """Weights, processor and ``inspect_model.json``; ``classes`` (the dataset's vocabulary) is what the model was trained to name."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    kind = "adapter" if isinstance(model, PeftModel) else "full"
    revision = getattr(model.config, "_commit_hash", None)  # the hub commit from_pretrained resolved; None for a local folder
    info = {"base_model": base_model, "strategy": strategy, "kind": kind, "revision": revision, "image_size": input_size(processor)}
    if classes is not None:
        info["classes"] = list(classes)
    (out / MODEL_INFO).write_text(json.dumps(info, indent=2) + "\n")


def saved_input_size(model_dir: Path | str) -> int | None:
    """The input side a model folder's saved processor resizes to (an ONNX export's manifest counts too); None for a hub id."""
    folder = Path(model_dir)
    for name, keys in (("processor_config.json", ("image_processor", "size")), ("preprocessor_config.json", ("size",)),
                       ("onnx_model.json", ("image_size",))):  # fmt: skip
        if (folder / name).is_file():
            value = json.loads((folder / name).read_text())
            for key in keys:
                value = value.get(key, {}) if isinstance(value, dict) else {}
            size = value.get("height") if isinstance(value, dict) else value[0] if isinstance(value, list) and value else None
            if isinstance(size, int):
                return size
    return None


def resolve_trained_source(name: str) -> str:
    """A training checkpoint folder as it is; anything else as :func:`resolve_model_source` resolves it."""
    return name if (Path(name) / MODEL_INFO).is_file() else resolve_model_source(name)


def load_trained(path: Path | str, image_size: int | None = None, revision: str | None = None) -> tuple[nn.Module, Florence2Processor]:
    """Model and processor from a checkpoint folder, a merged model folder, ``tiny`` or a hub id.

    ``image_size`` (the recipe's model.image_size) resizes the processor; None keeps the size it was saved
    with. ``revision`` pins a hub id's revision; a checkpoint's base uses the commit it recorded.
    """
    info_file = Path(path) / MODEL_INFO
    if not info_file.is_file():
        return load_florence(str(path), revision, image_size=image_size)
    info = json.loads(info_file.read_text())
    if info["kind"] == "full":
        return load_florence(str(path), image_size=image_size)
    base, _ = load_florence(info["base_model"], info.get("revision"))
    processor = size_processor(AutoProcessor.from_pretrained(path), image_size, base.config)
    return PeftModel.from_pretrained(base, path), processor


def merge_checkpoint(path: Path | str, out: Path, image_size: int | None = None) -> Path:
    """Merge a checkpoint's adapter into its base and save a plain Florence-2 (safetensors) for serving.

    The checkpoint's ``calibration.json`` (confidence calibration, operating thresholds, class vocabulary)
    goes with it: the merged weights answer exactly as the adapter did, so its calibration still holds.
    It is read first, so an unreadable one fails before any weights are written.
    """
    calibration = load_calibration(path)
    model, processor = load_trained(path, image_size)
    merged: Florence2ForConditionalGeneration = merge_adapter(model)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    if calibration is not None:
        calibration.save(out)
    return out
