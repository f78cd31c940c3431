"""Load Florence-2 models: the embedded tiny base, a local directory, or a Hugging Face hub id.

Only the native ``transformers`` classes are used (``Florence2ForConditionalGeneration``,
``Florence2Processor``); ``trust_remote_code`` is never set. Without network access a hub id fails
with a message that says how to use a local copy instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoProcessor, Florence2ForConditionalGeneration, Florence2Processor

from inspect_core.errors import ModelLoadError

EMBEDDED_MODEL = "tiny"
EMBEDDED_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "tiny-fabric-base"
KNOWN_HUB_IDS = (
    "florence-community/Florence-2-base",
    "florence-community/Florence-2-large",
    "florence-community/Florence-2-base-ft",
    "florence-community/Florence-2-large-ft",
)


def resolve_model_source(name: str) -> str:
    """``tiny`` -> the shipped directory; a directory -> itself; anything else is taken as a hub id."""
    if name == EMBEDDED_MODEL:
        if not (EMBEDDED_MODEL_DIR / "config.json").is_file():
            raise ModelLoadError(f"the embedded model is missing from {EMBEDDED_MODEL_DIR}; rebuild it with: inspect-core pretrain-tiny")
        return str(EMBEDDED_MODEL_DIR)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} has no config.json: not a Florence-2 model directory")
        return str(path)
    return name


def load_florence(
    name: str, revision: str | None = None, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> tuple[Florence2ForConditionalGeneration, Florence2Processor]:
    source = resolve_model_source(name)
    try:
        processor = AutoProcessor.from_pretrained(source, revision=revision)
        model = Florence2ForConditionalGeneration.from_pretrained(source, revision=revision, dtype=dtype)
    except OSError as exc:
        if Path(source).exists():
            raise ModelLoadError(f"cannot load the model in {source}: {exc}") from exc
        raise ModelLoadError(
            f"cannot load {name!r} from the Hugging Face hub ({type(exc).__name__}): this machine is offline or HF_HUB_OFFLINE=1 "
            f"is set. On a connected machine run `hf download {name} --local-dir DIR`, copy DIR here and pass it as the "
            f"model (--model DIR, or model.name: DIR in the recipe). Known ids: {', '.join(KNOWN_HUB_IDS)}."
        ) from exc
    if not isinstance(processor, Florence2Processor):
        raise ModelLoadError(f"{source} has a {type(processor).__name__}, not a Florence2Processor")
    return model.to(device), processor
